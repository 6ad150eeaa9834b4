"""Real ros2 bags written with rosbags: messages read back by rosbags decode as written."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from lapo_ros.bags.writing import (
    BagTopics,
    BagWriteError,
    EpisodeBagWriter,
    SampleBagSpec,
    sample_joint_position,
    sample_pixel_value,
    typestore_for,
    write_sample_bag,
)
from lapo_ros.common.images import compressed_msg_to_rgb, image_msg_to_rgb

TYPESTORE = typestore_for("humble")


def read_all(path):
    """(topic, msgtype, receive_ns, message) of every message, in bag order."""
    with Reader(path) as reader:
        return [
            (c.topic, c.msgtype, t, TYPESTORE.deserialize_cdr(raw, c.msgtype))
            for c, t, raw in reader.messages()
        ]


def stamp_ns(msg):
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture
def rgb():
    return np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"])
def test_raw_images_round_trip_with_row_padding(tmp_path, storage, encoding, rgb):
    with EpisodeBagWriter(tmp_path / "bag", storage=storage) as writer:
        writer.write_image(
            "left", 1_500_000_000, rgb, encoding=encoding, row_padding=7, receive_ns=1_600_000_000
        )
    [(topic, msgtype, receive, msg)] = read_all(tmp_path / "bag")
    assert (topic, msgtype, receive) == ("/left/image_raw", "sensor_msgs/msg/Image", 1_600_000_000)
    assert stamp_ns(msg) == 1_500_000_000 and msg.encoding == encoding
    assert msg.step == 10 * (4 if "a" in encoding[3:] else 3) + 7
    assert np.array_equal(image_msg_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono_images_round_trip(tmp_path, encoding):
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10)
    with EpisodeBagWriter(tmp_path / "bag") as writer:
        writer.write_image(
            "global", 1, np.stack([gray] * 3, axis=2), encoding=encoding, row_padding=3
        )
    [(_, _, _, msg)] = read_all(tmp_path / "bag")
    assert np.array_equal(image_msg_to_rgb(msg)[..., 1], gray)


def test_compressed_png_is_lossless_and_jpeg_close(tmp_path, rgb):
    with EpisodeBagWriter(tmp_path / "bag", storage="mcap") as writer:
        writer.write_image("right", 1, rgb, compressed=True, compression_format="png")
        smooth = np.full((16, 16, 3), 120, dtype=np.uint8)
        writer.write_image("left", 2, smooth, compressed=True, compression_format="jpeg")
    messages = {topic: msg for topic, _, _, msg in read_all(tmp_path / "bag")}
    assert "png" in messages["/right/image_raw"].format
    assert np.array_equal(compressed_msg_to_rgb(messages["/right/image_raw"]), rgb)
    jpeg = compressed_msg_to_rgb(messages["/left/image_raw"])
    assert np.abs(jpeg.astype(int) - 120).max() <= 2


def test_joint_states_commands_and_reward(tmp_path):
    names = ["a", "b", "c"]
    topics = BagTopics(command="/arm/commands", reward="/task/reward")
    with EpisodeBagWriter(tmp_path / "bag", topics=topics) as writer:
        writer.write_joint_state(10, names, [1.0, 2.0, 3.0], velocities=[0.1, 0.2, 0.3])
        writer.write_command(20, [4.0, 5.0, 6.0])
        writer.write_reward(30, 1.5)
    with (
        pytest.raises(BagWriteError, match="another type"),
        EpisodeBagWriter(tmp_path / "bag2", topics=topics) as writer,
    ):
        writer.write_command(20, [4.0], kind="float64_multi_array")
        writer.write_command(21, [4.0], kind="joint_state", names=["a"])
    messages = read_all(tmp_path / "bag")
    assert [(m[0], m[1], m[2]) for m in messages] == [
        ("/joint_states", "sensor_msgs/msg/JointState", 10),
        ("/arm/commands", "std_msgs/msg/Float64MultiArray", 20),
        ("/task/reward", "std_msgs/msg/Float64", 30),
    ]
    joint, command, reward = (m[3] for m in messages)
    assert list(joint.name) == names and joint.position.tolist() == [1.0, 2.0, 3.0]
    assert joint.velocity.tolist() == [0.1, 0.2, 0.3] and stamp_ns(joint) == 10
    assert command.data.tolist() == [4.0, 5.0, 6.0]
    assert reward.data == 1.5


@pytest.mark.parametrize("kind", ["joint_trajectory", "joint_state"])
def test_named_commands(tmp_path, kind):
    with EpisodeBagWriter(tmp_path / "bag", storage="mcap") as writer:
        writer.write_command(
            5_000_000_001, [0.5, -0.5], kind=kind, names=["j1", "j2"], receive_ns=5_000_000_002
        )
    [(_, msgtype, receive, msg)] = read_all(tmp_path / "bag")
    assert receive == 5_000_000_002 and stamp_ns(msg) == 5_000_000_001
    if kind == "joint_trajectory":
        assert msgtype == "trajectory_msgs/msg/JointTrajectory"
        assert list(msg.joint_names) == ["j1", "j2"]
        assert msg.points[0].positions.tolist() == [0.5, -0.5]
    else:
        assert msgtype == "sensor_msgs/msg/JointState"
        assert list(msg.name) == ["j1", "j2"] and msg.position.tolist() == [0.5, -0.5]


def test_bad_requests_are_named(tmp_path, rgb):
    with pytest.raises(BagWriteError, match="storage must be"):
        EpisodeBagWriter(tmp_path / "x", storage="rosbag1")
    with pytest.raises(BagWriteError, match="unknown ros_distro 'rolling2'"):
        EpisodeBagWriter(tmp_path / "x", ros_distro="rolling2")
    with EpisodeBagWriter(tmp_path / "bag") as writer:
        with pytest.raises(BagWriteError, match="unknown camera 'top'"):
            writer.write_image("top", 1, rgb)
        with pytest.raises(BagWriteError, match="cannot write encoding '16UC1'"):
            writer.write_image("left", 1, rgb, encoding="16UC1")
        with pytest.raises(BagWriteError, match="expected HxWx3 uint8"):
            writer.write_image("left", 1, rgb.astype(np.float32))
        with pytest.raises(BagWriteError, match="command kind"):
            writer.write_command(1, [1.0], kind="twist")
        with pytest.raises(BagWriteError, match="2 joint names but 1"):
            writer.write_joint_state(1, ["a", "b"], [1.0])
        writer.write_joint_state(1, ["a"], [1.0])
        with pytest.raises(BagWriteError, match="unknown message type 'std_msgs/msg/Nope'"):
            writer.message("std_msgs/msg/Nope")
    with pytest.raises(BagWriteError, match="exists already"):
        EpisodeBagWriter(tmp_path / "bag")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_sample_bag_content_is_a_known_function_of_time(tmp_path, storage):
    spec = SampleBagSpec(
        duration_s=1.0,
        camera_rate_hz=10,
        joint_rate_hz=20,
        command_rate_hz=20,
        reward_rate_hz=5,
        joint_order_seed=1,
        image_size=(8, 12),
    )
    path = write_sample_bag(tmp_path / "bag", spec, storage=storage)
    messages = read_all(path)
    receive = [m[2] for m in messages]
    assert receive == sorted(receive)
    counts = {}
    for topic, _, _, _ in messages:
        counts[topic] = counts.get(topic, 0) + 1
    assert counts == {
        "/left/image_raw": 11,
        "/right/image_raw": 11,
        "/global/image_raw": 11,
        "/joint_states": 21,
        "/commands": 21,
        "/reward": 6,
    }
    for topic, _, receive_ns, msg in messages:
        t = (receive_ns - spec.start_ns) / 1e9
        if topic == "/right/image_raw":
            pixels = image_msg_to_rgb(msg)
            assert pixels.shape == (8, 12, 3)
            assert np.all(pixels == sample_pixel_value(1, stamp_ns(msg), spec.start_ns))
        elif topic == "/joint_states":
            assert list(msg.name) != list(spec.joint_names)  # shuffled order
            for name, position in zip(msg.name, msg.position, strict=True):
                j = spec.joint_names.index(name)
                assert position == pytest.approx(sample_joint_position(j, t))
        elif topic == "/commands":
            assert msg.data[3] == pytest.approx(sample_joint_position(3, t + spec.command_lead_s))
    rewards = [m[3].data for m in messages if m[0] == "/reward"]
    assert rewards == [0.0] * 5 + [1.0]


def test_sample_bag_jitter_gaps_zero_stamps_and_missing_camera(tmp_path):
    spec = SampleBagSpec(
        duration_s=2.0,
        camera_rate_hz=10,
        joint_rate_hz=10,
        command_rate_hz=None,
        jitter_s=0.01,
        receive_delay_s=0.02,
        gaps=((0.5, 0.8),),
        camera_gaps=((1.5, 1.75),),
        missing_cameras=("global",),
        zero_stamps=True,
        seed=4,
    )
    messages = read_all(write_sample_bag(tmp_path / "bag", spec))
    topics = {m[0] for m in messages}
    assert topics == {"/left/image_raw", "/right/image_raw", "/joint_states"}
    for topic, _, receive_ns, msg in messages:
        assert stamp_ns(msg) == 0
        t = (receive_ns - spec.start_ns) / 1e9 - spec.receive_delay_s
        assert not 0.5 <= t < 0.8
        if topic != "/joint_states":
            assert not 1.5 <= t < 1.75
    joint_times = sorted(
        (m[2] - spec.start_ns) / 1e9 - 0.02 for m in messages if m[0] == "/joint_states"
    )
    offsets = np.array(joint_times) - np.round(np.array(joint_times), 1)
    assert np.abs(offsets).max() <= 0.01 + 1e-9 and np.abs(offsets).max() > 0
