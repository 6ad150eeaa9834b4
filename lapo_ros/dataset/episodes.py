"""Read and validate HDF5 episode files in every layout users already have.

Layouts (detected per file from its keys):

- ``canonical``: the layout of ``hdf5_layout`` with ``/episode_ends``.
- ``seed``: the seed's single file, same keys without ``/episode_ends``; episodes end
  after each true ``/terminals`` step (and after each true ``/timeouts`` step, if that key
  exists, as a non-terminal end); rewards/terminals may be (N,) or (N,1); images HWC or CHW.
- ``aloha``: one episode per file, ``/observations/qpos``, ``/observations/images/<cam>``,
  ``/action`` (ACT's and the ALOHA recorders'), read through ``AlohaLayout`` (``aloha.py``:
  camera names, joint names, rate, success labels).

Low-dimensional data (joints, actions, rewards) is read into RAM; images stay on disk and
are described by ``ImageStream`` (a byte offset per frame where the file allows memmap
reads). Every problem found in a file is collected, so ``lapo_hdf5 inspect`` can list them
all and ``load_sources`` can raise one error naming file and key. numpy + h5py only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.dataset.aloha import JOINT_NAMES as ALOHA_JOINT_NAMES
from lapo_ros.dataset.aloha import JOINT_NAMES_OPTION as ALOHA_JOINT_NAMES_OPTION
from lapo_ros.dataset.aloha import AlohaLayout
from lapo_ros.dataset.layout import (
    ACTION_KEY,
    EPISODE_ENDS_KEY,
    IMAGE_KEYS,
    JOINT_KEY,
    REWARD_KEY,
    TERMINAL_KEY,
    DatasetReadError,
)

HDF5_SUFFIXES = (".hdf5", ".h5", ".hdf")
TIMEOUT_KEY = "timeouts"
# What h5py raises for a damaged file: a corrupt object header, a dangling link, a chunk
# that cannot be read
H5_ERRORS = (OSError, RuntimeError, KeyError)


@dataclass
class ImageStream:
    """One camera's frames inside one file (or in RAM for in-memory episodes)."""

    path: Path | None  # None for in-memory frames
    key: str
    num_frames: int
    frame_shape: tuple[int, ...]  # (H,W,3) for HWC, (3,H,W) for CHW
    layout: str  # "HWC" or "CHW"
    offsets: np.ndarray | None = None  # byte offset of each frame: memmap fast path
    array: np.ndarray | None = None  # frames in RAM

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of a frame."""
        if self.layout == "HWC":
            return int(self.frame_shape[0]), int(self.frame_shape[1])
        return int(self.frame_shape[1]), int(self.frame_shape[2])

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape))

    @property
    def access(self) -> str:
        """How frames are read: "memory", "memmap" or "h5py"."""
        if self.array is not None:
            return "memory"
        return "memmap" if self.offsets is not None else "h5py"


@dataclass
class EpisodeSource:
    """Episodes of one file (or one in-memory batch): low-dim data in RAM, image streams."""

    name: str  # the file path, or a label for in-memory episodes
    layout: str  # canonical / seed / aloha / memory
    joint: np.ndarray  # (N,J) float32
    action: np.ndarray  # (N,A) float32
    reward: np.ndarray  # (N,) float32
    episode_ends: np.ndarray  # (E,) int64, exclusive
    episode_terminal: np.ndarray  # (E,) bool
    images: dict[str, ImageStream]  # camera -> stream
    joint_names: list[str] | None = None
    rate_hz: float | None = None
    file_size: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.action.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    @property
    def num_transitions(self) -> int:
        lengths = self.episode_ends - self.episode_starts
        return int(np.sum(lengths - 1) + np.sum(self.episode_terminal))


@dataclass
class FileReport:
    """What ``read_file`` found: the source (None when unusable) and every problem."""

    path: Path
    layout: str | None = None
    source: EpisodeSource | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    structure: list[str] = field(default_factory=list)  # "/key shape dtype [storage]"
    unlabelled: bool = False  # an ALOHA episode without success label (scored a failure)


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files named by a path, a folder (its HDF5 files, natural order) or a list of both."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in HDF5_SUFFIXES and p.is_file()),
                key=_natural_key,
            )
            if not found:
                raise DatasetReadError(
                    f"{path}: folder holds no HDF5 files ({', '.join(HDF5_SUFFIXES)})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetReadError(f"{path}: no such file or folder")
    if not files:
        raise DatasetReadError("no HDF5 files given")
    return files


def load_sources(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    aloha: AlohaLayout | None = None,
    images_in_memory: bool = False,
    require_labels: bool = True,
) -> list[EpisodeSource]:
    """Read every file named by ``paths``; raise DatasetReadError listing all problems.

    ``require_labels``: ALOHA episodes without a success label are refused (what training
    needs; evaluation of actions does without).
    """
    sources, unlabelled = [], []
    for path in expand_paths(paths):
        report = read_file(path, aloha=aloha, images_in_memory=images_in_memory)
        if report.errors:
            raise DatasetReadError("\n".join(report.errors))
        if report.unlabelled:
            unlabelled.append(report.path)
        sources.append(report.source)
    if require_labels and unlabelled:
        raise DatasetReadError(unlabelled_message(unlabelled))
    return sources


def unlabelled_message(paths: Sequence[Path]) -> str:
    """Why episodes without success labels cannot train, and the three ways to label them."""
    shown = ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
    return (f"{len(paths)} ALOHA episode file(s) say nothing of success ({shown}): give a "
            f"labels file (file stem: true/false; --labels, labels in config), a boolean "
            f"'success' attribute per file, or say every episode succeeded "
            f"(--assume-success, assume_success in config)")


def read_file(
    path: str | os.PathLike, *, aloha: AlohaLayout | None = None, images_in_memory: bool = False
) -> FileReport:
    """Read and validate one file; never raises for bad data (see ``FileReport.errors``)."""
    report = FileReport(Path(path))
    try:
        h5 = h5py.File(report.path, "r")
    except OSError as error:
        report.errors.append(f"{report.path}: cannot open as HDF5 ({error})")
        return report
    with h5:
        report.structure = _structure(h5)
        _FileReader(h5, report, aloha or AlohaLayout(), images_in_memory).read()
    return report


def frame_offsets(dataset: h5py.Dataset) -> np.ndarray | None:
    """Byte offset of each frame of an unfiltered uint8 dataset, or None when frames are
    not each one contiguous run of bytes in the file (compressed, other chunking, virtual)."""
    frame_bytes = int(np.prod(dataset.shape[1:]))
    plist = dataset.id.get_create_plist()
    if (dataset.dtype != np.uint8 or plist.get_nfilters() > 0 or dataset.is_virtual
            or dataset.external or dataset.shape[0] == 0):
        return None
    if dataset.chunks is None:
        start = dataset.id.get_offset()
        if start is None:
            return None
        return start + np.arange(dataset.shape[0], dtype=np.int64) * frame_bytes
    if tuple(dataset.chunks) != (1, *dataset.shape[1:]):
        return None
    offsets = np.full(dataset.shape[0], -1, dtype=np.int64)

    def visit(info) -> None:
        if info.size == frame_bytes and info.chunk_offset[0] < offsets.shape[0]:
            offsets[info.chunk_offset[0]] = info.byte_offset

    dataset.id.chunk_iter(visit)
    return None if np.any(offsets < 0) else offsets


class _FileReader:
    """Collects the problems of one open file and builds its EpisodeSource."""

    def __init__(self, h5: h5py.File, report: FileReport, aloha: AlohaLayout,
                 images_in_memory: bool) -> None:
        self.h5 = h5
        self.report = report
        self.aloha = aloha
        self.images_in_memory = images_in_memory
        self.where = str(report.path)

    def error(self, message: str) -> None:
        self.report.errors.append(f"{self.where}: {message}")

    def has(self, key: str) -> bool:
        """Whether the file names ``key`` (a link, even one that leads nowhere)."""
        try:
            return key in self.h5
        except H5_ERRORS:  # a damaged group on the way: reported when the key is read
            return True

    def read(self) -> None:
        if self.has(self.aloha.joint_key) and self.has(self.aloha.action_key):
            self.report.layout = "aloha"
            self._read_aloha()
        elif self.has(JOINT_KEY) or self.has(ACTION_KEY) or self.has(IMAGE_KEYS["left"]):
            self.report.layout = "canonical" if self.has(EPISODE_ENDS_KEY) else "seed"
            self._read_single_file()
        else:
            self.error(
                f"not a known episode layout: expected /{JOINT_KEY} and /{ACTION_KEY} "
                f"(canonical or seed layout) or /{self.aloha.joint_key} and "
                f"/{self.aloha.action_key} (ALOHA layout); top-level keys: "
                f"{sorted(self.h5.keys())}"
            )

    # ---- layouts -------------------------------------------------------------------------

    def _read_single_file(self) -> None:
        keys = {JOINT_KEY: 2, ACTION_KEY: 2, REWARD_KEY: 1, TERMINAL_KEY: 1}
        arrays = {key: self._lowdim(key, ndim) for key, ndim in keys.items()}
        images = {cam: self._image_stream(IMAGE_KEYS[cam]) for cam in CAMERA_ORDER}
        if any(v is None for v in arrays.values()) or any(v is None for v in images.values()):
            return
        length = self._common_length({**arrays, **{s.key: s for s in images.values()}})
        if length is None:
            return
        terminals = self._flags(arrays[TERMINAL_KEY], TERMINAL_KEY)
        if terminals is None:
            return
        if self.report.layout == "canonical":
            ends = self._episode_ends(length)
            if ends is None:
                return
            inner = np.flatnonzero(terminals)
            inner = inner[~np.isin(inner, ends - 1)]
            if inner.size:
                self.error(
                    f"/{TERMINAL_KEY} is true at step {int(inner[0])} inside an episode "
                    f"({inner.size} such steps); terminals may only mark an episode's last step"
                )
                return
            terminal = terminals[ends - 1]
        else:
            ends, terminal = self._boundaries_from_flags(terminals, length)
        self._finish(arrays[JOINT_KEY], arrays[ACTION_KEY], arrays[REWARD_KEY], ends,
                     terminal, images)

    def _read_aloha(self) -> None:
        layout = self.aloha
        joint = self._lowdim(layout.joint_key, 2)
        action = self._lowdim(layout.action_key, 2)
        cameras = self._aloha_cameras()
        images = {cam: self._image_stream(f"{layout.image_group}/{name}")
                  for cam, name in (cameras or {}).items()}
        reward = self._lowdim(layout.reward_key, 1) if self.has(layout.reward_key) else None
        if joint is None or action is None or cameras is None or \
                any(s is None for s in images.values()):
            return
        fields = {layout.joint_key: joint, layout.action_key: action,
                  **{s.key: s for s in images.values()}}
        if reward is not None:
            fields[layout.reward_key] = reward
        length = self._common_length(fields)
        if length is None:
            return
        success = self._aloha_success()
        if success is None and self.report.errors:
            return
        if reward is None:
            reward = np.zeros(length, dtype=np.float32)
            reward[-1] = layout.success_reward if success else 0.0
        ends = np.array([length], dtype=np.int64)
        self._finish(joint, action, reward, ends, np.array([True]), images)

    def _aloha_cameras(self) -> dict[str, str] | None:
        group = self.aloha.image_group
        if not self.has(group):
            self.error(f"missing key /{group}")
            return None
        try:
            return self.aloha.camera_names(self.h5[group].keys())
        except (DatasetReadError, *H5_ERRORS) as error:
            self.error(str(error))
            return None

    def _aloha_success(self) -> bool | None:
        """The episode's outcome: its label, its attribute, or ``assume_success``; None (and
        ``report.unlabelled``) when nothing says."""
        layout = self.aloha
        stem = self.report.path.stem
        if stem in layout.labels:
            return layout.labels[stem]
        if layout.success_attr in self.h5.attrs:
            return self._flag_attr(layout.success_attr, False)
        if layout.assume_success:
            return True
        self.report.unlabelled = True
        self.report.warnings.append(
            f"{self.where}: NO SUCCESS LABEL: the episode would be scored a failure; "
            "training refuses it until labelled")
        return None

    # ---- pieces --------------------------------------------------------------------------

    def _dataset(self, key: str) -> h5py.Dataset | None:
        if not self.has(key):
            self.error(f"missing key /{key}")
            return None
        try:
            node = self.h5[key]
        except H5_ERRORS as error:
            self.error(f"/{key} cannot be opened: {self._link_problem(key, error)}")
            return None
        if not isinstance(node, h5py.Dataset):
            self.error(f"/{key} is a group, expected a dataset")
            return None
        return node

    def _values(self, dataset: h5py.Dataset) -> np.ndarray | None:
        """All of ``dataset`` in RAM, or None (and an error) when it cannot be read."""
        try:
            return dataset[()]
        except H5_ERRORS as error:
            self.error(f"{dataset.name} cannot be read ({_reason(error)})")
            return None

    def _link_problem(self, key: str, error: Exception) -> str:
        """Why ``key`` cannot be opened: a link that leads nowhere, or the damage h5py met."""
        try:
            link = self.h5.get(key, getlink=True)
        except H5_ERRORS:
            link = None
        if isinstance(link, h5py.ExternalLink):
            return (f"it is an external link to {link.path} in {link.filename}, which cannot "
                    f"be opened ({_reason(error)})")
        if isinstance(link, h5py.SoftLink):
            return f"it is a soft link to {link.path}, which does not exist"
        return f"the file is damaged ({_reason(error)})"

    def _lowdim(self, key: str, ndim: int) -> np.ndarray | None:
        """A numeric (N,D) array (ndim 2) or (N,) array (ndim 1; (N,1) is accepted)."""
        dataset = self._dataset(key)
        if dataset is None:
            return None
        if dataset.dtype.kind not in "biuf":
            self.error(f"/{key} has dtype {dataset.dtype}, expected a numeric type")
            return None
        shape = dataset.shape
        if ndim == 1 and len(shape) == 2 and shape[1] == 1:
            shape = shape[:1]
        if len(shape) != ndim:
            wanted = "(N,)" if ndim == 1 else "(N,D)"
            self.error(f"/{key} has shape {dataset.shape}, expected {wanted}")
            return None
        if ndim == 2 and shape[1] == 0:
            self.error(f"/{key} has shape {dataset.shape}: no values per step, "
                       "expected (N,D) with D >= 1")
            return None
        values = self._values(dataset)
        if values is None:
            return None
        values = values.reshape(shape)
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values)
            if bad.any():
                step = int(np.argwhere(bad)[0][0])
                self.error(
                    f"/{key} contains NaN or inf ({int(bad.sum())} values, first at step {step})"
                )
                return None
        return values

    def _image_stream(self, key: str) -> ImageStream | None:
        dataset = self._dataset(key)
        if dataset is None:
            return None
        shape = dataset.shape
        if dataset.dtype != np.uint8 or len(shape) != 4 or 3 not in (shape[1], shape[3]):
            self.error(
                f"/{key} must be uint8 (N,H,W,3) or (N,3,H,W) RGB, got {shape} {dataset.dtype}"
            )
            return None
        layout = "HWC" if shape[3] == 3 else "CHW"
        stream = ImageStream(self.report.path, key, int(shape[0]), tuple(shape[1:]), layout)
        if self.images_in_memory:
            available = _available_ram()
            if dataset.nbytes > 0.8 * available:
                self.error(
                    f"/{key} needs {dataset.nbytes / 2**20:.0f} MiB to hold in RAM, only "
                    f"{available / 2**20:.0f} MiB are available: read it lazily instead"
                )
                return None
            stream.array = self._values(dataset)
            return stream if stream.array is not None else None
        try:
            stream.offsets = frame_offsets(dataset)
            if stream.offsets is not None and not _memmap_matches(dataset, stream.offsets):
                stream.offsets = None
        except H5_ERRORS as error:
            self.error(f"/{key} cannot be read ({_reason(error)})")
            return None
        return stream

    def _common_length(self, fields: dict) -> int | None:
        lengths = {
            key: (value.num_frames if isinstance(value, ImageStream) else value.shape[0])
            for key, value in fields.items()
        }
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"/{key}: {n}" for key, n in lengths.items())
            self.error(f"mismatched lengths ({shown})")
            return None
        length = next(iter(lengths.values()))
        if length == 0:
            self.error("empty episode: the datasets hold 0 steps")
            return None
        return int(length)

    def _flags(self, values: np.ndarray, key: str) -> np.ndarray | None:
        if not np.all((values == 0) | (values == 1)):
            self.error(f"/{key} must hold only 0/1 or false/true")
            return None
        return values.astype(bool)

    def _episode_ends(self, length: int) -> np.ndarray | None:
        dataset = self._dataset(EPISODE_ENDS_KEY)
        if dataset is None:
            return None
        if dataset.dtype.kind not in "iu" or dataset.ndim != 1 or dataset.shape[0] == 0:
            self.error(
                f"/{EPISODE_ENDS_KEY} must be a non-empty (E,) integer array, "
                f"got {dataset.shape} {dataset.dtype}"
            )
            return None
        ends = self._values(dataset)
        if ends is None:
            return None
        ends = ends.astype(np.int64)
        steps = np.diff(np.concatenate([[0], ends]))
        if np.any(steps <= 0):
            episode = int(np.flatnonzero(steps <= 0)[0])
            self.error(
                f"/{EPISODE_ENDS_KEY} must be strictly increasing and positive: "
                f"episode {episode} is empty (ends {ends[max(0, episode - 1):episode + 1]})"
            )
            return None
        if ends[-1] != length:
            self.error(
                f"/{EPISODE_ENDS_KEY} ends at {int(ends[-1])}, the data holds {length} steps"
            )
            return None
        return ends

    def _boundaries_from_flags(
        self, terminals: np.ndarray, length: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Seed layout: an episode ends after each terminal (or timeout) step."""
        timeouts = np.zeros(length, dtype=bool)
        if self.has(TIMEOUT_KEY):
            values = self._lowdim(TIMEOUT_KEY, 1)
            if values is not None and values.shape[0] == length:
                timeouts = self._flags(values, TIMEOUT_KEY)
                if timeouts is None:
                    timeouts = np.zeros(length, dtype=bool)
            elif values is not None:
                self.error(f"/{TIMEOUT_KEY} has {values.shape[0]} steps, the data holds {length}")
        ends = np.flatnonzero(terminals | timeouts) + 1
        if ends.size == 0 or ends[-1] != length:
            ends = np.append(ends, length)
            if not terminals[-1]:
                self.report.warnings.append(
                    f"{self.where}: the last {length - (ends[-2] if ends.size > 1 else 0)} "
                    f"steps end without a terminal: read as a timed-out episode"
                )
        return ends.astype(np.int64), terminals[ends - 1]

    def _finish(self, joint, action, reward, ends, terminal, images) -> None:
        if self.report.errors:
            return
        names, rate = self._attrs(joint.shape[1])
        lengths = np.diff(np.concatenate([[0], ends]))
        short = np.flatnonzero((lengths == 1) & ~terminal)
        if short.size:
            self.report.warnings.append(
                f"{self.where}: {short.size} episode(s) of one non-terminal step give no "
                f"transition (first: episode {int(short[0])})"
            )
        unseen = np.flatnonzero(~terminal & (reward.reshape(-1)[ends - 1] != 0))
        if unseen.size:
            self.report.warnings.append(
                f"{self.where}: {unseen.size} non-terminal episode(s) end with a reward on "
                "their last step, which has no next state: the agent never sees it (first: "
                f"episode {int(unseen[0])})"
            )
        self.report.source = EpisodeSource(
            name=self.where,
            layout=self.report.layout,
            joint=joint.astype(np.float32),
            action=action.astype(np.float32),
            reward=reward.astype(np.float32).reshape(-1),
            episode_ends=ends.astype(np.int64),
            episode_terminal=np.asarray(terminal, dtype=bool),
            images=images,
            joint_names=names,
            rate_hz=rate,
            file_size=self.report.path.stat().st_size,
        )

    def _attrs(self, joint_dim: int) -> tuple[list[str] | None, float | None]:
        """Joint names and rate from the file's attributes; for ALOHA files, where the
        recorders write neither, the layout's (by default ALOHA's names for 14 joints, 50 Hz)."""
        names, origin = self._joint_names_attr(), "joint_names"
        rate = self.h5.attrs.get("rate_hz")
        if self.report.layout == "aloha":
            if not names and self.aloha.joint_names is not None:
                names, origin = list(self.aloha.joint_names), ALOHA_JOINT_NAMES_OPTION
            names = names or (
                list(ALOHA_JOINT_NAMES) if joint_dim == len(ALOHA_JOINT_NAMES) else None)
            rate = self.aloha.rate_hz if rate is None else rate
        if names is not None and len(names) != joint_dim:
            self.error(f"{origin} has {len(names)} names, joints have {joint_dim}")
            names = None
        if rate is not None and not _is_positive_number(rate):
            self.error(f"attribute rate_hz must be a positive number, got {rate!r}")
            rate = None
        return names, float(rate) if rate is not None else None

    def _joint_names_attr(self) -> list[str] | None:
        """The joint_names attribute: a JSON list of strings (or an HDF5 string array)."""
        names = self.h5.attrs.get("joint_names")
        if names is None:
            return None
        if isinstance(names, bytes | str):
            try:
                names = json.loads(names)
            except json.JSONDecodeError:
                names = None
        elif isinstance(names, np.ndarray) and names.ndim == 1:
            names = [n.decode() if isinstance(n, bytes) else n for n in names.tolist()]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.error("attribute joint_names is not a list of strings")
            return None
        return names

    def _flag_attr(self, name: str, default: bool) -> bool | None:
        """A true/false file attribute (``default`` when absent); None and an error when it
        is something else."""
        value = self.h5.attrs.get(name, default)
        if isinstance(value, bool | np.bool_) or (
            np.ndim(value) == 0 and isinstance(value, int | np.integer) and value in (0, 1)
        ):
            return bool(value)
        self.error(f"attribute {name} must be true or false, got {value!r}")
        return None


