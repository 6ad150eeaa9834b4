"""Read ros2 bags (sqlite3 / mcap, folder or single file) with rosbags: messages -> arrays.

No rclpy. Memory stays bounded: ``scan_bag`` reads stamps of every configured topic and
the (small) joint, command and reward values, and decodes camera frames (already resized
to the dataset's image size) into a ``FrameCache`` only while they fit its budget;
``read_camera_frames`` takes the frames the time grid uses from that cache, or else reads
the bag a second time decoding only those. Images go through the same
``lapo_ros.common.images`` path as the robot's policy node.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.reader import DirectoryReader

from lapo_ros.bags.config import BagConversionConfig
from lapo_ros.common.images import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    resize_rgb,
)
from lapo_ros.common.joints import JointNameError, joint_index

IMAGE_MESSAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_STATE_MESSAGE_TYPE = "sensor_msgs/msg/JointState"
COMMAND_MESSAGE_TYPES = (
    "std_msgs/msg/Float64MultiArray",
    "trajectory_msgs/msg/JointTrajectory",
    "sensor_msgs/msg/JointState",
)
REWARD_MESSAGE_TYPES = ("std_msgs/msg/Float64", "std_msgs/msg/Float32")
STORAGE_SUFFIXES = (".db3", ".mcap")

Progress = Callable[[int], None]


class BagReadError(ValueError):
    """A bag that cannot be converted; the message names the bag and, where known, the topic."""


def bag_name(path: str | os.PathLike) -> str:
    """The name labels refer to: a bag folder's name, or a bag file's name without suffix."""
    path = Path(path)
    return path.stem if path.suffix in STORAGE_SUFFIXES else path.name


def resolve_bag(path: str | os.PathLike) -> Path:
    """The path rosbags opens: a folder with metadata.yaml, a .db3/.mcap file, or a folder
    holding exactly one such file (metadata.yaml lost)."""
    path = Path(path)
    if not path.exists():
        raise BagReadError(f"{path}: no such bag")
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise BagReadError(f"{path}: not a bag (expected a folder, .db3 or .mcap file)")
        return path
    if (path / "metadata.yaml").exists():
        return path
    files = [p for p in sorted(path.iterdir()) if p.suffix in STORAGE_SUFFIXES]
    if len(files) != 1:
        raise BagReadError(
            f"{path}: no metadata.yaml and {len(files)} .db3/.mcap files; not a ros2 bag"
        )
    return files[0]


@contextmanager
def open_bag(path: str | os.PathLike) -> Iterator[Reader]:
    """An open rosbags Reader; failures to open (corrupt, truncated) become BagReadError."""
    resolved = resolve_bag(path)
    try:
        reader = Reader(resolved)
        reader.open()
    except Exception as error:  # rosbags, apsw and mcap raise many kinds
        raise BagReadError(f"{path}: cannot open bag ({type(error).__name__}: {error})") from None
    try:
        yield reader
    finally:
        reader.close()


def _storage_connections(reader: Reader, topics: Collection[str]) -> list:
    """The connections of ``topics`` as the storage files record them.

    A bag folder's reader lists metadata.yaml's connections and yields only the messages
    whose storage connection equals one of those, QoS profiles included; a bag whose
    metadata.yaml QoS differs from its storage file's (rosbag2 writes such bags) would read
    as empty. The storage files' own connections always match their messages."""
    storage = reader.storage
    files = storage.storages if isinstance(storage, DirectoryReader) else [storage]
    return [c for file in files for c in file.connections if c.topic in topics]


def _messages(reader: Reader, bag: Path, topics: Collection[str]) -> Iterator[tuple]:
    """(connection, receive time, raw) of every message on ``topics``, with storage errors
    (truncated, corrupt) named by bag."""
    iterator = reader.messages(connections=_storage_connections(reader, topics))
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise BagReadError(
                f"{bag}: bag is corrupt or truncated ({type(error).__name__}: {error})"
            ) from None
        yield item


