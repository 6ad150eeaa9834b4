"""The canonical HDF5 episode layout (contract) and its atomic writer.

```
/observations/left_image    (N,H,W,3) uint8 RGB
/observations/right_image   (N,H,W,3) uint8 RGB
/observations/global_image  (N,H,W,3) uint8 RGB
/observations/joint         (N,J) float32
/actions                    (N,A) float32
/rewards                    (N,)  float32
/terminals                  (N,)  bool
/episode_ends               (E,)  int64   exclusive end index of each episode
attrs: format_version, joint_names, rate_hz, created_by, source
```
Images are stored one frame per chunk, uncompressed by default, so a random frame is
one contiguous read. numpy + h5py only: no torch, no ROS.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import lapo_ros

FORMAT_VERSION = 1
IMAGE_KEYS = {
    "left": "observations/left_image",
    "right": "observations/right_image",
    "global": "observations/global_image",
}
JOINT_KEY = "observations/joint"
ACTION_KEY = "actions"
REWARD_KEY = "rewards"
TERMINAL_KEY = "terminals"
EPISODE_ENDS_KEY = "episode_ends"


class DatasetWriteError(ValueError):
    """Episodes that cannot be written as given; the message names the episode and key."""


@dataclass
class Episode:
    """One episode in robot units, images already at the dataset's image size."""

    left_image: np.ndarray  # (T,H,W,3) uint8 RGB
    right_image: np.ndarray
    global_image: np.ndarray
    joint: np.ndarray  # (T,J) float32
    action: np.ndarray  # (T,A) float32
    reward: np.ndarray  # (T,) float32
    terminal: bool  # True when the last step ended in a terminal state (success/failure)

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def terminals(self) -> np.ndarray:
        flags = np.zeros(len(self), dtype=bool)
        flags[-1] = self.terminal
        return flags

    def validate(self, name: str) -> None:
        """Raise DatasetWriteError naming ``name`` and the key at fault."""
        length = len(self)
        if length == 0:
            raise DatasetWriteError(f"{name}: empty episode")
        fields = {
            IMAGE_KEYS["left"]: self.left_image,
            IMAGE_KEYS["right"]: self.right_image,
            IMAGE_KEYS["global"]: self.global_image,
            JOINT_KEY: self.joint,
            ACTION_KEY: self.action,
            REWARD_KEY: self.reward,
        }
        for key, array in fields.items():
            if array.shape[0] != length:
                raise DatasetWriteError(
                    f"{name}: /{key} has {array.shape[0]} steps, /{ACTION_KEY} has {length}"
                )
        for camera in IMAGE_KEYS:
            image = getattr(self, f"{camera}_image")
            if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
                raise DatasetWriteError(
                    f"{name}: /{IMAGE_KEYS[camera]} must be (T,H,W,3) uint8, "
                    f"got {image.shape} {image.dtype}"
                )
        for key, array in ((JOINT_KEY, self.joint), (ACTION_KEY, self.action),
                           (REWARD_KEY, self.reward)):
            if not np.all(np.isfinite(array)):
                raise DatasetWriteError(f"{name}: /{key} contains NaN or inf")


def write_episodes(
    path: str | os.PathLike,
    episodes: Iterable[Episode],
    *,
    joint_names: Sequence[str],
    rate_hz: float,
    source: dict | None = None,
    append: bool = False,
    compression: str | None = None,
) -> int:
    """Write ``episodes`` to ``path`` atomically; return the number of episodes written.

    The file is built in a temporary file beside ``path`` and renamed over it only when
    complete, so a crash never leaves a half-written dataset. With ``append`` the existing
    file is copied first and extended; its joint names and image size must match.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if append and path.exists():
            shutil.copyfile(path, tmp)
            mode = "a"
        else:
            mode = "w"
        with h5py.File(tmp, mode) as h5:
            if mode == "w":
                _init_attrs(h5, joint_names, rate_hz)
            else:
                _check_append_compatible(h5, path, joint_names, rate_hz)
            count = 0
            for episode in episodes:
                episode.validate(f"{path} episode {_num_episodes(h5)}")
                _append_episode(h5, episode, compression)
                count += 1
            if count == 0 and mode == "w":
                raise DatasetWriteError(f"{path}: no episodes to write")
            _record_source(h5, source)
        os.replace(tmp, path)
        return count
    finally:
        tmp.unlink(missing_ok=True)


def _init_attrs(h5: h5py.File, joint_names: Sequence[str], rate_hz: float) -> None:
    h5.attrs["format_version"] = FORMAT_VERSION
    h5.attrs["joint_names"] = json.dumps(list(joint_names))
    h5.attrs["rate_hz"] = float(rate_hz)
    h5.attrs["created_by"] = f"lapo_ros {lapo_ros.__version__}"


def _check_append_compatible(
    h5: h5py.File, path: Path, joint_names: Sequence[str], rate_hz: float
) -> None:
    existing = json.loads(h5.attrs.get("joint_names", "[]"))
    if existing != list(joint_names):
        raise DatasetWriteError(
            f"{path}: cannot append, joint_names differ (file {existing}, new {list(joint_names)})"
        )
    if not np.isclose(float(h5.attrs.get("rate_hz", rate_hz)), rate_hz):
        raise DatasetWriteError(
            f"{path}: cannot append, rate_hz differs (file {h5.attrs['rate_hz']}, new {rate_hz})"
        )


def _record_source(h5: h5py.File, source: dict | None) -> None:
    if source is None:
        return
    history = json.loads(h5.attrs.get("source", "[]"))
    history.append(source)
    h5.attrs["source"] = json.dumps(history)


def _num_episodes(h5: h5py.File) -> int:
    return int(h5[EPISODE_ENDS_KEY].shape[0]) if EPISODE_ENDS_KEY in h5 else 0


def _append_rows(h5: h5py.File, key: str, rows: np.ndarray, compression: str | None) -> None:
    if key not in h5:
        is_image = rows.ndim == 4
        chunks = (1, *rows.shape[1:]) if is_image else True
        h5.create_dataset(
            key, data=rows, maxshape=(None, *rows.shape[1:]), chunks=chunks,
            compression=compression if is_image else None,
        )
        return
    dataset = h5[key]
    if dataset.shape[1:] != rows.shape[1:]:
        raise DatasetWriteError(
            f"{h5.filename}: /{key} holds rows of shape {dataset.shape[1:]}, "
            f"new episode has {rows.shape[1:]}"
        )
    start = dataset.shape[0]
    dataset.resize(start + rows.shape[0], axis=0)
    dataset[start:] = rows


def _append_episode(h5: h5py.File, episode: Episode, compression: str | None) -> None:
    start = int(h5[EPISODE_ENDS_KEY][-1]) if _num_episodes(h5) else 0
    for camera, key in IMAGE_KEYS.items():
        _append_rows(h5, key, getattr(episode, f"{camera}_image"), compression)
    _append_rows(h5, JOINT_KEY, episode.joint.astype(np.float32), None)
    _append_rows(h5, ACTION_KEY, episode.action.astype(np.float32), None)
    _append_rows(h5, REWARD_KEY, episode.reward.astype(np.float32).reshape(-1), None)
    _append_rows(h5, TERMINAL_KEY, episode.terminals(), None)
    _append_rows(h5, EPISODE_ENDS_KEY, np.array([start + len(episode)], dtype=np.int64), None)