def _is_positive_number(value) -> bool:
    """Whether ``value`` is one finite real number > 0 (not a string, bool or array)."""
    if isinstance(value, bool | np.bool_) or np.ndim(value) != 0:
        return False
    if not isinstance(value, int | float | np.integer | np.floating):
        return False
    return bool(np.isfinite(value) and value > 0)


def _reason(error: Exception) -> str:
    """HDF5's reason in an h5py error message: "Unable to open object (reason)" -> reason."""
    text = str(error).strip("'\"")
    inner = re.search(r"\(([^()]*)\)$", text)
    return inner.group(1) if inner else text


def compatibility_problems(source: EpisodeSource, others: Iterable[EpisodeSource]) -> list[str]:
    """Why ``source`` cannot be trained together with ``others`` (empty when it can)."""
    problems = []
    for other in others:
        if source.joint.shape[1] != other.joint.shape[1]:
            problems.append(f"{source.name}: {source.joint.shape[1]} joints, "
                            f"{other.name} has {other.joint.shape[1]}")
        if source.action.shape[1] != other.action.shape[1]:
            problems.append(f"{source.name}: action dimension {source.action.shape[1]}, "
                            f"{other.name} has {other.action.shape[1]}")
        if source.joint_names and other.joint_names and source.joint_names != other.joint_names:
            problems.append(f"{source.name}: joint_names {source.joint_names} differ from "
                            f"{other.joint_names} in {other.name}")
        if source.rate_hz and other.rate_hz and not np.isclose(source.rate_hz, other.rate_hz):
            problems.append(f"{source.name}: rate_hz {source.rate_hz} differs from "
                            f"{other.rate_hz} in {other.name}")
        if problems:
            break
    return problems