@dataclass
class Stream:
    """Samples of one topic: stamps (ns) and the receive time that identifies a message."""

    topic: str
    msgtype: str
    stamps_ns: np.ndarray  # (N,) int64, header stamp (receive time when zero / configured)
    receive_ns: np.ndarray  # (N,) int64
    values: np.ndarray | None = None  # (N,D) float64 for joints/commands, (N,) for reward


@dataclass
class BagScan:
    """What the first pass learns about one bag."""

    bag: Path
    cameras: dict[str, Stream]
    joint_states: Stream
    command: Stream | None
    reward: Stream | None
    frames: dict[str, list[Future]] | None = None  # topic -> decoded frame per sample


class FrameCache:
    """Camera frames decoded on ``pool`` during the scan while they fit ``budget_bytes``.

    Once the budget is exceeded the cache empties itself and the converter reads the bag a
    second time instead. A frame that fails to decode raises only if the grid uses it.
    """

    def __init__(self, pool: ThreadPoolExecutor, budget_bytes: int,
                 size: tuple[int, int], workers: int) -> None:
        self.pool = pool
        self.size = size
        self.frames: dict[str, list[Future]] = {}
        self.active = budget_bytes > 0
        self._max_frames = budget_bytes // (size[0] * size[1] * 3)
        self._count = 0
        self._pending: deque[Future] = deque()
        self._max_pending = 2 * workers

    def add(self, topic: str, msg, msgtype: str, source: str) -> None:
        if not self.active:
            return
        if self._count >= self._max_frames:
            self.drop()
            return
        future = self.pool.submit(_decode, msg, msgtype, source, self.size)
        self.frames.setdefault(topic, []).append(future)
        self._count += 1
        self._pending.append(future)
        while len(self._pending) > self._max_pending:
            self._pending.popleft().exception()  # wait; an error is raised where it is used

    def drop(self) -> None:
        self.active = False
        for futures in self.frames.values():
            for future in futures:
                future.cancel()
        self.frames.clear()
        self._pending.clear()


class _Collector:
    """Accumulates stamps and values of one topic during the scan."""

    def __init__(self, topic: str, msgtype: str) -> None:
        self.topic, self.msgtype = topic, msgtype
        self.stamps: list[int] = []
        self.receive: list[int] = []
        self.values: list[np.ndarray | float] = []

    def stream(self, with_values: bool) -> Stream:
        values = None
        if with_values:
            values = np.asarray(self.values, dtype=np.float64)  # rows of one length
        return Stream(self.topic, self.msgtype, np.asarray(self.stamps, dtype=np.int64),
                      np.asarray(self.receive, dtype=np.int64), values)


def _deserialize(typestore, raw: bytes, msgtype: str, where: str):
    """The ``msgtype`` message in ``raw`` (CDR); a payload that is not one (a recorder bug,
    a wrong type in the bag) becomes a BagReadError naming ``where`` (bag and topic)."""
    try:
        return typestore.deserialize_cdr(raw, msgtype)
    except Exception as error:  # SerdeError, and whatever a malformed length leads to
        raise BagReadError(
            f"{where}: cannot deserialize {msgtype} ({type(error).__name__}: {error})"
        ) from None


def message_stamp(msg, receive_ns: int, use_header: bool) -> int:
    """Header stamp in ns, or the receive time when the stamp is zero, absent or not used."""
    header = getattr(msg, "header", None)
    if use_header and header is not None:
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        if stamp != 0:
            return int(stamp)
    return int(receive_ns)


