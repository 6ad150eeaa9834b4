"""Assemble random transition batches from episode sources into reused uint8 buffers.

numpy only, picklable, fork-safe: file handles (an ``mmap`` per file for the fast path,
h5py files for the fallback) are opened lazily in the process that reads and reopened
after a fork; they are never pickled. Frames are copied as stored (one memcpy per frame on
the fast path); only frames whose size or channel layout differs from the output are
converted, with ``image_preprocessing.resize_rgb``. The rearrangement of the three
cameras into ``[B, 9, H, W]`` happens on the training device (see ``replay_buffer``).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import h5py
import numpy as np

from lapo_ros.common.images import CAMERA_ORDER, resize_rgb
from lapo_ros.dataset.episodes import EpisodeSource, ImageStream

NUM_CAMERAS = len(CAMERA_ORDER)


@dataclass
class RawBatch:
    """One batch as the sampler writes it; arrays are reused from batch to batch.

    image / next_image: uint8 (B, 3 cameras, *frame) with frame (H,W,3) for layout "HWC"
    or (3,H,W) for "CHW"; joint/next_joint (B,J), action (B,A), reward/not_done (B,1)
    float32; episode (B,) int64, the transition's episode (row of the buffer's episodes);
    step (B,) int64, its index inside that episode (0: the episode's first transition);
    return_to_go (B,1) float32 when the sampler has a discount (NaN: episode timed out).

    With action chunks of h > 1 steps: action (B,h,A), the recorded a_t..a_{t+h-1}, padded
    past the episode's last frame by repeating its last action (the arm holds); reward
    (B,h), r_t..r_{t+n-1} then zeros; chunk_steps (B,1) float32, n = the transitions the
    chunk covers before its episode ends (<= h); next_image / next_joint / not_done are
    those of s_{t+n}, so the h-step backup stops at the episode's end.
    """

    image: np.ndarray
    next_image: np.ndarray
    joint: np.ndarray
    next_joint: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    not_done: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    return_to_go: np.ndarray | None = None
    chunk_steps: np.ndarray | None = None

    @staticmethod
    def layout_of(
        batch_size: int, frame_shape: tuple[int, ...], joint_dim: int, action_dim: int,
        returns: bool = False, chunk_size: int = 1,
    ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Field name -> (shape, dtype) of a batch (with ``return_to_go`` when ``returns``,
        chunked actions and rewards and ``chunk_steps`` when ``chunk_size`` > 1)."""
        images = (batch_size, NUM_CAMERAS, *frame_shape)
        uint8, float32 = np.dtype(np.uint8), np.dtype(np.float32)
        layout = {
            "image": (images, uint8),
            "next_image": (images, uint8),
            "joint": ((batch_size, joint_dim), float32),
            "next_joint": ((batch_size, joint_dim), float32),
            "action": ((batch_size, action_dim) if chunk_size == 1
                       else (batch_size, chunk_size, action_dim), float32),
            "reward": ((batch_size, chunk_size), float32),
            "not_done": ((batch_size, 1), float32),
            "episode": ((batch_size,), np.dtype(np.int64)),
            "step": ((batch_size,), np.dtype(np.int64)),
        }
        if returns:
            layout["return_to_go"] = ((batch_size, 1), float32)
        if chunk_size > 1:
            layout["chunk_steps"] = ((batch_size, 1), float32)
        return layout

    def __len__(self) -> int:
        return int(self.action.shape[0])


@dataclass
class TransitionTable:
    """Every transition of the selected episodes: source, frame, next frame, not_done,
    episode, step inside it, and (``with_returns``) the discounted return-to-go.

    Inside an episode, step t pairs with t+1. A terminal last step pairs with itself and
    not_done = 0; the last step of a non-terminal (timed-out) episode is no transition.
    """

    source: np.ndarray  # (T,) int32 index into the sources
    frame: np.ndarray  # (T,) int64 frame index inside its source
    next_frame: np.ndarray  # (T,) int64
    not_done: np.ndarray  # (T,) float32
    episode: np.ndarray  # (T,) int64 row of ``episodes`` the transition belongs to
    step: np.ndarray  # (T,) int64 index of the transition inside its episode
    return_to_go: np.ndarray | None = None  # (T,) float32, NaN where the episode timed out

    @classmethod
    def build(cls, sources: Sequence[EpisodeSource], episodes: np.ndarray) -> TransitionTable:
        """``episodes``: (E,2) rows of (source index, episode index inside that source)."""
        parts = []
        for row, (source_index, episode_index) in enumerate(episodes.tolist()):
            source = sources[source_index]
            end = int(source.episode_ends[episode_index])
            start = int(source.episode_ends[episode_index - 1]) if episode_index else 0
            frames = np.arange(start, end, dtype=np.int64)
            nxt = frames + 1
            not_done = np.ones(end - start, dtype=np.float32)
            if source.episode_terminal[episode_index]:
                nxt[-1] = end - 1
                not_done[-1] = 0.0
            else:
                frames, nxt, not_done = frames[:-1], nxt[:-1], not_done[:-1]
            parts.append((np.full(frames.shape, source_index, dtype=np.int32), frames, nxt,
                          not_done, np.full(frames.shape, row, dtype=np.int64),
                          frames - start))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty.astype(np.int32), empty, empty, empty.astype(np.float32), empty,
                       empty)
        return cls(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    def with_returns(self, sources: Sequence[EpisodeSource], discount: float) -> TransitionTable:
        """This table with each transition's discounted return-to-go over the rest of its
        recorded episode: sum_k discount^k r_{t+k}. A timed-out episode's tail was never
        recorded, so its transitions get NaN."""
        rewards = np.zeros(len(self), dtype=np.float64)
        for source_index in np.unique(self.source).tolist():
            rows = self.source == source_index
            rewards[rows] = sources[source_index].reward[self.frame[rows]]
        returns = np.full(len(self), np.nan, dtype=np.float64)
        ends = np.flatnonzero(np.diff(self.episode, append=-1)) + 1
        for start, end in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True):
            if self.not_done[end - 1] != 0.0:
                continue  # timed out: the return after the last transition is unknown
            running = 0.0
            for t in range(end - 1, start - 1, -1):
                running = rewards[t] + discount * running
                returns[t] = running
        return replace(self, return_to_go=returns.astype(np.float32))

    def __len__(self) -> int:
        return int(self.frame.shape[0])