def _memmap_matches(dataset: h5py.Dataset, offsets: np.ndarray) -> bool:
    """Check the first and last frame read through the byte offsets against h5py."""
    frame_bytes = int(np.prod(dataset.shape[1:]))
    mapped = np.memmap(dataset.file.filename, dtype=np.uint8, mode="r")
    if int(offsets.max()) + frame_bytes > mapped.shape[0]:
        return False
    for index in {0, dataset.shape[0] - 1}:
        raw = mapped[offsets[index]:offsets[index] + frame_bytes]
        if not np.array_equal(raw, dataset[index].reshape(-1)):
            return False
    return True


def _available_ram() -> int:
    """Bytes of RAM the kernel can still give without swapping (MemAvailable)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _structure(h5: h5py.File) -> list[str]:
    """One line per dataset ("/key shape dtype [storage]"), and one per key that cannot be
    opened (a damaged object header, a dangling link), walking link by link so that one
    damaged object does not hide the rest."""
    lines: list[str] = []
    seen: set[int] = set()

    def walk(group: h5py.Group, prefix: str) -> None:
        try:
            names = list(group)
        except H5_ERRORS as error:
            lines.append(f"/{prefix} cannot be listed ({_reason(error)})")
            return
        for name in names:
            key = f"{prefix}{name}"
            try:
                node = group[name]
            except H5_ERRORS as error:
                lines.append(f"/{key} cannot be opened ({_reason(error)})")
                continue
            if isinstance(node, h5py.Dataset):
                storage = node.compression or ("chunked" if node.chunks else "contiguous")
                lines.append(f"/{key} {node.shape} {node.dtype} [{storage}]")
            elif isinstance(node, h5py.Group) and hash(node.id) not in seen:  # no cycles
                seen.add(hash(node.id))
                walk(node, f"{key}/")

    walk(h5, "")
    return lines


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def in_memory_source(
    name: str,
    episodes: Sequence,
    *,
    joint_names: Sequence[str] | None = None,
    rate_hz: float | None = None,
) -> EpisodeSource:
    """An EpisodeSource over ``hdf5_layout.Episode`` objects held in RAM."""
    if not episodes:
        raise DatasetReadError(f"{name}: no episodes given")
    for index, episode in enumerate(episodes):
        try:
            episode.validate(f"{name} episode {index}")
        except ValueError as error:
            raise DatasetReadError(str(error)) from error
    shapes = {e.left_image.shape[1:] for e in episodes} | {
        e.right_image.shape[1:] for e in episodes} | {e.global_image.shape[1:] for e in episodes}
    if len(shapes) != 1:
        raise DatasetReadError(f"{name}: episodes differ in image size {sorted(shapes)}")
    images = {}
    for cam in CAMERA_ORDER:
        frames = np.concatenate([getattr(e, f"{cam}_image") for e in episodes])
        images[cam] = ImageStream(None, IMAGE_KEYS[cam], frames.shape[0], frames.shape[1:],
                                  "HWC", array=frames)
    return EpisodeSource(
        name=name,
        layout="memory",
        joint=np.concatenate([e.joint for e in episodes]).astype(np.float32),
        action=np.concatenate([e.action for e in episodes]).astype(np.float32),
        reward=np.concatenate([np.reshape(e.reward, -1) for e in episodes]).astype(np.float32),
        episode_ends=np.cumsum([len(e) for e in episodes]).astype(np.int64),
        episode_terminal=np.array([bool(e.terminal) for e in episodes]),
        images=images,
        joint_names=list(joint_names) if joint_names is not None else None,
        rate_hz=float(rate_hz) if rate_hz is not None else None,
    )