class _NameMatcher:
    """Reorders by-name joint values into a fixed joint order (``joint_matching``), caching
    the index per name list."""

    def __init__(self, joint_names: Sequence[str], where: str) -> None:
        self.joint_names = list(joint_names)
        self.where = where
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def __call__(self, names: Sequence[str], values: Sequence[float], field: str) -> np.ndarray:
        """``values`` (the message's ``field``, one per name) in the fixed joint order."""
        key = tuple(names)
        if len(values) != len(key):
            raise BagReadError(
                f"{self.where}: {len(key)} joint names but {len(values)} {field} values"
            )
        index = self._cache.get(key)
        if index is None:
            try:
                index = joint_index(key, self.joint_names, self.where)
            except JointNameError as error:
                raise BagReadError(str(error)) from None
            self._cache[key] = index
        return np.asarray(values, dtype=np.float64)[index]


def _command_values(msg, msgtype: str, matcher: _NameMatcher,
                    array_names: Sequence[str]) -> np.ndarray:
    if msgtype == "std_msgs/msg/Float64MultiArray":
        if len(msg.data) != len(array_names):
            raise BagReadError(
                f"{matcher.where}: Float64MultiArray has {len(msg.data)} values, expected "
                f"{len(array_names)} (command_joint_names, else action_joint_names, else "
                "joint_names)"
            )
        return matcher(array_names, msg.data, "data")
    if msgtype == "sensor_msgs/msg/JointState":
        return matcher(msg.name, msg.position, "position")
    if not msg.points:
        raise BagReadError(f"{matcher.where}: JointTrajectory without points")
    return matcher(msg.joint_names, msg.points[0].positions, "positions")


def _check_topic(bag: Path, topics: dict, topic: str, role: str, types: Sequence[str]) -> str:
    if topic not in topics:
        raise BagReadError(
            f"{bag}: {role} topic {topic} is not in the bag; topics: {sorted(topics) or 'none'}"
        )
    msgtype = topics[topic].msgtype
    if msgtype is None:
        raise BagReadError(f"{bag}: {role} topic {topic} holds messages of several types")
    if msgtype not in types:
        raise BagReadError(
            f"{bag}: {role} topic {topic} has type {msgtype}; expected one of {list(types)}"
        )
    if topics[topic].msgcount == 0:
        raise BagReadError(f"{bag}: {role} topic {topic} has no messages")
    return msgtype


def first_joint_names(path: str | os.PathLike, topic: str, typestore) -> list[str]:
    """Joint names of the first message on ``topic`` (the default joint order)."""
    with open_bag(path) as reader:
        bag = Path(path)
        _check_topic(bag, reader.topics, topic, "joint_states", [JOINT_STATE_MESSAGE_TYPE])
        for connection, _, raw in _messages(reader, bag, [topic]):
            names = list(_deserialize(typestore, raw, connection.msgtype, f"{bag}: {topic}").name)
            if not names:
                raise BagReadError(f"{bag}: {topic}: the first message names no joints; "
                                   "set joint_names in the config")
            return names
    raise BagReadError(f"{path}: joint_states topic {topic} has no messages")


def configured_topics(
    bag: Path, reader: Reader, config: BagConversionConfig
) -> dict[str, tuple[str, str]]:
    """Topic -> (role, msgtype) of every configured topic, checked against the open bag."""
    topics = reader.topics
    wanted = [(topic, f"{camera} camera", IMAGE_MESSAGE_TYPES)
              for camera, topic in config.topics.cameras().items()]
    wanted.append((config.topics.joint_states, "joint_states", [JOINT_STATE_MESSAGE_TYPE]))
    if config.topics.command:
        wanted.append((config.topics.command, "command", COMMAND_MESSAGE_TYPES))
    if config.reward.source == "topic":
        wanted.append((config.reward.topic, "reward", REWARD_MESSAGE_TYPES))
    result: dict[str, tuple[str, str]] = {}
    for topic, role, types in wanted:
        if topic in result:
            raise BagReadError(
                f"{bag}: topic {topic} configured as both {result[topic][0]} and {role}"
            )
        result[topic] = (role, _check_topic(bag, topics, topic, role, types))
    return result


