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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import lapo_ros
from lapo_ros.common.files import TemporaryFileError, atomic_path

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


class DatasetReadError(ValueError):
    """A dataset that cannot be read or trained on; the message names the file and key."""


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

    @property
    def nbytes(self) -> int:
        """Bytes of all its arrays."""
        arrays = (self.left_image, self.right_image, self.global_image, self.joint,
                  self.action, self.reward)
        return sum(int(a.nbytes) for a in arrays) + len(self) * 9  # terminals, episode end

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
        for key, array in ((JOINT_KEY, self.joint), (ACTION_KEY, self.action)):
            if array.ndim != 2 or array.shape[1] == 0:
                raise DatasetWriteError(
                    f"{name}: /{key} must be (T,D) with D >= 1, got {array.shape}"
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


RESERVE_SLACK_BYTES = 1 << 20  # room for HDF5 metadata beyond the data: indexes, headers
NOT_HDF5 = "cannot append, not a readable HDF5 file"


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
    complete, so a failure (a bad episode, a full disk) never leaves a half-written dataset
    and leaves an existing ``path`` as it was. With ``append`` the existing file is copied
    first and extended; its joint names and image size must match. A new file gets the
    permissions the umask gives; a replaced or extended one keeps its own.
    """
    path = Path(path)
    appending = append and path.exists()
    with _replacing(path) as tmp:
        if appending:
            _copy(path, tmp)
        try:
            with _open(tmp, path, appending) as h5:
                space = _DiskSpace(h5, path)
                if appending:
                    _check_append_compatible(h5, path, joint_names, rate_hz)
                else:
                    _init_attrs(h5, joint_names, rate_hz)
                count = _add_episodes(h5, path, episodes, space, compression)
                if count == 0 and not appending:
                    raise DatasetWriteError(f"{path}: no episodes to write")
                space.reserve(2 * len(json.dumps(source)))
                _record_source(h5, source)
                size = space.used()
        except OSError as error:  # an I/O error inside HDF5: the disk itself failed
            raise DatasetWriteError(f"{path}: writing failed ({error})") from None
        os.truncate(tmp, size)  # give back the space reserved but not used
    return count


def _add_episodes(h5: h5py.File, path: Path, episodes: Iterable[Episode], space: _DiskSpace,
                  compression: str | None) -> int:
    """Validate and append each episode, its disk space reserved first; return how many."""
    count = 0
    for episode in episodes:
        episode.validate(f"{path} episode {_num_episodes(h5)}")
        space.reserve(episode.nbytes)
        _append_episode(h5, episode, compression)
        count += 1
    return count


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """``atomic_path`` with its failures as DatasetWriteError naming the file."""
    if path.is_dir():
        raise DatasetWriteError(f"{path}: is a folder, expected an .hdf5 file name")
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except TemporaryFileError as error:
        raise DatasetWriteError(
            f"{path}: cannot create a file in {path.parent} "
            f"({_folder_problem(path, error.__cause__)})"
        ) from None


def _folder_problem(path: Path, error: OSError) -> str:
    """Why no file can be created beside ``path``: a file where a folder must be, or the
    system's reason."""
    for folder in path.parents:
        if folder.exists():
            return error.strerror if folder.is_dir() else f"{folder} is a file, not a folder"
    return error.strerror


def _copy(path: Path, tmp: Path) -> None:
    """Copy the file to append to into the temporary file."""
    try:
        shutil.copyfile(path, tmp)
    except OSError as error:
        raise DatasetWriteError(
            f"{path}: cannot copy it to append to ({error.strerror}); the file is unchanged"
        ) from None


def _open(tmp: Path, path: Path, appending: bool) -> h5py.File:
    """The temporary file opened by h5py: the copy to extend, or a new file."""
    try:
        return h5py.File(tmp, "a" if appending else "w")
    except OSError as error:
        if appending:
            raise DatasetWriteError(f"{path}: {NOT_HDF5} ({error})") from None
        raise DatasetWriteError(f"{path}: cannot create the HDF5 file ({error})") from None


class _DiskSpace:
    """Disk space allocated ahead of HDF5's writes, so that a full disk fails here, cleanly.

    HDF5 cannot recover from a failed write: the file can then be neither flushed nor
    closed, and the process crashes when it exits (h5py issue 914). So the space each
    episode needs is allocated first (``posix_fallocate``) and HDF5 only writes into space
    the file already owns; ``used`` is what the file needs in the end.
    """

    def __init__(self, h5: h5py.File, path: Path) -> None:
        self.h5 = h5
        self.path = path

    def reserve(self, nbytes: int) -> None:
        """Allocate room for ``nbytes`` more data, and for HDF5's metadata about them."""
        length = nbytes + nbytes // 10 + RESERVE_SLACK_BYTES
        try:
            os.posix_fallocate(self.h5.id.get_vfd_handle(), self.used(), length)
        except OSError as error:
            raise DatasetWriteError(
                f"{self.path}: no room for {length / 2**20:.1f} MiB more in "
                f"{self.path.parent} ({error.strerror}); nothing was written"
            ) from None

    def used(self) -> int:
        """Bytes the file needs once everything written so far is on disk."""
        self.h5.flush()
        return int(self.h5.id.get_filesize())


def _init_attrs(h5: h5py.File, joint_names: Sequence[str], rate_hz: float) -> None:
    h5.attrs["format_version"] = FORMAT_VERSION
    h5.attrs["joint_names"] = json.dumps(list(joint_names))
    h5.attrs["rate_hz"] = float(rate_hz)
    h5.attrs["created_by"] = f"lapo_ros {lapo_ros.__version__}"


def existing_joint_names(path: str | os.PathLike) -> list[str]:
    """The joint names of the dataset to append to at ``path`` ([] when there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with h5py.File(path, "r") as h5:
            return _joint_names(h5, path)
    except OSError as error:
        raise DatasetWriteError(f"{path}: {NOT_HDF5} ({error})") from None


def _joint_names(h5: h5py.File, path: Path) -> list[str]:
    try:
        return list(json.loads(h5.attrs.get("joint_names", "[]")))
    except (TypeError, ValueError):
        raise DatasetWriteError(
            f"{path}: cannot append, its joint_names attribute is not a JSON list"
        ) from None


def _check_append_compatible(
    h5: h5py.File, path: Path, joint_names: Sequence[str], rate_hz: float
) -> None:
    existing = _joint_names(h5, path)
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