class _FrameReader:
    """Reads frames of one ImageStream into flat uint8 views of the output layout."""

    def __init__(self, stream: ImageStream, size: tuple[int, int], layout: str) -> None:
        self.stream = stream
        self.size = tuple(size)
        self.layout = layout
        self.out_shape = (*size, 3) if layout == "HWC" else (3, *size)
        self.convert = stream.size != self.size or stream.layout != layout
        self._bytes: np.ndarray | None = None  # the file as a flat uint8 array (mmap)
        self._dataset: h5py.Dataset | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_bytes": None, "_dataset": None}

    def open(self, handles: _FileHandles) -> None:
        stream = self.stream
        if stream.array is not None:
            return
        if stream.offsets is not None:
            self._bytes = handles.file_bytes(stream.path)
        else:
            self._dataset = handles.h5(stream.path)[stream.key]

    def read(self, index: int, out: np.ndarray) -> None:
        """Write frame ``index`` into the flat uint8 view ``out`` (output size and layout)."""
        if not self.convert:
            if self._bytes is not None:
                start = self.stream.offsets[index]
                out[:] = self._bytes[start:start + out.shape[0]]
            elif self.stream.array is not None:
                out[:] = self.stream.array[index].reshape(-1)
            else:
                self._dataset.read_direct(out.reshape(self.out_shape), np.s_[index])
            return
        frame, layout = self.stored(index), self.stream.layout
        if self.stream.size != self.size:
            if layout == "CHW":
                frame = frame.transpose(1, 2, 0)
            frame, layout = resize_rgb(np.ascontiguousarray(frame), self.size), "HWC"
        target = out.reshape(self.out_shape)
        if layout == self.layout:
            target[:] = frame
        else:
            target[:] = frame.transpose(2, 0, 1) if self.layout == "CHW" else frame.transpose(
                1, 2, 0)

    def read_hwc(self, index: int, out: np.ndarray) -> None:
        """Write frame ``index`` into ``out`` (H,W,3) at the output size."""
        frame = self.stored(index)
        if self.stream.layout == "CHW":
            frame = frame.transpose(1, 2, 0)
        out[:] = resize_rgb(np.ascontiguousarray(frame), self.size)

    def stored(self, index: int) -> np.ndarray:
        """Frame ``index`` as stored; a read-only view where the frames are mapped."""
        stream = self.stream
        if stream.array is not None:
            return stream.array[index]
        if self._bytes is not None:
            start = stream.offsets[index]
            return self._bytes[start:start + stream.frame_bytes].reshape(stream.frame_shape)
        return self._dataset[index]