def check_bag(path: str | os.PathLike, config: BagConversionConfig) -> int:
    """Open ``path`` and check its configured topics; return the messages the two passes
    will read (for a progress bar)."""
    with open_bag(path) as reader:
        if reader.message_count == 0:
            raise BagReadError(f"{path}: bag is empty")
        roles = configured_topics(Path(path), reader, config)
        counts = reader.topics
        total = sum(counts[t].msgcount for t in roles)
        return total + sum(counts[t].msgcount for t in config.topics.cameras().values())


def scan_bag(
    path: str | os.PathLike,
    config: BagConversionConfig,
    joint_names: Sequence[str],
    typestore,
    progress: Progress | None = None,
    cache: FrameCache | None = None,
) -> BagScan:
    """First pass: stamps of every configured topic, joint/command/reward values, and
    camera frames into ``cache`` while they fit."""
    bag = Path(path)
    use_header = config.stamps == "header"
    with open_bag(bag) as reader:
        if reader.message_count == 0:
            raise BagReadError(f"{bag}: bag is empty")
        roles = configured_topics(bag, reader, config)
        collectors = {topic: _Collector(topic, msgtype) for topic, (_, msgtype) in roles.items()}
        roles = {topic: role for topic, (role, _) in roles.items()}

        joints = _NameMatcher(joint_names, f"{bag}: {config.topics.joint_states}")
        action_names = config.action_joint_names or list(joint_names)
        commands = _NameMatcher(action_names, f"{bag}: {config.topics.command}")
        array_names = config.command_joint_names or action_names
        count = 0
        for count, (connection, receive_ns, raw) in enumerate(
            _messages(reader, bag, collectors), start=1
        ):
            topic, msgtype = connection.topic, connection.msgtype
            collector = collectors[topic]
            if msgtype != collector.msgtype:
                raise BagReadError(f"{bag}: topic {topic} mixes types {msgtype}, "
                                   f"{collector.msgtype}")
            msg = _deserialize(typestore, raw, msgtype, f"{bag}: {topic}")
            role = roles[topic]
            if role == "joint_states":
                collector.values.append(joints(msg.name, msg.position, "position"))
            elif role == "command":
                collector.values.append(_command_values(msg, msgtype, commands, array_names))
            elif role == "reward":
                collector.values.append(float(msg.data))
            else:
                if msgtype == IMAGE_MESSAGE_TYPES[0] and msg.encoding not in SUPPORTED_ENCODINGS:
                    raise BagReadError(
                        f"{bag}: {topic}: unsupported image encoding {msg.encoding!r}; "
                        f"supported: {', '.join(SUPPORTED_ENCODINGS)}"
                    )
                if cache is not None:
                    cache.add(topic, msg, msgtype, f"{bag}: {topic}")
            collector.stamps.append(message_stamp(msg, receive_ns, use_header))
            collector.receive.append(int(receive_ns))
            if progress is not None and count % 64 == 0:
                progress(64)
        if progress is not None:
            progress(count % 64)

    for topic, collector in collectors.items():
        if not collector.stamps:
            raise BagReadError(f"{bag}: {roles[topic]} topic {topic} has no messages")
    streams = {t: c.stream(with_values=roles[t] in ("joint_states", "command", "reward"))
               for t, c in collectors.items()}
    _check_values(bag, streams.get(config.topics.command))
    _check_values(bag, streams[config.topics.joint_states])
    return BagScan(
        bag=bag,
        cameras={cam: streams[topic] for cam, topic in config.topics.cameras().items()},
        joint_states=streams[config.topics.joint_states],
        command=streams.get(config.topics.command) if config.topics.command else None,
        reward=streams.get(config.reward.topic) if config.reward.source == "topic" else None,
        frames=cache.frames if cache is not None and cache.active else None,
    )


