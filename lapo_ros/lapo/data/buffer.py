"""MultimodalReplayBuffer: HDF5 episodes in, TransitionBatch on the training device out.

```python
buffer = MultimodalReplayBuffer(action_dim=16, joint_dim=16, device="cuda", image_size=224)
buffer.load_from_hdf5("robot_data.hdf5")        # a file, a folder of files, or a list
train, val = buffer.split(0.1, seed=0)          # whole episodes go to one side
batch = train.sample(64)                        # TransitionBatch, uint8 images [64,9,224,224]
min_v, max_v = train.statistics.value_bounds(0.99)
```
Images are read lazily (see ``transition_sampler``); joints, actions and rewards live in
RAM. Statistics are computed once over this buffer's episodes and cached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.dataset.episodes import (
    AlohaLayout,
    DatasetReadError,
    EpisodeSource,
    compatibility_problems,
    in_memory_source,
    load_sources,
)
from lapo_ros.dataset.layout import Episode
from lapo_ros.dataset.sampler import RawBatch, TransitionSampler, TransitionTable
from lapo_ros.lapo.data.batch import DatasetStatistics, TransitionBatch


class MultimodalReplayBuffer:
    """Episodes from HDF5 files (or RAM) sampled as (s, a, r, s', not_done) transitions."""

    def __init__(
        self,
        action_dim: int = 16,
        joint_dim: int = 16,
        device: str | torch.device = "cpu",
        image_size: int = 224,
        *,
        seed: int = 0,
        aloha: AlohaLayout | None = None,
        images_in_memory: bool = False,
    ) -> None:
        self.action_dim = int(action_dim)
        self.joint_dim = int(joint_dim)
        self.device = torch.device(device)
        self.image_size = int(image_size)
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.seed = seed
        self.aloha = aloha
        self.images_in_memory = images_in_memory
        self._sources: list[EpisodeSource] = []
        self._episodes = np.zeros((0, 2), dtype=np.int64)  # rows: (source, episode in source)
        # after split(): this buffer's episodes as indices into the buffer it was split from
        self.parent_episode_indices: list[int] | None = None
        self._rng = np.random.default_rng(seed)
        self._reset_cache()

    # ---- filling -------------------------------------------------------------------------

    def load_from_hdf5(
        self, paths: str | os.PathLike | Iterable[str | os.PathLike]
    ) -> int:
        """Add every episode of a file, a folder of files, or a list of both.

        Returns the number of episodes added. Raises DatasetReadError naming the file and
        key of every problem; nothing is added then.
        """
        sources = load_sources(paths, aloha=self.aloha, images_in_memory=self.images_in_memory)
        return self.add_sources(sources)

    def add_episodes(
        self,
        episodes: Iterable[Episode],
        *,
        joint_names: Sequence[str] | None = None,
        rate_hz: float | None = None,
        name: str = "in-memory episodes",
    ) -> int:
        """Add ``hdf5_layout.Episode`` objects held in RAM (tests, simulation)."""
        return self.add_sources([in_memory_source(name, list(episodes),
                                                   joint_names=joint_names, rate_hz=rate_hz)])

    def add_sources(self, sources: list[EpisodeSource]) -> int:
        """Add episode sources already read by ``hdf5_episodes.load_sources`` (no re-read)."""
        known = list(self._sources)
        for source in sources:
            self._check_compatible(source, known)
            known.append(source)
        rows = [
            np.stack([np.full(s.num_episodes, len(self._sources) + i),
                      np.arange(s.num_episodes)], axis=1)
            for i, s in enumerate(sources)
        ]
        self._sources = known
        self._episodes = np.concatenate([self._episodes, *rows]).astype(np.int64)
        self._reset_cache()
        return int(sum(s.num_episodes for s in sources))

    def _check_compatible(self, source: EpisodeSource, known: list[EpisodeSource]) -> None:
        joint_key = "observations/qpos" if source.layout == "aloha" else "observations/joint"
        action_key = "action" if source.layout == "aloha" else "actions"
        if source.joint.shape[1] != self.joint_dim:
            raise DatasetReadError(
                f"{source.name}: /{joint_key} has {source.joint.shape[1]} joints, "
                f"the buffer was made with joint_dim={self.joint_dim}"
            )
        if source.action.shape[1] != self.action_dim:
            raise DatasetReadError(
                f"{source.name}: /{action_key} has dimension {source.action.shape[1]}, "
                f"the buffer was made with action_dim={self.action_dim}"
            )
        problems = compatibility_problems(source, known)
        if problems:
            raise DatasetReadError(problems[0])

    def _reset_cache(self) -> None:
        self._sampler: TransitionSampler | None = None
        self._samplers: dict[tuple[float | None, int], TransitionSampler] = {}
        self._statistics: DatasetStatistics | None = None
        self._sample_out: tuple[tuple[int, float | None], RawBatch] | None = None

    # ---- what is in it -------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        return int(self._episodes.shape[0])

    @property
    def num_transitions(self) -> int:
        return len(self._table())

    @property
    def size(self) -> int:
        """Transitions loaded: the seed's name for ``num_transitions``."""
        return self.num_transitions

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.array([end - start for _, start, end in self._episode_ranges()], dtype=np.int64)

    @property
    def joint_names(self) -> list[str]:
        """Names from the files, or ``joint_0``... when no file names them."""
        for source in self._sources:
            if source.joint_names:
                return list(source.joint_names)
        return [f"joint_{i}" for i in range(self.joint_dim)]

    @property
    def rate_hz(self) -> float | None:
        """Recording rate from the files; None when no file states it."""
        return next((s.rate_hz for s in self._sources if s.rate_hz), None)

    @property
    def sources(self) -> list[EpisodeSource]:
        return list(self._sources)

    @property
    def statistics(self) -> DatasetStatistics:
        """Joint/action/reward statistics over this buffer's episodes, computed once."""
        if self._statistics is None:
            self._statistics = self._compute_statistics()
        return self._statistics

    @property
    def data_identity(self) -> dict:
        """Which data this is: files (path, size, layout) and a hash of the episode ends."""
        digest = hashlib.sha256()
        for source_index, start, end in self._episode_ranges():
            digest.update(self._sources[source_index].name.encode())
            digest.update(np.array([start, end], dtype=np.int64).tobytes())
        used = sorted(set(self._episodes[:, 0].tolist()))
        return {
            "files": [
                {"path": str(Path(s.name).resolve()) if s.file_size is not None else s.name,
                 "size": s.file_size, "layout": s.layout, "episodes": s.num_episodes}
                for s in (self._sources[i] for i in used)
            ],
            "num_episodes": self.num_episodes,
            "num_transitions": self.num_transitions,
            "episode_ends_sha256": digest.hexdigest(),
        }

    def episode(self, index: int) -> Episode:
        """Episode ``index`` of this buffer, images resized to ``image_size`` (HWC RGB)."""
        ranges = self._episode_ranges()
        if not 0 <= index < len(ranges):
            raise IndexError(f"episode {index} out of range: the buffer holds {len(ranges)}")
        source_index, start, end = ranges[index]
        source = self._sources[source_index]
        sampler = self._get_sampler()
        images = {}
        for camera, reader in zip(CAMERA_ORDER, sampler.episode_readers(source_index),
                                  strict=True):
            frames = np.empty((end - start, self.image_size, self.image_size, 3), np.uint8)
            for step in range(start, end):
                reader.read_hwc(step, frames[step - start])
            images[camera] = frames
        row = self._episodes[index]
        return Episode(
            left_image=images["left"], right_image=images["right"],
            global_image=images["global"],
            joint=source.joint[start:end].copy(), action=source.action[start:end].copy(),
            reward=source.reward[start:end].copy(),
            terminal=bool(source.episode_terminal[row[1]]),
        )

    # ---- sampling ------------------------------------------------------------------------

    def sample(self, batch_size: int, discount: float | None = None,
               chunk_size: int = 1) -> TransitionBatch:
        """``batch_size`` random transitions (seeded by ``seed``) on ``device``, with their
        return-to-go under ``discount`` when given, and action chunks of ``chunk_size``."""
        sampler = self.sampler(discount=discount, chunk_size=chunk_size)
        key = (batch_size, discount, chunk_size)
        if self._sample_out is None or self._sample_out[0] != key:
            pin = self.device.type == "cuda"
            self._sample_out = (key, sampler.allocate(batch_size, _torch_empty(pin)))
        raw = sampler.fill(sampler.sample_indices(self._rng, batch_size), self._sample_out[1])
        return raw_to_batch(raw, self.device, sampler.layout)

    def sampler(self, layout: str | None = None, discount: float | None = None,
                chunk_size: int = 1) -> TransitionSampler:
        """The numpy sampler behind ``sample`` (picklable; for DataLoader workers), writing
        frames in ``layout`` ("HWC", "CHW"; None: as stored, the fastest to read), with a
        ``discount`` each transition's return-to-go, and action chunks of ``chunk_size``
        steps with their rewards (``dataset.sampler.RawBatch``); each built once."""
        key = (discount, chunk_size)
        if key not in self._samplers:
            base = self._get_sampler().with_returns(discount) if discount is not None else (
                self._get_sampler())
            self._samplers[key] = base.with_chunks(chunk_size)
        return self._samplers[key].with_layout(layout)

    def split(
        self, val_fraction: float, seed: int = 0
    ) -> tuple[MultimodalReplayBuffer, MultimodalReplayBuffer]:
        """(train, val) buffers over disjoint whole episodes, chosen by ``seed``; the files
        stay shared. They sample with this buffer's seed (val: seed + 1)."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if self.num_episodes < 2:
            raise ValueError(
                f"cannot split {self.num_episodes} episode(s) into train and validation"
            )
        order = np.random.default_rng(seed).permutation(self.num_episodes)
        num_val = min(max(1, round(val_fraction * self.num_episodes)), self.num_episodes - 1)
        val_rows, train_rows = np.sort(order[:num_val]), np.sort(order[num_val:])
        return self._subset(train_rows, self.seed), self._subset(val_rows, self.seed + 1)

    def _subset(self, rows: np.ndarray, seed: int) -> MultimodalReplayBuffer:
        child = MultimodalReplayBuffer(
            self.action_dim, self.joint_dim, self.device, self.image_size, seed=seed,
            aloha=self.aloha, images_in_memory=self.images_in_memory,
        )
        child._sources = self._sources
        child._episodes = self._episodes[rows]
        child.parent_episode_indices = rows.tolist()
        return child

    # ---- internals -----------------------------------------------------------------------

    def _episode_ranges(self) -> list[tuple[int, int, int]]:
        ranges = []
        for source_index, episode_index in self._episodes.tolist():
            ends = self._sources[source_index].episode_ends
            start = int(ends[episode_index - 1]) if episode_index else 0
            ranges.append((source_index, start, int(ends[episode_index])))
        return ranges

    def _table(self) -> TransitionTable:
        return self._get_sampler().table

    def _get_sampler(self) -> TransitionSampler:
        if not self._sources:
            raise ValueError("the replay buffer is empty: call load_from_hdf5 or add_episodes")
        if self._sampler is None:
            table = TransitionTable.build(self._sources, self._episodes)
            if len(table) == 0:
                raise DatasetReadError(
                    "no transitions: every episode is a single step without a terminal"
                )
            self._sampler = TransitionSampler(self._sources, table, self.image_size)
        return self._sampler

    def _compute_statistics(self) -> DatasetStatistics:
        ranges = self._episode_ranges()
        joint = np.concatenate([self._sources[s].joint[a:b] for s, a, b in ranges])
        action = np.concatenate([self._sources[s].action[a:b] for s, a, b in ranges])
        table = self._table()
        reward = np.concatenate([
            self._sources[s].reward[table.frame[table.source == s]]
            for s in np.unique(table.source).tolist()
        ])
        return DatasetStatistics(
            joint_mean=joint.mean(axis=0, dtype=np.float64).astype(np.float32),
            joint_std=joint.std(axis=0, dtype=np.float64).astype(np.float32),
            action_mean=action.mean(axis=0, dtype=np.float64).astype(np.float32),
            action_std=action.std(axis=0, dtype=np.float64).astype(np.float32),
            action_min=action.min(axis=0),
            action_max=action.max(axis=0),
            reward_min=float(reward.min()),
            reward_max=float(reward.max()),
            num_transitions=len(table),
        )


def raw_to_batch(
    raw: RawBatch, device: torch.device, layout: str, non_blocking: bool = False
) -> TransitionBatch:
    """Move a RawBatch (numpy arrays or tensors) to ``device`` as a TransitionBatch.

    Images stay uint8; the three cameras are stacked into [B, 9, H, W] on the device. The
    result never aliases ``raw``, so the sampler may overwrite it at once.
    """

    def move(array) -> torch.Tensor:
        tensor = torch.as_tensor(array)
        moved = tensor.to(device, non_blocking=non_blocking)
        return moved.clone() if moved.data_ptr() == tensor.data_ptr() else moved

    def stack(array) -> torch.Tensor:
        if device.type == "cpu":  # numpy's transposing copy is ~4x faster than torch's here
            images = np.asarray(array)
            if layout == "HWC":
                images = images.transpose(0, 1, 4, 2, 3)
            stacked = np.array(images, order="C")  # always a fresh copy
            return torch.from_numpy(stacked.reshape(stacked.shape[0], 9, *stacked.shape[3:]))
        images = torch.as_tensor(array).to(device, non_blocking=non_blocking)
        if layout == "HWC":
            images = images.permute(0, 1, 4, 2, 3)
        batch, height, width = images.shape[0], images.shape[3], images.shape[4]
        return images.reshape(batch, 9, height, width)

    return TransitionBatch(
        image=stack(raw.image), joint=move(raw.joint), action=move(raw.action),
        reward=move(raw.reward), next_image=stack(raw.next_image),
        next_joint=move(raw.next_joint), not_done=move(raw.not_done),
        episode=move(raw.episode), step=move(raw.step),
        return_to_go=None if raw.return_to_go is None else move(raw.return_to_go),
        chunk_steps=None if raw.chunk_steps is None else move(raw.chunk_steps),
    )


def _torch_empty(pin: bool):
    """``empty(shape, dtype)`` returning numpy views of (optionally pinned) torch tensors."""

    def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
        tensor = torch.empty(shape, dtype=_TORCH_DTYPES[np.dtype(dtype)], pin_memory=pin)
        return tensor.numpy()

    return empty


def batch_tensors(
    sampler: TransitionSampler, batch_size: int, shared: bool
) -> tuple[dict[str, torch.Tensor], RawBatch]:
    """One batch's tensors (in shared memory for a loader worker) and the RawBatch of numpy
    views onto them that ``sampler.fill`` writes."""
    tensors = {}
    for name, (shape, dtype) in sampler.batch_layout(batch_size).items():
        tensor = torch.empty(shape, dtype=_TORCH_DTYPES[dtype])
        tensors[name] = tensor.share_memory_() if shared else tensor
    return tensors, RawBatch(**{name: t.numpy() for name, t in tensors.items()})


# torch dtype of each RawBatch field's numpy dtype (tensors that RawBatch arrays view)
_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.float32): torch.float32,
                 np.dtype(np.int64): torch.int64}