class _FileHandles:
    """This process's open files: one mmap and one h5py handle per path at most."""

    def __init__(self) -> None:
        self._bytes: dict = {}
        self._h5: dict = {}

    def file_bytes(self, path) -> np.ndarray:
        if path not in self._bytes:
            with open(path, "rb") as file:
                mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            self._bytes[path] = np.frombuffer(mapped, dtype=np.uint8)
        return self._bytes[path]

    def h5(self, path) -> h5py.File:
        if path not in self._h5:
            self._h5[path] = h5py.File(path, "r")
        return self._h5[path]


class TransitionSampler:
    """Fills ``RawBatch`` arrays with random transitions; safe to pickle into workers."""

    def __init__(
        self,
        sources: Sequence[EpisodeSource],
        table: TransitionTable,
        image_size: int,
        layout: str | None = None,
        chunk_size: int = 1,
    ) -> None:
        """``layout`` of the output frames: "HWC", "CHW", or None for the stored one (one
        memcpy per frame; "HWC" when the sources differ); ``chunk_size`` h: actions of h
        steps and their h-step rewards per transition (see ``RawBatch``)."""
        if len(table) == 0:
            raise ValueError("no transitions to sample: every episode is a single timed-out step")
        if layout not in (None, "HWC", "CHW"):
            raise ValueError(f"layout must be None, 'HWC' or 'CHW', got {layout!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.table = table
        self.chunk_size = chunk_size
        self.image_size = int(image_size)
        size = (self.image_size, self.image_size)
        streams = [s.images[cam] for s in sources for cam in CAMERA_ORDER]
        stored = "CHW" if all(s.layout == "CHW" for s in streams) else "HWC"
        self.layout = layout or stored
        self._init_args = (sources, table, image_size)
        self.frame_shape = (*size, 3) if self.layout == "HWC" else (3, *size)
        self._readers = [
            tuple(_FrameReader(s.images[cam], size, self.layout) for cam in CAMERA_ORDER)
            for s in sources
        ]
        starts = np.cumsum([0] + [s.num_frames for s in sources[:-1]]).astype(np.int64)
        self._global_frame = starts[table.source] + table.frame
        self._joint = np.concatenate([s.joint for s in sources])
        self._action = np.concatenate([s.action for s in sources])
        self._reward = np.concatenate([s.reward for s in sources])
        # n: the transitions a chunk of h covers before its episode ends; s' is the state
        # after the last of them (the next step's at h = 1)
        last_row = _episode_last_row(table)
        rows = np.arange(len(table))
        steps = np.minimum(chunk_size, last_row - rows + 1)
        tail = rows + steps - 1
        self._next_frame = table.next_frame[tail]
        self._global_next = starts[table.source] + self._next_frame
        self._not_done = table.not_done[tail]
        if chunk_size > 1:
            frames = self._global_frame[:, None] + np.arange(chunk_size)
            episode_end = (starts[table.source] + table.next_frame[last_row])[:, None]
            inside = frames - self._global_frame[:, None] < steps[:, None]
            self._action_frames = np.minimum(frames, episode_end)  # the last action repeats
            self._reward_frames = np.where(inside, frames, self._global_frame[:, None])
            self._reward_mask = inside.astype(np.float32)
            self._steps = steps.astype(np.float32)
        self._pid: int | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pid": None}

    def with_layout(self, layout: str | None) -> TransitionSampler:
        """This sampler writing frames in ``layout`` (itself when that is already so)."""
        if layout is None or layout == self.layout:
            return self
        return TransitionSampler(*self._init_args, layout=layout, chunk_size=self.chunk_size)

    def with_chunks(self, chunk_size: int) -> TransitionSampler:
        """This sampler writing action chunks of ``chunk_size`` steps (see ``RawBatch``)."""
        if chunk_size == self.chunk_size:
            return self
        return TransitionSampler(*self._init_args, layout=self.layout, chunk_size=chunk_size)

    def with_returns(self, discount: float | None) -> TransitionSampler:
        """This sampler also writing each transition's return-to-go under ``discount``
        (itself when ``discount`` is None)."""
        if discount is None:
            return self
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {discount}")
        sources, table, image_size = self._init_args
        return TransitionSampler(sources, table.with_returns(sources, discount), image_size,
                                 layout=self.layout, chunk_size=self.chunk_size)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def joint_dim(self) -> int:
        return int(self._joint.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self._action.shape[1])

    def _ensure_open(self) -> None:
        """Open the files in this process (again after a fork: handles are per process)."""
        if self._pid != os.getpid():
            handles = _FileHandles()
            for readers in self._readers:
                for reader in readers:
                    reader.open(handles)
            self._pid = os.getpid()

    def episode_readers(self, source_index: int) -> tuple[_FrameReader, ...]:
        """The (left, right, global) frame readers of one source, opened."""
        self._ensure_open()
        return self._readers[source_index]

    def batch_layout(self, batch_size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Field name -> (shape, dtype) of the RawBatch this sampler fills."""
        return RawBatch.layout_of(batch_size, self.frame_shape, self.joint_dim, self.action_dim,
                                  returns=self.table.return_to_go is not None,
                                  chunk_size=self.chunk_size)

    def allocate(
        self,
        batch_size: int,
        empty: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty,
    ) -> RawBatch:
        """A RawBatch of arrays from ``empty(shape, dtype)`` (e.g. pinned tensor views)."""
        return RawBatch(**{name: empty(shape, dtype)
                           for name, (shape, dtype) in self.batch_layout(batch_size).items()})

    def sample_indices(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        return rng.integers(0, len(self.table), size=batch_size)

    def fill(self, indices: np.ndarray, out: RawBatch) -> RawBatch:
        """Write the transitions ``indices`` into ``out`` and return it."""
        self._ensure_open()
        frames = self._global_frame[indices]
        nexts = self._global_next[indices]
        np.take(self._joint, frames, axis=0, out=out.joint)
        np.take(self._joint, nexts, axis=0, out=out.next_joint)
        if self.chunk_size == 1:
            np.take(self._action, frames, axis=0, out=out.action)
            np.take(self._reward, frames, out=out.reward[:, 0])
        else:
            np.take(self._action, self._action_frames[indices], axis=0, out=out.action)
            np.take(self._reward, self._reward_frames[indices], out=out.reward)
            out.reward *= self._reward_mask[indices]
            np.take(self._steps, indices, out=out.chunk_steps[:, 0])
        np.take(self._not_done, indices, out=out.not_done[:, 0])
        np.take(self.table.episode, indices, out=out.episode)
        np.take(self.table.step, indices, out=out.step)
        if out.return_to_go is not None:
            np.take(self.table.return_to_go, indices, out=out.return_to_go[:, 0])
        batch = len(indices)
        image = out.image.reshape(batch, NUM_CAMERAS, -1)
        next_image = out.next_image.reshape(batch, NUM_CAMERAS, -1)
        table = self.table
        for row, (source, frame, nxt) in enumerate(zip(
                table.source[indices].tolist(), table.frame[indices].tolist(),
                self._next_frame[indices].tolist(), strict=True)):
            for camera, reader in enumerate(self._readers[source]):
                reader.read(frame, image[row, camera])
                reader.read(nxt, next_image[row, camera])
        return out


def _episode_last_row(table: TransitionTable) -> np.ndarray:
    """Each transition's row of the last transition of its episode (rows of one episode are
    consecutive)."""
    ends = np.flatnonzero(np.diff(table.episode, append=-1))
    run = np.concatenate([[0], np.cumsum(np.diff(table.episode) != 0)])
    return ends[run]