def _check_values(bag: Path, stream: Stream | None) -> None:
    """Reject NaN or inf joint/command values, naming the topic and the first bad stamp."""
    if stream is None:
        return
    bad = ~np.all(np.isfinite(stream.values), axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BagReadError(
            f"{bag}: {stream.topic}: NaN or inf in {int(bad.sum())} message(s), first at "
            f"{stream.stamps_ns[first] / 1e9:.3f} s"
        )


def _decode(msg, msgtype: str, source: str, size: tuple[int, int]) -> np.ndarray:
    try:
        if msgtype == IMAGE_MESSAGE_TYPES[0]:
            rgb = image_msg_to_rgb(msg, source=source)
        else:
            rgb = compressed_msg_to_rgb(msg, source=source)
        return resize_rgb(rgb, size)
    except cv2.error as error:
        raise ImageConversionError(f"{source}: OpenCV cannot convert the image ({error})") from None


def read_camera_frames(
    scan: BagScan,
    rows: dict[str, np.ndarray],
    config: BagConversionConfig,
    typestore,
    pool: ThreadPoolExecutor,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """The camera frames ``rows[camera]`` (sample index per output row) at
    ``config.image_size``: camera -> (K,H,W,3) uint8 RGB, from the scan's frame cache or
    else from a second pass over the bag."""
    height, width = config.image_size
    outputs = {camera: np.empty((len(rows[camera]), height, width, 3), dtype=np.uint8)
               for camera in scan.cameras}
    try:
        if scan.frames is not None:
            for camera, stream in scan.cameras.items():
                frames = scan.frames[stream.topic]
                for row, index in enumerate(rows[camera]):
                    outputs[camera][row] = frames[index].result()
            if progress is not None:
                progress(sum(len(s.stamps_ns) for s in scan.cameras.values()))
        else:
            _second_pass(scan, rows, outputs, config, typestore, pool, progress)
    except ImageConversionError as error:
        raise BagReadError(str(error)) from None
    return outputs


def _second_pass(
    scan: BagScan,
    rows: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
    config: BagConversionConfig,
    typestore,
    pool: ThreadPoolExecutor,
    progress: Progress | None,
) -> None:
    """Read the camera topics again, decoding each used message once on ``pool``.

    A message is identified by (receive time, stamp) as seen in the scan."""
    bag = scan.bag
    use_header = config.stamps == "header"
    wanted: dict[str, dict[tuple[int, int], list[int]]] = {}
    topic_camera: dict[str, str] = {}
    for camera, stream in scan.cameras.items():
        keys: dict[tuple[int, int], list[int]] = {}
        for row, index in enumerate(rows[camera]):
            keys.setdefault((int(stream.receive_ns[index]), int(stream.stamps_ns[index])),
                            []).append(row)
        wanted[stream.topic] = keys
        topic_camera[stream.topic] = camera

    def decode_into(camera: str, msg, msgtype: str, targets: list[int], source: str) -> None:
        outputs[camera][targets] = _decode(msg, msgtype, source, config.image_size)

    in_flight: deque[Future] = deque()
    count = 0
    with open_bag(bag) as reader:
        try:
            for count, (connection, receive_ns, raw) in enumerate(
                _messages(reader, bag, wanted), start=1
            ):
                if progress is not None and count % 64 == 0:
                    progress(64)
                topic = connection.topic
                msg = _deserialize(typestore, raw, connection.msgtype, f"{bag}: {topic}")
                key = (int(receive_ns), message_stamp(msg, receive_ns, use_header))
                targets = wanted[topic].pop(key, None)
                if targets is None:
                    continue
                in_flight.append(pool.submit(decode_into, topic_camera[topic], msg,
                                             connection.msgtype, targets, f"{bag}: {topic}"))
                while len(in_flight) > 2 * config.workers:
                    in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()
    if progress is not None:
        progress(count % 64)
    for topic, keys in wanted.items():
        if keys:
            raise BagReadError(f"{bag}: {topic}: {len(keys)} message(s) seen in the first pass "
                               "are missing in the second; is the bag being written?")
