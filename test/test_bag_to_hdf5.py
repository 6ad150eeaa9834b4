"""bag_to_hdf5 end to end: real bags (rosbags) -> real HDF5 files, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader, Writer

from lapo_ros.bags.config import (
    BagConversionConfig,
    ConfigError,
    RewardConfig,
    config_from_dict,
    load_config,
)
from lapo_ros.bags.convert import convert_bags, main
from lapo_ros.bags.reading import FrameCache, bag_name
from lapo_ros.bags.writing import (
    DEFAULT_JOINT_NAMES,
    EpisodeBagWriter,
    SampleBagSpec,
    sample_joint_position,
    sample_pixel_value,
    typestore_for,
    write_sample_bag,
)
from lapo_ros.common.images import CAMERA_ORDER, resize_rgb
from lapo_ros.dataset.episodes import read_file
from lapo_ros.dataset.labels import load_labels
from lapo_ros.dataset.layout import IMAGE_KEYS

REPO_ROOT = Path(__file__).resolve().parent.parent
RELIABLE_QOS = yaml.safe_dump([{
    "history": 1, "depth": 10, "reliability": 1, "durability": 2,
    "deadline": {"sec": 0, "nsec": 0}, "lifespan": {"sec": 0, "nsec": 0}, "liveliness": 1,
    "liveliness_lease_duration": {"sec": 0, "nsec": 0}, "avoid_ros_namespace_conventions": False,
}])  # as rosbag2 writes offered_qos_profiles into metadata.yaml
SIZE = ("--image-size", "16", "24")
START = SampleBagSpec().start_ns
TYPESTORE = typestore_for("humble")


def run(tmp_path, bags, *extra, labels=None, config=None, output="out.hdf5"):
    """main() on ``bags`` with a labels file (all successes by default); returns rc, out path."""
    out = tmp_path / output
    args = [str(b) for b in bags] + ["-o", str(out), "--no-progress", *SIZE, *extra]
    if config is not None:
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        args += ["--config", str(tmp_path / "config.yaml")]
    if config is None or config.get("reward", {}).get("source", "labels") == "labels":
        labels = labels if labels is not None else {bag_name(b): True for b in bags}
        (tmp_path / "labels.yaml").write_text(yaml.safe_dump(labels))
        args += ["--labels", str(tmp_path / "labels.yaml")]
    return main(args), out


def check_sample_content(h5, first, count, times, spec, action_lead):
    """Rows [first, first+count) hold the sample bag's known content at ``times`` (s)."""
    joints = h5["observations/joint"][first : first + count]
    actions = h5["actions"][first : first + count]
    names = json.loads(h5.attrs["joint_names"])
    for row, t in enumerate(times):
        for name in (names[0], names[7], names[-1]):
            j = spec.joint_names.index(name)
            col = names.index(name)
            assert joints[row, col] == pytest.approx(sample_joint_position(j, t), abs=1e-6)
            assert actions[row, col] == pytest.approx(
                sample_joint_position(j, t + action_lead), abs=1e-6
            )
        for index, camera in enumerate(CAMERA_ORDER):
            frame = h5[IMAGE_KEYS[camera]][first + row]
            stamp = spec.start_ns + int(round(t * 1e9))
            assert np.all(frame == sample_pixel_value(index, stamp, spec.start_ns))


