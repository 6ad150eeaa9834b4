"""Write real ros2 bags (sqlite3 or mcap) with rosbags: demonstrations and test fixtures.

No ROS install needed. ``EpisodeBagWriter`` records one episode (three cameras,
``joint_states``, a command topic, an optional reward topic) the way ``ros2 bag record``
would; ``write_sample_bag`` writes a synthetic episode with configurable rates, sizes,
encodings, stamp jitter and gaps whose content is a known function of time:

- camera pixels: ``sample_pixel_value(camera_index, stamp_ns)`` everywhere (so a converted
  frame tells which message it came from), plus nothing else;
- joint ``j`` position at time ``t`` (seconds from the bag start): ``sample_joint_position``;
- command values: the joint positions ``command_lead_s`` ahead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
from rosbags.rosbag2 import (
    CompressionFormat,
    CompressionMode,
    StoragePlugin,
    Writer,
    WriterError,
)
from rosbags.typesys import Stores, get_typestore

from lapo_ros.common.images import CAMERA_ORDER

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
COMPRESSION_MODES = {"file": CompressionMode.FILE, "message": CompressionMode.MESSAGE}
COMMAND_KINDS = ("float64_multi_array", "joint_trajectory", "joint_state")
COMMAND_MSGTYPES = {
    "float64_multi_array": "std_msgs/msg/Float64MultiArray",
    "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "joint_state": "sensor_msgs/msg/JointState",
}
IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
COMPRESSED_MSGTYPE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE_MSGTYPE = "sensor_msgs/msg/JointState"
REWARD_MSGTYPE = "std_msgs/msg/Float64"
# Encodings the writer can produce from RGB: (channels, cv2 conversion from RGB or None)
_WRITE_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_RGB2BGR),
    "8UC3": (3, cv2.COLOR_RGB2BGR),
    "rgba8": (4, cv2.COLOR_RGB2RGBA),
    "bgra8": (4, cv2.COLOR_RGB2BGRA),
    "mono8": (1, cv2.COLOR_RGB2GRAY),
    "8UC1": (1, cv2.COLOR_RGB2GRAY),
}
DEFAULT_JOINT_NAMES = tuple(
    f"{arm}_joint{i}" for arm in ("left", "right") for i in range(1, 8)
) + ("left_gripper", "right_gripper")


class BagWriteError(ValueError):
    """A message or bag that cannot be written as asked; the message names what is wrong."""


def typestore_for(ros_distro: str):
    """The rosbags typestore of a ROS 2 distro name ('humble', 'jazzy', 'kilted', ...)."""
    try:
        return get_typestore(Stores(f"ros2_{ros_distro.lower()}"))
    except ValueError:
        known = [s.value[5:] for s in Stores if s.value.startswith("ros2_")]
        raise BagWriteError(
            f"unknown ros_distro {ros_distro!r}; known: {', '.join(known)}"
        ) from None


@dataclass
class BagTopics:
    """Topic names of one recorded episode."""

    cameras: dict[str, str] = field(
        default_factory=lambda: {cam: f"/{cam}/image_raw" for cam in CAMERA_ORDER}
    )
    joint_states: str = "/joint_states"
    command: str = "/commands"
    reward: str = "/reward"


def _split_ns(stamp_ns: int) -> tuple[int, int]:
    return int(stamp_ns) // 1_000_000_000, int(stamp_ns) % 1_000_000_000


class EpisodeBagWriter:
    """Context manager writing one episode into a new ros2 bag folder at ``path``.

    ``compression``: None, 'message' or 'file' (zstd), as ``ros2 bag record`` offers.
    ``stamp_ns`` is the header stamp; ``receive_ns`` (default: ``stamp_ns``) is the bag
    timestamp, what ``ros2 bag record`` stores as receive time. Connections are created on
    first use, so a bag holds only the topics written. The folder must not exist yet.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        storage: str = "sqlite3",
        topics: BagTopics | None = None,
        ros_distro: str = "jazzy",
        version: int = 8,
        compression: str | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise BagWriteError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if compression is not None and compression not in COMPRESSION_MODES:
            raise BagWriteError(f"compression must be None or one of {sorted(COMPRESSION_MODES)}"
                                f", got {compression!r}")
        self.path = Path(path)
        self.topics = topics or BagTopics()
        self._typestore = typestore_for(ros_distro)
        try:
            self._writer = Writer(self.path, version=version, storage_plugin=STORAGES[storage])
        except WriterError as error:
            raise BagWriteError(f"{self.path}: {error}") from None
        if compression is not None:  # zstd, as ``ros2 bag record --compression-mode``
            self._writer.set_compression(COMPRESSION_MODES[compression], CompressionFormat.ZSTD)
        self._connections: dict[tuple[str, str], object] = {}

    def __enter__(self) -> EpisodeBagWriter:
        self._writer.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self._writer.__exit__(exc_type, exc, tb)

    def message(self, msgtype: str, **fields):
        """A message object of ``msgtype`` (e.g. 'std_msgs/msg/String') from the typestore."""
        if msgtype not in self._typestore.types:
            raise BagWriteError(f"unknown message type {msgtype!r}")
        return self._typestore.types[msgtype](**fields)

    def _header(self, stamp_ns: int, frame_id: str = ""):
        sec, nanosec = _split_ns(stamp_ns)
        stamp = self.message("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)
        return self.message("std_msgs/msg/Header", stamp=stamp, frame_id=frame_id)

    def write_message(self, topic: str, msgtype: str, message, receive_ns: int) -> None:
        """Write any message built with ``message()`` (e.g. an extra topic of a demo)."""
        key = (topic, msgtype)
        if key not in self._connections:
            if any(t == topic for t, _ in self._connections):
                raise BagWriteError(f"{self.path}: topic {topic} already written with another type")
            self._connections[key] = self._writer.add_connection(
                topic, msgtype, typestore=self._typestore
            )
        raw = self._typestore.serialize_cdr(message, msgtype)
        self._writer.write(self._connections[key], int(receive_ns), raw)

    def write_image(
        self,
        camera: str,
        stamp_ns: int,
        rgb: np.ndarray,
        *,
        encoding: str = "rgb8",
        compressed: bool = False,
        compression_format: str = "jpeg",
        row_padding: int = 0,
        receive_ns: int | None = None,
    ) -> None:
        """Write an HxWx3 uint8 RGB frame of ``camera`` ('left', 'right' or 'global').

        Raw: converted to ``encoding`` with ``row_padding`` extra bytes per row (``step``).
        Compressed: ``compression_format`` 'jpeg' or 'png' (encoding then ignored).
        """
        if camera not in self.topics.cameras:
            raise BagWriteError(f"unknown camera {camera!r}; known: {list(self.topics.cameras)}")
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise BagWriteError(f"{camera}: expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
        topic = self.topics.cameras[camera]
        receive_ns = stamp_ns if receive_ns is None else receive_ns
        header = self._header(stamp_ns, frame_id=f"{camera}_camera")
        if compressed:
            message = self.message(
                COMPRESSED_MSGTYPE, header=header,
                format=f"rgb8; {compression_format} compressed bgr8",
                data=_encode_compressed(rgb, compression_format),
            )
            self.write_message(topic, COMPRESSED_MSGTYPE, message, receive_ns)
            return
        if encoding not in _WRITE_ENCODINGS:
            raise BagWriteError(
                f"{camera}: cannot write encoding {encoding!r}; known: {list(_WRITE_ENCODINGS)}"
            )
        channels, conversion = _WRITE_ENCODINGS[encoding]
        pixels = rgb if conversion is None else cv2.cvtColor(rgb, conversion)
        height, width = rgb.shape[:2]
        rows = pixels.reshape(height, width * channels)
        if row_padding:
            rows = np.pad(rows, ((0, 0), (0, row_padding)), constant_values=0xAB)
        message = self.message(
            IMAGE_MSGTYPE, header=header, height=height, width=width, encoding=encoding,
            is_bigendian=0, step=width * channels + row_padding,
            data=np.ascontiguousarray(rows).reshape(-1),
        )
        self.write_message(topic, IMAGE_MSGTYPE, message, receive_ns)

    def write_joint_state(
        self,
        stamp_ns: int,
        names: Sequence[str],
        positions: Sequence[float],
        *,
        velocities: Sequence[float] = (),
        efforts: Sequence[float] = (),
        receive_ns: int | None = None,
    ) -> None:
        """Write a sensor_msgs/JointState on the joint_states topic."""
        message = self._joint_state(stamp_ns, names, positions, velocities, efforts)
        self.write_message(self.topics.joint_states, JOINT_STATE_MSGTYPE, message,
                    stamp_ns if receive_ns is None else receive_ns)

    def _joint_state(self, stamp_ns, names, positions, velocities=(), efforts=()):
        if len(names) != len(positions):
            raise BagWriteError(f"{len(names)} joint names but {len(positions)} positions")
        return self.message(
            JOINT_STATE_MSGTYPE, header=self._header(stamp_ns), name=list(names),
            position=np.asarray(positions, dtype=np.float64),
            velocity=np.asarray(velocities, dtype=np.float64),
            effort=np.asarray(efforts, dtype=np.float64),
        )

    def write_command(
        self,
        stamp_ns: int,
        values: Sequence[float],
        *,
        kind: str = "float64_multi_array",
        names: Sequence[str] = (),
        receive_ns: int | None = None,
    ) -> None:
        """Write a joint command on the command topic.

        ``kind``: 'float64_multi_array' (no header: ``stamp_ns`` becomes the bag time),
        'joint_trajectory' (one point, ``names`` as joint_names) or 'joint_state'.
        """
        if kind not in COMMAND_KINDS:
            raise BagWriteError(f"command kind must be one of {COMMAND_KINDS}, got {kind!r}")
        values = np.asarray(values, dtype=np.float64)
        receive_ns = stamp_ns if receive_ns is None else receive_ns
        msgtype = COMMAND_MSGTYPES[kind]
        if kind == "float64_multi_array":
            layout = self.message("std_msgs/msg/MultiArrayLayout", dim=[], data_offset=0)
            message = self.message(msgtype, layout=layout, data=values)
        elif kind == "joint_state":
            message = self._joint_state(stamp_ns, names, values)
        else:
            if len(names) != len(values):
                raise BagWriteError(f"{len(names)} joint names but {len(values)} values")
            duration = self.message("builtin_interfaces/msg/Duration", sec=0, nanosec=0)
            empty = np.zeros(0, dtype=np.float64)
            point = self.message(
                "trajectory_msgs/msg/JointTrajectoryPoint", positions=values,
                velocities=empty, accelerations=empty, effort=empty, time_from_start=duration,
            )
            message = self.message(msgtype, header=self._header(stamp_ns),
                                joint_names=list(names), points=[point])
        self.write_message(self.topics.command, msgtype, message, receive_ns)

    def write_reward(self, stamp_ns: int, value: float) -> None:
        """Write a std_msgs/Float64 reward (no header: ``stamp_ns`` is the bag time)."""
        self.write_message(self.topics.reward, REWARD_MSGTYPE,
                    self.message(REWARD_MSGTYPE, data=float(value)), stamp_ns)


def _encode_compressed(rgb: np.ndarray, compression_format: str) -> np.ndarray:
    extensions = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
    if compression_format not in extensions:
        raise BagWriteError(f"compression_format must be jpeg or png, got {compression_format!r}")
    ok, encoded = cv2.imencode(extensions[compression_format], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise BagWriteError(f"OpenCV could not encode a {rgb.shape} image as {compression_format}")
    return encoded.reshape(-1)


# --------------------------------------------------------------------------- synthetic bags


@dataclass
class SampleBagSpec:
    """What ``write_sample_bag`` records. Times in seconds from ``start_ns``."""

    duration_s: float = 2.0
    camera_rate_hz: float = 10.0
    joint_rate_hz: float = 50.0
    command_rate_hz: float | None = 50.0  # None: no command topic
    command_kind: str = "float64_multi_array"
    command_lead_s: float = 0.1
    reward_rate_hz: float | None = None  # None: no reward topic; else 0 until the last message
    final_reward: float = 1.0
    image_size: tuple[int, int] = (48, 64)  # (height, width)
    encoding: str = "rgb8"
    compressed: bool = False
    compression_format: str = "png"
    row_padding: int = 0
    joint_names: tuple[str, ...] = DEFAULT_JOINT_NAMES
    joint_order_seed: int | None = None  # shuffle the joint order in the messages
    jitter_s: float = 0.0  # uniform header-stamp jitter of every message
    receive_delay_s: float = 0.0  # receive time = stamp + delay
    zero_stamps: bool = False  # header stamps 0: readers must use receive time
    camera_gaps: tuple[tuple[float, float], ...] = ()  # (start, end): no camera frames
    gaps: tuple[tuple[float, float], ...] = ()  # (start, end): no messages at all
    missing_cameras: tuple[str, ...] = ()  # cameras never written
    start_ns: int = 1_700_000_000_000_000_000
    seed: int = 0


def sample_pixel_value(camera_index: int, stamp_ns: int, start_ns: int) -> int:
    """The uniform pixel value of a synthetic frame: encodes camera and frame time (10 ms)."""
    return int((camera_index * 80 + (stamp_ns - start_ns) // 10_000_000) % 256)


def sample_joint_position(joint_index: int, t: float) -> float:
    """Synthetic joint trajectory, smooth and distinct per joint (radians)."""
    return float(0.5 * np.sin(0.7 * t + 0.3 * joint_index) + 0.05 * joint_index)


def _times(spec: SampleBagSpec, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    count = int(np.floor(spec.duration_s * rate_hz + 1e-9)) + 1
    times = np.arange(count) / rate_hz
    if spec.jitter_s:
        times = times + rng.uniform(-spec.jitter_s, spec.jitter_s, count)
    keep = np.ones(count, dtype=bool)
    for start, end in spec.gaps:
        keep &= ~((times >= start) & (times < end))
    return times[keep]


def write_sample_bag(
    path: str | os.PathLike,
    spec: SampleBagSpec | None = None,
    *,
    storage: str = "sqlite3",
    topics: BagTopics | None = None,
    compression: str | None = None,
) -> Path:
    """Write a synthetic episode described by ``spec`` to a new bag folder; return its path.

    Messages are written in receive-time order, as a recorder would.
    """
    spec = spec or SampleBagSpec()
    rng = np.random.default_rng(spec.seed)
    names = list(spec.joint_names)
    order = np.arange(len(names))
    if spec.joint_order_seed is not None:
        order = np.random.default_rng(spec.joint_order_seed).permutation(len(names))
    height, width = spec.image_size
    events: list[tuple[int, int, str, object]] = []  # (receive_ns, tie, kind, payload)

    def stamp(t: float) -> int:
        return spec.start_ns + int(round(t * 1e9))

    def add(kind: str, t: float, payload: object) -> None:
        receive = stamp(t + spec.receive_delay_s)
        events.append((receive, len(events), kind, (stamp(t), payload)))

    for index, camera in enumerate(CAMERA_ORDER):
        if camera in spec.missing_cameras:
            continue
        for t in _times(spec, spec.camera_rate_hz, rng):
            if any(start <= t < end for start, end in spec.camera_gaps):
                continue
            add("image", t, (camera, index))
    for t in _times(spec, spec.joint_rate_hz, rng):
        add("joint", t, [sample_joint_position(j, t) for j in order])
    if spec.command_rate_hz:
        for t in _times(spec, spec.command_rate_hz, rng):
            add("command", t, [sample_joint_position(j, t + spec.command_lead_s)
                               for j in range(len(names))])
    if spec.reward_rate_hz:
        reward_times = _times(spec, spec.reward_rate_hz, rng)
        for i, t in enumerate(reward_times):
            add("reward", t, spec.final_reward if i == len(reward_times) - 1 else 0.0)
    events.sort(key=lambda e: (e[0], e[1]))

    with EpisodeBagWriter(path, storage=storage, topics=topics,
                          compression=compression) as writer:
        for receive, _, kind, (stamp_ns, payload) in events:
            header_ns = 0 if spec.zero_stamps else stamp_ns
            if kind == "image":
                camera, index = payload
                value = sample_pixel_value(index, stamp_ns, spec.start_ns)
                rgb = np.full((height, width, 3), value, dtype=np.uint8)
                writer.write_image(
                    camera, header_ns, rgb, encoding=spec.encoding, compressed=spec.compressed,
                    compression_format=spec.compression_format, row_padding=spec.row_padding,
                    receive_ns=receive,
                )
            elif kind == "joint":
                writer.write_joint_state(header_ns, [names[j] for j in order], payload,
                                         receive_ns=receive)
            elif kind == "command":
                writer.write_command(header_ns, payload, kind=spec.command_kind, names=names,
                                     receive_ns=receive)
            else:
                writer.write_reward(receive, payload)
    return Path(path)