@pytest.mark.parametrize(
    ("storage", "kind", "cache_mb"),
    [
        ("sqlite3", "float64_multi_array", 1024),
        ("sqlite3", "joint_trajectory", 0),
        ("sqlite3", "joint_state", 1024),
        ("mcap", "float64_multi_array", 0),
        ("mcap", "joint_trajectory", 1024),
        ("mcap", "joint_state", 0),
    ],
)
def test_converts_sample_bag_with_known_content(tmp_path, storage, kind, cache_mb, capsys):
    spec = SampleBagSpec(duration_s=1.0, command_kind=kind, joint_order_seed=7)
    bag = write_sample_bag(tmp_path / "ep1", spec, storage=storage)
    # joint_states come in a shuffled order; a Float64MultiArray needs its element names
    rc, out = run(
        tmp_path,
        [bag],
        "--frame-cache-mb",
        str(cache_mb),
        config={"command_joint_names": list(DEFAULT_JOINT_NAMES)},
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "without joint names" not in captured.err
    with h5py.File(out) as h5:
        assert h5["episode_ends"][:].tolist() == [11]
        for camera in CAMERA_ORDER:
            assert h5[IMAGE_KEYS[camera]].shape == (11, 16, 24, 3)
            assert h5[IMAGE_KEYS[camera]].chunks == (1, 16, 24, 3)
            assert h5[IMAGE_KEYS[camera]].compression is None
        assert h5["observations/joint"].shape == (11, 16)
        assert h5["actions"].shape == (11, 16)
        assert h5["rewards"][:].tolist() == [0.0] * 10 + [1.0]
        assert h5["terminals"][:].tolist() == [False] * 10 + [True]
        # joint order: the first message's (shuffled) order, matched by name every step
        assert json.loads(h5.attrs["joint_names"]) != list(DEFAULT_JOINT_NAMES)
        assert h5.attrs["rate_hz"] == 10.0
        [source] = json.loads(h5.attrs["source"])
        assert source["bags"] == [str(bag)]
        assert source["config"]["image_size"] == [16, 24]
        assert source["episodes"][0]["steps"] == 11
        check_sample_content(h5, 0, 11, np.arange(11) / 10, spec, spec.command_lead_s)
    assert "| ep1 | 1 | 11 | 11 | 0 | yes |" in captured.out
    assert "wrote 1 episode(s), 11 step(s)" in captured.out


def test_next_joint_position_is_the_action_without_command_topic(tmp_path):
    spec = SampleBagSpec(duration_s=1.0, command_rate_hz=None)
    bag = write_sample_bag(tmp_path / "ep", spec)
    config = {"topics": {"command": None}, "joint_names": list(DEFAULT_JOINT_NAMES[::-1])}
    rc, out = run(tmp_path, [bag], config=config)
    assert rc == 0
    with h5py.File(out) as h5:
        assert json.loads(h5.attrs["joint_names"]) == list(DEFAULT_JOINT_NAMES[::-1])
        assert h5["episode_ends"][:].tolist() == [10]  # the last step has no next position
        check_sample_content(h5, 0, 10, np.arange(10) / 10, spec, 0.1)
        assert h5["rewards"][-1] == 1.0 and h5["terminals"][-1]


def test_image_pixels_match_the_node_preprocessing(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    names = ["a", "b"]
    with EpisodeBagWriter(tmp_path / "ep") as writer:
        for k in range(3):
            stamp = START + k * 100_000_000
            writer.write_image("left", stamp, frames[k], encoding="bgra8", row_padding=5)
            writer.write_image("right", stamp, frames[k], encoding="bgr8")
            writer.write_image(
                "global", stamp, frames[k], compressed=True, compression_format="png"
            )
            writer.write_joint_state(stamp, names, [k, -k])
            writer.write_command(stamp, [k + 1.0, -k - 1.0])
    rc, out = run(tmp_path, [tmp_path / "ep"])
    assert rc == 0
    with h5py.File(out) as h5:
        for camera in CAMERA_ORDER:
            for k in range(3):
                expected = resize_rgb(frames[k], (16, 24))
                assert np.array_equal(h5[IMAGE_KEYS[camera]][k], expected), (camera, k)
        assert h5["actions"][:].tolist() == [[1, -1], [2, -2], [3, -3]]


@pytest.mark.parametrize(
    "spec_args",
    [
        {"encoding": "bgr8", "row_padding": 6},
        {"encoding": "mono8", "row_padding": 1},
        {"encoding": "rgba8"},
        {"compressed": True, "compression_format": "png"},
    ],
)
def test_encodings_and_row_padding(tmp_path, spec_args):
    spec = SampleBagSpec(duration_s=0.5, **spec_args)
    rc, out = run(tmp_path, [write_sample_bag(tmp_path / "ep", spec)])
    assert rc == 0
    with h5py.File(out) as h5:
        check_sample_content(h5, 0, 6, np.arange(6) / 10, spec, spec.command_lead_s)


def test_zero_header_stamps_use_receive_time(tmp_path):
    spec = SampleBagSpec(duration_s=1.0, zero_stamps=True, receive_delay_s=0.003)
    rc, out = run(tmp_path, [write_sample_bag(tmp_path / "ep", spec, storage="mcap")])
    assert rc == 0
    with h5py.File(out) as h5:
        check_sample_content(h5, 0, 11, np.arange(11) / 10, spec, spec.command_lead_s)


def test_jittered_faster_cameras_take_the_nearest_frame(tmp_path):
    spec = SampleBagSpec(
        duration_s=1.0,
        camera_rate_hz=30,
        joint_rate_hz=100,
        command_rate_hz=100,
        jitter_s=0.003,
        seed=2,
    )
    rc, out = run(tmp_path, [write_sample_bag(tmp_path / "ep", spec)], "--rate-hz", "10")
    assert rc == 0
    with h5py.File(out) as h5:
        left = h5[IMAGE_KEYS["left"]][:, 0, 0, 0].astype(int)
        [source] = json.loads(h5.attrs["source"])
        grid0 = (source["episodes"][0]["start_ns"] - START) / 1e9
        grid = grid0 + np.arange(len(left)) / 10
        # pixel value = the frame's stamp in 10 ms units (mod 256): the nearest 30 Hz frame
        # lies within half a camera period plus jitter of the grid time
        frame_times = np.where(left > 200, left - 256, left) / 100
        assert np.all(np.abs(frame_times - grid) <= 1 / 60 + 0.003 + 0.01)
        joints = h5["observations/joint"][:, 0]
        expected = [sample_joint_position(0, t) for t in grid]
        assert np.allclose(joints, expected, atol=0.01)


def test_gap_splits_episode_and_drops_are_reported(tmp_path, capsys):
    spec = SampleBagSpec(duration_s=3.0, camera_gaps=((1.05, 1.95),))
    rc, out = run(
        tmp_path,
        [write_sample_bag(tmp_path / "ep", spec)],
        config={"max_gap_s": 0.5, "reward": {"source": "labels"}},
    )
    assert rc == 0
    with h5py.File(out) as h5:
        assert h5["episode_ends"][:].tolist() == [11, 22]  # 0..1.0 s, 2.0..3.0 s
        assert h5["terminals"][:].tolist() == [False] * 21 + [True]
        assert h5["rewards"][10] == 0 and h5["rewards"][21] == 1
        check_sample_content(h5, 11, 11, 2 + np.arange(11) / 10, spec, spec.command_lead_s)
    table = capsys.readouterr().out
    # 9 grid points (1.1..1.9 s) lack every camera frame; joints and commands lack none
    assert "| ep | 2 | 22 | 31 | 0 | yes | 9 | 9 | 9 | 0 | 0 |" in table


def test_reward_topic(tmp_path):
    spec = SampleBagSpec(duration_s=1.0, reward_rate_hz=10, final_reward=2.5)
    config = {"reward": {"source": "topic", "topic": "/reward"}}
    rc, out = run(tmp_path, [write_sample_bag(tmp_path / "ep", spec)], config=config)
    assert rc == 0
    with h5py.File(out) as h5:
        assert h5["rewards"][:].tolist() == [0.0] * 10 + [2.5]
        assert h5["terminals"][:].tolist() == [False] * 10 + [True]


def test_reward_after_the_last_complete_grid_point_is_kept(tmp_path):
    spec = SampleBagSpec(duration_s=1.0, command_rate_hz=None)
    bag = write_sample_bag(tmp_path / "ep", spec)
    with EpisodeBagWriter(tmp_path / "rewards") as writer:
        writer.write_reward(START + 300_000_000, 0.5)
        writer.write_reward(START + 1_700_000_000, 1.0)  # after the cameras stopped
    # merge the two into one bag through rosbags
    merged = tmp_path / "merged"
    with (
        Reader(bag) as source,
        Reader(tmp_path / "rewards") as rewards,
        Writer(merged, version=8) as sink,
    ):
        connections = {}
        for reader in (source, rewards):
            for connection, stamp, raw in reader.messages():
                if connection.topic not in connections:
                    connections[connection.topic] = sink.add_connection(
                        connection.topic, connection.msgtype, typestore=TYPESTORE
                    )
                sink.write(connections[connection.topic], stamp, raw)
    config = {"topics": {"command": None}, "reward": {"source": "topic", "topic_terminal": False}}
    rc, out = run(tmp_path, [merged], config=config)
    assert rc == 0
    with h5py.File(out) as h5:
        rewards = h5["rewards"][:]
        # the last step is no transition (not terminal, no next state): its reward moves back
        assert rewards[3] == 0.5 and rewards[-2] == 1.0 and rewards.sum() == 1.5
        assert not h5["terminals"][:].any()


@pytest.mark.parametrize("terminal_on_failure", [False, True])
def test_failure_reward_lands_on_the_final_transition(tmp_path, terminal_on_failure):
    bags = [write_sample_bag(tmp_path / f"ep{i}", SampleBagSpec(duration_s=0.5)) for i in range(2)]
    config = {"reward": {"failure_reward": -1.0, "terminal_on_failure": terminal_on_failure}}
    rc, out = run(tmp_path, bags, labels={"ep0": True, "ep1": False}, config=config)
    assert rc == 0
    with h5py.File(out) as h5:
        assert h5["episode_ends"][:].tolist() == [6, 12]
        rewards, terminals = h5["rewards"][:], h5["terminals"][:]
    assert rewards[5] == 1.0 and terminals[5]
    failed = rewards[6:12].tolist()
    if terminal_on_failure:  # the last step is a transition of its own, to nothing
        assert failed == [0.0] * 5 + [-1.0] and terminals[11]
    else:  # the last step has no next state: the step before it is the final transition
        assert failed == [0.0] * 4 + [-1.0, 0.0] and not terminals[11]
    assert read_file(out).warnings == []  # no reward where the agent cannot see it


def test_failure_label_and_several_bags(tmp_path, capsys):
    bags = [
        write_sample_bag(
            tmp_path / f"ep{i}",
            SampleBagSpec(duration_s=0.5 + 0.5 * i),
            storage=("sqlite3", "mcap")[i],
        )
        for i in range(2)
    ]
    rc, out = run(tmp_path, bags, labels={"ep0": True, "ep1": False})
    assert rc == 0
    err = capsys.readouterr().err
    assert err.count("/commands is a Float64MultiArray without joint names") == 1
    with h5py.File(out) as h5:
        assert h5["episode_ends"][:].tolist() == [6, 17]
        assert h5["rewards"][5] == 1.0 and h5["terminals"][5]
        assert h5["rewards"][16] == 0.0 and not h5["terminals"][16]


@pytest.mark.parametrize(("storage", "compression"), [("sqlite3", "message"), ("mcap", "file")])
def test_zstd_compressed_bags(tmp_path, storage, compression):
    spec = SampleBagSpec(duration_s=0.5)
    bag = write_sample_bag(tmp_path / "ep", spec, storage=storage, compression=compression)
    rc, out = run(tmp_path, [bag])
    assert rc == 0
    with h5py.File(out) as h5:
        check_sample_content(h5, 0, 6, np.arange(6) / 10, spec, spec.command_lead_s)


def test_single_file_bags_and_folder_without_metadata(tmp_path):
    db3 = write_sample_bag(tmp_path / "a", SampleBagSpec(duration_s=0.5)) / "a.db3"
    mcap = write_sample_bag(tmp_path / "b", SampleBagSpec(duration_s=0.5), storage="mcap")
    (mcap / "metadata.yaml").unlink()
    rc, out = run(tmp_path, [db3, mcap / "b.mcap", mcap])
    assert rc == 0
    with h5py.File(out) as h5:
        assert h5["episode_ends"][:].tolist() == [6, 12, 18]


def test_append_extends_and_a_failed_append_keeps_the_file(tmp_path, capsys):
    first = write_sample_bag(tmp_path / "ep1", SampleBagSpec(duration_s=0.5))
    second = write_sample_bag(tmp_path / "ep2", SampleBagSpec(duration_s=0.5, seed=1))
    assert run(tmp_path, [first])[0] == 0
    rc, out = run(tmp_path, [second])
    assert rc == 1 and "exists; pass --append or --overwrite" in capsys.readouterr().err
    assert run(tmp_path, [second], "--append")[0] == 0
    before = out.read_bytes()
    broken = write_sample_bag(
        tmp_path / "ep3", SampleBagSpec(duration_s=0.5, missing_cameras=("left",))
    )
    assert run(tmp_path, [second, broken], "--append")[0] == 1
    assert out.read_bytes() == before
    with h5py.File(out) as h5:
        assert h5["episode_ends"][:].tolist() == [6, 12]
        assert len(json.loads(h5.attrs["source"])) == 2
    assert not list(tmp_path.glob(".out.hdf5*")), "temporary file left behind"


def test_append_takes_the_joint_order_of_the_file(tmp_path):
    spec = SampleBagSpec(duration_s=0.5, command_kind="joint_trajectory")
    first = write_sample_bag(tmp_path / "ep1", spec)
    second = write_sample_bag(tmp_path / "ep2", spec, storage="mcap")
    reversed_names = list(DEFAULT_JOINT_NAMES[::-1])
    assert run(tmp_path, [first], config={"joint_names": reversed_names})[0] == 0
    rc, out = run(tmp_path, [second], "--append")  # no joint_names: the file's order
    assert rc == 0
    with h5py.File(out) as h5:
        assert json.loads(h5.attrs["joint_names"]) == reversed_names
        assert h5["episode_ends"][:].tolist() == [6, 12]
        check_sample_content(h5, 6, 6, np.arange(6) / 10, spec, spec.command_lead_s)


# --------------------------------------------------------------------------- bad input


def assert_fails(tmp_path, capsys, bags, *patterns, extra=(), **kwargs):
    rc, out = run(tmp_path, bags, *extra, **kwargs)
    err = capsys.readouterr().err
    assert rc == 1, err
    for pattern in patterns:
        assert pattern in err, err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.hdf5*")), "temporary file left behind"
    return err


def test_missing_topic(tmp_path, capsys):
    bag = write_sample_bag(tmp_path / "ep", SampleBagSpec(missing_cameras=("global",)))
    assert_fails(
        tmp_path, capsys, [bag], str(bag), "global camera topic /global/image_raw is not in the bag"
    )


def test_missing_topic_in_a_later_bag_leaves_no_output(tmp_path, capsys):
    good = write_sample_bag(tmp_path / "good", SampleBagSpec(duration_s=0.5))
    bad = write_sample_bag(tmp_path / "bad", SampleBagSpec(duration_s=0.5, command_rate_hz=None))
    assert_fails(tmp_path, capsys, [good, bad], str(bad), "command topic /commands")


def test_unknown_encoding(tmp_path, capsys):
    with EpisodeBagWriter(tmp_path / "ep") as writer:
        for k in range(3):
            stamp = START + k * 100_000_000
            for camera in CAMERA_ORDER:
                image = writer.message(
                    "sensor_msgs/msg/Image",
                    header=writer.message(
                        "std_msgs/msg/Header",
                        frame_id="",
                        stamp=writer.message(
                            "builtin_interfaces/msg/Time", sec=stamp // 10**9, nanosec=stamp % 10**9
                        ),
                    ),
                    height=2,
                    width=2,
                    encoding="16UC1",
                    is_bigendian=0,
                    step=4,
                    data=np.zeros(8, np.uint8),
                )
                writer.write_message(f"/{camera}/image_raw", "sensor_msgs/msg/Image", image, stamp)
            writer.write_joint_state(stamp, ["a"], [0.0])
            writer.write_command(stamp, [0.0])
    assert_fails(
        tmp_path, capsys, [tmp_path / "ep"], "/left/image_raw", "unsupported image encoding '16UC1'"
    )


@pytest.mark.parametrize("cache_mb", [0, 1024])
def test_undecodable_compressed_image(tmp_path, capsys, cache_mb):
    with EpisodeBagWriter(tmp_path / "ep") as writer:
        for k in range(3):
            stamp = START + k * 100_000_000
            for camera in ("left", "global"):
                writer.write_image(camera, stamp, np.zeros((4, 4, 3), np.uint8), compressed=True)
            image = writer.message(
                "sensor_msgs/msg/CompressedImage",
                header=writer.message(
                    "std_msgs/msg/Header",
                    frame_id="",
                    stamp=writer.message("builtin_interfaces/msg/Time", sec=0, nanosec=0),
                ),
                format="jpeg",
                data=np.frombuffer(b"not a jpeg", np.uint8),
            )
            writer.write_message(
                "/right/image_raw", "sensor_msgs/msg/CompressedImage", image, stamp
            )
            writer.write_joint_state(stamp, ["a"], [0.0])
            writer.write_command(stamp, [0.0])
    assert_fails(
        tmp_path,
        capsys,
        [tmp_path / "ep"],
        "/right/image_raw",
        "not a decodable",
        extra=("--frame-cache-mb", str(cache_mb)),
    )


@pytest.mark.parametrize("cache_mb", [0, 1024])
def test_undecodable_frame_that_the_grid_skips_is_harmless(tmp_path, cache_mb):
    with EpisodeBagWriter(tmp_path / "ep") as writer:
        for k in range(12):  # cameras at 30 Hz, grid at 10 Hz: frames 1, 2, 4, 5, ... unused
            stamp = START + k * 33_333_333
            for camera in CAMERA_ORDER:
                if camera == "right" and k == 4:
                    writer.write_image(
                        camera, stamp, np.zeros((4, 4, 3), np.uint8), encoding="bgr8", row_padding=0
                    )
                    continue
                writer.write_image(camera, stamp, np.full((4, 4, 3), k, np.uint8))
            writer.write_joint_state(stamp, ["a"], [k])
            writer.write_command(stamp, [k])
    rc, out = run(tmp_path, [tmp_path / "ep"], "--frame-cache-mb", str(cache_mb))
    assert rc == 0
    with h5py.File(out) as h5:
        assert h5[IMAGE_KEYS["right"]][:, 0, 0, 0].tolist() == [0, 3, 6, 9]


def test_wrong_topic_type(tmp_path, capsys):
    with EpisodeBagWriter(tmp_path / "ep") as writer:
        for camera in CAMERA_ORDER:
            writer.write_image(camera, START, np.zeros((4, 4, 3), np.uint8))
        writer.write_joint_state(START, ["a"], [0.0])
        writer.write_reward(START, 1.0)
        writer.write_message(
            "/commands",
            "std_msgs/msg/String",
            writer.message("std_msgs/msg/String", data="go"),
            START,
        )
    assert_fails(
        tmp_path, capsys, [tmp_path / "ep"], "command topic /commands has type std_msgs/msg/String"
    )


def test_joint_missing_from_joint_states(tmp_path, capsys):
    bag = write_sample_bag(tmp_path / "ep", SampleBagSpec(duration_s=0.5))
    config = {"joint_names": ["left_joint1", "elbow"]}
    assert_fails(
        tmp_path, capsys, [bag], "/joint_states", "lacks joint(s) ['elbow']", config=config
    )


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag(tmp_path, capsys, storage):
    bag = write_sample_bag(
        tmp_path / "ep", SampleBagSpec(duration_s=1.0, image_size=(64, 64)), storage=storage
    )
    data_file = next(bag.glob("ep.*[3p]"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    err = assert_fails(tmp_path, capsys, [bag], str(bag))
    assert "corrupt" in err or "cannot open" in err


def test_corrupt_bag(tmp_path, capsys):
    bag = write_sample_bag(tmp_path / "ep", SampleBagSpec(duration_s=1.0))
    data = bytearray((bag / "ep.db3").read_bytes())
    data[100:4000] = b"\xff" * 3900
    (bag / "ep.db3").write_bytes(bytes(data))
    err = assert_fails(tmp_path, capsys, [bag], str(bag))
    assert "corrupt" in err or "cannot open" in err


def test_empty_bag(tmp_path, capsys):
    with EpisodeBagWriter(tmp_path / "ep", storage="mcap"):
        pass
    assert_fails(tmp_path, capsys, [tmp_path / "ep"], "ep: bag is empty")


def test_no_time_overlap(tmp_path, capsys):
    with EpisodeBagWriter(tmp_path / "ep") as writer:
        for k in range(10):
            stamp = START + k * 100_000_000
            for camera in CAMERA_ORDER:
                writer.write_image(camera, stamp, np.zeros((4, 4, 3), np.uint8))
            writer.write_joint_state(stamp + 5 * 10**9, ["a"], [0.0])
            writer.write_command(stamp, [0.0])
    assert_fails(
        tmp_path,
        capsys,
        [tmp_path / "ep"],
        "no time overlap: /joint_states starts",
        "try stamps: receive",
    )


def test_no_grid_point_with_all_topics(tmp_path, capsys):
    spec = SampleBagSpec(
        duration_s=1.0, camera_rate_hz=10, joint_rate_hz=10, command_rate_hz=10, jitter_s=0.0
    )
    bag = write_sample_bag(tmp_path / "ep", spec)
    config = {"tolerance_s": 1e-9, "rate_hz": 7.0}
    assert_fails(
        tmp_path,
        capsys,
        [bag],
        str(bag),
        "no episode of at least 2 steps",
        "/left/image_raw",
        config=config,
    )


def test_missing_label_and_bad_config(tmp_path, capsys):
    bag = write_sample_bag(tmp_path / "ep", SampleBagSpec(duration_s=0.5))
    assert_fails(tmp_path, capsys, [bag], "no label for bag 'ep'", labels={"other": True})
    assert_fails(
        tmp_path, capsys, [bag], "unknown key topics.cameras", config={"topics": {"cameras": "x"}}
    )
    assert_fails(tmp_path, capsys, [bag], "ros_distro", config={"ros_distro": "boxturtle"})
    assert_fails(
        tmp_path,
        capsys,
        [bag],
        "config.yaml: rate_hz must be float, got 'fast'",
        config={"rate_hz": "fast"},
    )
    assert_fails(
        tmp_path,
        capsys,
        [bag],
        "joint_names must be list[str], got 'a, b'",
        config={"joint_names": "a, b"},
    )
    assert_fails(
        tmp_path,
        capsys,
        [bag],
        "reward.terminal_on_failure must be bool",
        config={"reward": {"terminal_on_failure": "yes"}},
    )
    assert_fails(tmp_path, capsys, [tmp_path / "nope"], "nope: no such bag")


def test_default_config_file_loads_and_labels_format(tmp_path):
    config = load_config("config/bag_to_hdf5.yaml", validate=False)
    assert config.topics.cameras() == {c: f"/{c}/image_raw" for c in CAMERA_ORDER}
    assert config.to_dict()["topics"]["global"] == "/global/image_raw"
    config.reward.labels_file = "labels.yaml"
    config.validate()
    assert config_from_dict(config.to_dict()).to_dict() == config.to_dict()
    (tmp_path / "l.yaml").write_text("ep1: true\nep2: false\n")
    assert load_labels(tmp_path / "l.yaml", ConfigError) == {"ep1": True, "ep2": False}
    (tmp_path / "bad.yaml").write_text("ep1: maybe\n")
    with pytest.raises(ConfigError, match="label of 'ep1' must be true or false"):
        load_labels(tmp_path / "bad.yaml", ConfigError)


def test_workers_and_frame_cache_do_not_change_output(tmp_path):
    """One pass with cached frames, two passes, and a cache that overflows mid-bag."""
    spec = SampleBagSpec(duration_s=1.0, camera_rate_hz=30, image_size=(60, 80), jitter_s=0.004)
    bag = write_sample_bag(tmp_path / "ep", spec)
    runs = {
        "a.hdf5": ("--workers", "1"),
        "b.hdf5": ("--workers", "3", "--frame-cache-mb", "0"),
        "c.hdf5": ("--frame-cache-mb", "1"),
    }  # 1 MB holds 6 of 93 frames of 224x224
    for output, args in runs.items():
        assert run(tmp_path, [bag], *args, "--image-size", "224", "224", output=output)[0] == 0
    with h5py.File(tmp_path / "a.hdf5") as a:
        for other in ("b.hdf5", "c.hdf5"):
            with h5py.File(tmp_path / other) as b:
                for key in (*IMAGE_KEYS.values(), "observations/joint", "actions", "rewards"):
                    assert np.array_equal(a[key][:], b[key][:]), (other, key)
        assert a[IMAGE_KEYS["left"]].shape[1:] == (224, 224, 3)


def test_frame_cache_gives_up_beyond_its_budget():
    frame = np.zeros((30, 40, 3), np.uint8)
    image = SimpleNamespace(encoding="rgb8", height=30, width=40, step=120, data=frame.ravel())
    with ThreadPoolExecutor(2) as pool:
        cache = FrameCache(pool, budget_bytes=5 * 16 * 16 * 3, size=(16, 16), workers=2)
        for _ in range(5):
            cache.add("/left/image_raw", image, "sensor_msgs/msg/Image", "left")
        assert cache.active and len(cache.frames["/left/image_raw"]) == 5
        assert cache.frames["/left/image_raw"][4].result().shape == (16, 16, 3)
        cache.add("/left/image_raw", image, "sensor_msgs/msg/Image", "left")
        assert not cache.active and cache.frames == {}
        assert not FrameCache(pool, 0, (16, 16), 2).active


def write_minimal_bag(path, joint_values, command_values, names=("a", "b")):
    """Three 4x4 cameras, one joint state and one Float64MultiArray per 100 ms step. The
    joint states are written as given, even with repeated names or a wrong position count."""
    with EpisodeBagWriter(path) as writer:
        for k, (joint, command) in enumerate(zip(joint_values, command_values, strict=True)):
            stamp = START + k * 100_000_000
            for camera in CAMERA_ORDER:
                writer.write_image(camera, stamp, np.full((4, 4, 3), k, np.uint8))
            time = writer.message("builtin_interfaces/msg/Time", sec=stamp // 10**9,
                                  nanosec=stamp % 10**9)
            state = writer.message(
                "sensor_msgs/msg/JointState", header=writer.message(
                    "std_msgs/msg/Header", stamp=time, frame_id=""),
                name=list(names), position=np.asarray(joint, np.float64),
                velocity=np.zeros(0), effort=np.zeros(0))
            writer.write_message("/joint_states", "sensor_msgs/msg/JointState", state, stamp)
            writer.write_command(stamp, command)
    return path


def copy_bag(source, target, payload):
    """Copy a bag through rosbags, each message's bytes replaced by payload(topic, raw)."""
    with Reader(source) as reader, Writer(target, version=8) as writer:
        connections = {}
        for connection, stamp, raw in reader.messages():
            if connection.topic not in connections:
                connections[connection.topic] = writer.add_connection(
                    connection.topic, connection.msgtype, typestore=TYPESTORE
                )
            writer.write(connections[connection.topic], stamp, payload(connection.topic, raw))
    return target


@pytest.mark.parametrize("configured", [False, True])
def test_repeated_joint_names_in_joint_states(tmp_path, capsys, configured):
    names = ["j0", "j1", "j2", "j3", "j0"]  # which j0 is meant? by position it was the last
    bag = write_minimal_bag(tmp_path / "ep", [[0, 1, 2, 3, 4]] * 3, [[0] * 4] * 3, names)
    config = {"joint_names": names[:4]} if configured else None
    assert_fails(tmp_path, capsys, [bag], f"{bag}: /joint_states: joint name(s) ['j0'] occur "
                 "more than once", config=config)


def test_repeated_joint_names_in_the_config(tmp_path, capsys):
    bag = write_minimal_bag(tmp_path / "ep", [[0, 1]] * 3, [[0, 1]] * 3)
    assert_fails(tmp_path, capsys, [bag], "config.yaml: joint_names: joint name(s) ['a'] occur "
                 "more than once", config={"joint_names": ["a", "b", "a"]})
    with pytest.raises(ConfigError, match=r"action_joint_names: joint name\(s\) \['b'\]"):
        convert_bags([bag], tmp_path / "out.hdf5", BagConversionConfig(
            action_joint_names=["b", "b"], reward=RewardConfig(source="none")))


def test_more_positions_than_joint_names(tmp_path, capsys):
    names = [f"j{i}" for i in range(16)]
    bag = write_minimal_bag(tmp_path / "ep", [np.arange(20.0)] * 3, [np.arange(16.0)] * 3, names)
    assert_fails(tmp_path, capsys, [bag],
                 f"{bag}: /joint_states: 16 joint names but 20 position values")


@pytest.mark.parametrize("configured", [False, True])
def test_joint_states_whose_payload_is_not_a_joint_state(tmp_path, capsys, configured):
    good = write_minimal_bag(tmp_path / "good", [[0, 1]] * 3, [[0, 1]] * 3)
    text = TYPESTORE.serialize_cdr(TYPESTORE.types["std_msgs/msg/String"](data="hi"),
                                   "std_msgs/msg/String")
    bag = copy_bag(good, tmp_path / "ep",
                   lambda topic, raw: text if topic == "/joint_states" else raw)
    config = {"joint_names": ["a", "b"]} if configured else None  # scan / first message
    assert_fails(tmp_path, capsys, [bag],
                 f"{bag}: /joint_states: cannot deserialize sensor_msgs/msg/JointState",
                 config=config)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_metadata_qos_that_differs_from_the_storage_file(tmp_path, storage):
    spec = SampleBagSpec(duration_s=0.5)
    bag = write_sample_bag(tmp_path / "ep", spec, storage=storage)
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())
    for topic in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        topic["topic_metadata"]["offered_qos_profiles"] = RELIABLE_QOS  # storage: none
    (bag / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    with Reader(bag) as reader:  # rosbags matches metadata.yaml connections by QoS too
        joint_states = [c for c in reader.connections if c.topic == "/joint_states"]
        assert joint_states[0].msgcount == 26
        assert not list(reader.messages(connections=joint_states))
    rc, out = run(tmp_path, [bag])
    assert rc == 0
    with h5py.File(out) as h5:
        check_sample_content(h5, 0, 6, np.arange(6) / 10, spec, spec.command_lead_s)


# ---------------------------------------------------------------------- the output file


def test_output_folder_that_is_a_file(tmp_path, capsys):
    bag = write_minimal_bag(tmp_path / "ep", [[0, 1]] * 3, [[0, 1]] * 3)
    (tmp_path / "data").write_text("a file, not a folder")
    rc, _ = run(tmp_path, [bag], output="data/out.hdf5")
    err = capsys.readouterr().err
    assert rc == 1 and f"{tmp_path / 'data'} is a file, not a folder" in err, err
    assert "Traceback" not in err
    folder = tmp_path / "folder.hdf5"
    folder.mkdir()
    rc, _ = run(tmp_path, [bag], "--overwrite", output="folder.hdf5")
    err = capsys.readouterr().err
    assert rc == 1 and f"{folder}: is a folder" in err, err


@pytest.mark.parametrize("configured", [False, True])
def test_append_to_a_file_that_is_not_hdf5(tmp_path, capsys, configured):
    bag = write_minimal_bag(tmp_path / "ep", [[0, 1]] * 3, [[0, 1]] * 3)
    out = tmp_path / "out.hdf5"
    out.write_text("not an HDF5 file")
    config = {"joint_names": ["a", "b"]} if configured else None
    rc, _ = run(tmp_path, [bag], "--append", config=config)
    err = capsys.readouterr().err
    assert rc == 1 and f"{out}: cannot append, not a readable HDF5 file" in err, err
    assert out.read_text() == "not an HDF5 file"
    assert not list(tmp_path.glob(".out.hdf5*"))


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # no file may grow past limit
from lapo_ros.bags.convert import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("mode", ["new", "--overwrite", "--append"])
def test_full_disk_is_a_clean_error_that_leaves_the_output_as_it_was(tmp_path, mode):
    """A file size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC).
    2.5 MB per bag at 160x160: the first bag fits under the limit, the second does not."""
    bags = [write_sample_bag(tmp_path / f"ep{i}", SampleBagSpec(duration_s=1.0, seed=i))
            for i in range(2)]
    (tmp_path / "labels.yaml").write_text("ep0: true\nep1: false\n")
    out = tmp_path / "out.hdf5"
    common = ["-o", str(out), "--labels", str(tmp_path / "labels.yaml"), "--no-progress",
              "--image-size", "160", "160"]
    limit = 4_500_000
    if mode != "new":
        assert main([str(bags[0]), *common]) == 0
        out.chmod(0o640)
        if mode == "--append":
            limit += out.stat().st_size  # the copy to append to fits
    before = out.read_bytes() if out.exists() else None
    extra = [] if mode == "new" else [mode]
    completed = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(limit), *map(str, bags), *common, *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 1, completed.stderr[-3000:]  # not 139 or -11: a segfault
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    assert f"bag_to_hdf5: error: {out}: no room for" in completed.stderr
    assert "File too large" in completed.stderr
    if before is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == before and out.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".out.hdf5*")), "temporary file left behind"


def test_nan_joint_position(tmp_path, capsys):
    bag = write_minimal_bag(tmp_path / "ep", [[0, 0], [0, float("nan")], [0, 0]], [[0, 0]] * 3)
    assert_fails(tmp_path, capsys, [bag], "/joint_states: NaN or inf in 1 message(s)")


def test_float64_multi_array_of_the_wrong_length(tmp_path, capsys):
    bag = write_minimal_bag(tmp_path / "ep", [[0, 0]] * 3, [[0, 0], [0, 0, 0], [0, 0]])
    assert_fails(tmp_path, capsys, [bag], "/commands: Float64MultiArray has 3 values, expected 2")


def test_float64_multi_array_reordered_by_command_joint_names(tmp_path):
    bag = write_minimal_bag(tmp_path / "ep", [[1, 2]] * 3, [[10, 20]] * 3)
    rc, out = run(tmp_path, [bag], config={"command_joint_names": ["b", "a"]})
    assert rc == 0
    with h5py.File(out) as h5:
        assert h5["actions"][:].tolist() == [[20, 10]] * 3
        assert h5["observations/joint"][:].tolist() == [[1, 2]] * 3


@pytest.mark.slow
def test_benchmark_quick_run(tmp_path):
    out = tmp_path / "bench.md"
    completed = subprocess.run(
        [sys.executable, "benchmarks/bag_to_hdf5.py", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert out.read_text() == completed.stdout
    assert completed.stdout.startswith("Command: `python benchmarks/bag_to_hdf5.py --quick")
    rows = [
        line.split("|")[1:-1]
        for line in completed.stdout.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    assert rows[0][0].strip() == "read-only pass (baseline)" and rows[0][3].strip() == "1.00x"
    assert len(rows) == 6
    for _, seconds, frames_per_s, versus in rows:
        assert float(seconds) > 0 and float(frames_per_s) > 0 and versus.strip().endswith("x")


@pytest.mark.parametrize("cache_mb", [0, 1024])
def test_memory_stays_far_below_the_unresized_images(tmp_path, cache_mb):
    spec = SampleBagSpec(duration_s=3.0, image_size=(240, 320))
    bag = write_sample_bag(tmp_path / "ep", spec)
    raw_bytes = 31 * 3 * 240 * 320 * 3
    config = BagConversionConfig(
        image_size=(16, 24),
        frame_cache_mb=cache_mb,
        command_joint_names=list(DEFAULT_JOINT_NAMES),
        reward=RewardConfig(source="none"),
    )
    tracemalloc.start()
    try:
        [report] = convert_bags([bag], tmp_path / "out.hdf5", config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.steps == 31
    assert peak < raw_bytes / 4, f"peak {peak / 1e6:.1f} MB for {raw_bytes / 1e6:.1f} MB of images"
