"""Reading and validating HDF5 episode files: canonical, seed and ALOHA layouts."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hdf5_test_data import (
    JOINT_NAMES,
    coded_episodes,
    damage_object_header,
    write_aloha_file,
    write_seed_file,
)

from lapo_ros.dataset.aloha import aloha_layout
from lapo_ros.dataset.episodes import (
    AlohaLayout,
    DatasetReadError,
    expand_paths,
    frame_offsets,
    load_sources,
    read_file,
)
from lapo_ros.dataset.layout import write_episodes

CAMERAS = {"left": "cam_left_wrist", "right": "cam_right_wrist", "global": "cam_high"}


@pytest.fixture
def canonical(tmp_path):
    path = tmp_path / "data.hdf5"
    write_episodes(
        path, coded_episodes([4, 6, 3], [True, False, True]), joint_names=JOINT_NAMES, rate_hz=15.0
    )
    return path


def test_canonical_layout_reads_episodes_and_attributes(canonical):
    report = read_file(canonical)
    assert report.errors == [] and report.layout == "canonical"
    source = report.source
    assert source.episode_ends.tolist() == [4, 10, 13]
    assert source.episode_terminal.tolist() == [True, False, True]
    assert source.num_transitions == 4 + 5 + 3
    assert source.joint_names == JOINT_NAMES and source.rate_hz == 15.0
    assert {s.access for s in source.images.values()} == {"memmap"}
    assert any(line.startswith("/episode_ends (3,) int64") for line in report.structure)
    # episode 1 is not terminal: the reward on its last step (a frame code, -1) is never seen
    assert report.warnings == [f"{canonical}: 1 non-terminal episode(s) end with a reward on "
                               "their last step, which has no next state: the agent never "
                               "sees it (first: episode 1)"]


def test_frame_offsets_match_h5py_for_chunked_and_contiguous(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("chunked", data=frames, chunks=(1, 8, 8, 3))
        h5.create_dataset("contiguous", data=frames)
        h5.create_dataset("lzf", data=frames, chunks=(1, 8, 8, 3), compression="lzf")
        h5.create_dataset("two_frame_chunks", data=frames, chunks=(2, 8, 8, 3))
    raw = np.fromfile(path, dtype=np.uint8)
    with h5py.File(path, "r") as h5:
        for key in ("chunked", "contiguous"):
            offsets = frame_offsets(h5[key])
            got = np.stack([raw[o : o + frames[0].size] for o in offsets]).reshape(frames.shape)
            assert np.array_equal(got, frames), key
        assert frame_offsets(h5["lzf"]) is None
        assert frame_offsets(h5["two_frame_chunks"]) is None


def test_compressed_images_fall_back_to_h5py(tmp_path):
    path = tmp_path / "gzip.hdf5"
    write_episodes(
        path, coded_episodes([3], [True]), joint_names=JOINT_NAMES, rate_hz=10, compression="gzip"
    )
    source = read_file(path).source
    assert {s.access for s in source.images.values()} == {"h5py"}


@pytest.mark.parametrize("chw", [False, True])
@pytest.mark.parametrize("two_d", [False, True])
def test_seed_layout_uses_terminals_as_boundaries(tmp_path, chw, two_d):
    path = tmp_path / "robot_data.hdf5"
    write_seed_file(path, coded_episodes([3, 4, 2], [True, True, False]), chw=chw, two_d=two_d)
    report = read_file(path)
    assert report.errors == [] and report.layout == "seed"
    source = report.source
    assert source.episode_ends.tolist() == [3, 7, 9]
    assert source.episode_terminal.tolist() == [True, True, False]
    assert source.reward.shape == (9,)
    assert {s.layout for s in source.images.values()} == {"CHW" if chw else "HWC"}
    assert source.joint_names is None and source.rate_hz is None
    assert any("timed-out" in w for w in report.warnings)


def test_seed_layout_timeouts_end_episodes_without_terminal(tmp_path):
    path = tmp_path / "robot_data.hdf5"
    write_seed_file(path, coded_episodes([3, 4], [False, True]), chw=False, two_d=False)
    with h5py.File(path, "a") as h5:
        h5["timeouts"] = np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool)
    source = read_file(path).source
    assert source.episode_ends.tolist() == [3, 7]
    assert source.episode_terminal.tolist() == [False, True]


def test_aloha_folder_with_camera_mapping_in_natural_order(tmp_path):
    episodes = coded_episodes([3, 2, 4], [True, True, True])
    for index, name in enumerate(["episode_2.hdf5", "episode_10.hdf5", "episode_1.hdf5"]):
        write_aloha_file(
            tmp_path / name, episodes[index], CAMERAS, success=None if index else False
        )
    (tmp_path / "notes.txt").write_text("not data")
    files = expand_paths(tmp_path)
    assert [f.name for f in files] == ["episode_1.hdf5", "episode_2.hdf5", "episode_10.hdf5"]
    sources = load_sources(tmp_path, aloha=AlohaLayout(cameras=CAMERAS, success_reward=2.0,
                                                       assume_success=True))
    assert [s.layout for s in sources] == ["aloha"] * 3
    assert [s.num_frames for s in sources] == [4, 3, 2]
    assert all(s.episode_terminal.tolist() == [True] for s in sources)
    # no reward in ALOHA files: sparse success reward on the last step
    assert sources[0].reward.tolist() == [0, 0, 0, 2.0]
    assert sources[1].reward.tolist() == [0, 0, 0]  # attrs success=False
    assert np.array_equal(sources[2].joint, episodes[1].joint)


@pytest.mark.parametrize("cameras", [
    {"left": "left_wrist", "right": "right_wrist", "global": "top"},  # ACT sim, gym-aloha
    {"left": "cam_left_wrist", "right": "cam_right_wrist", "global": "cam_high"},  # real
])
def test_aloha_cameras_joint_names_and_rate_are_detected(tmp_path, cameras):
    path = tmp_path / "episode_0.hdf5"
    episode = coded_episodes([3], [True])[0]
    episode.joint, episode.action = episode.joint[:, :14], episode.action[:, :14]  # ALOHA's 14
    write_aloha_file(path, episode, cameras, success=True)
    with h5py.File(path, "a") as h5:  # real ALOHA's fourth camera is not used
        h5["observations/images/cam_low"] = episode.global_image
    source = read_file(path).source
    assert {c: s.key for c, s in source.images.items()} == {
        c: f"observations/images/{n}" for c, n in cameras.items()}
    assert source.joint_names[:2] == ["left_arm_waist", "left_arm_shoulder"]
    assert source.joint_names[6] == "left_arm_gripper" and len(source.joint_names) == 14
    assert source.rate_hz == 50.0
    assert read_file(path, aloha=AlohaLayout(rate_hz=25.0)).source.rate_hz == 25.0


def _aloha_14_joint_file(path) -> None:
    episode = coded_episodes([3], [True])[0]
    episode.joint, episode.action = episode.joint[:, :14], episode.action[:, :14]
    write_aloha_file(path, episode, CAMERAS, success=True)


def test_aloha_joint_names_and_rate_options_are_defaults_a_file_attribute_beats(tmp_path):
    path = tmp_path / "episode_0.hdf5"
    _aloha_14_joint_file(path)
    names = [f"joint_{i}" for i in range(14)]
    for given in (",".join(names), names):  # the option's string, the config's list
        source = read_file(path, aloha=aloha_layout(joint_names=given, rate_hz=30)).source
        assert source.joint_names == names and source.rate_hz == 30.0
    assert aloha_layout().rate_hz == 50.0  # None: ALOHA's rate
    with h5py.File(path, "a") as h5:  # what the file records wins
        h5.attrs["joint_names"] = json.dumps(JOINT_NAMES[:14])
        h5.attrs["rate_hz"] = 25.0
    source = read_file(path, aloha=aloha_layout(joint_names=names, rate_hz=30.0)).source
    assert source.joint_names == JOINT_NAMES[:14] and source.rate_hz == 25.0


def test_aloha_joint_names_option_must_name_every_joint(tmp_path):
    path = tmp_path / "episode_0.hdf5"
    _aloha_14_joint_file(path)
    layout = aloha_layout(joint_names=",".join("abcdefghijklm"))
    assert read_file(path, aloha=layout).errors == [
        f"{path}: --aloha-joint-names NAME,NAME,... (aloha_joint_names in config) has 13 names, "
        "joints have 14"]
    with pytest.raises(DatasetReadError, match="has 13 names, joints have 14"):
        load_sources(path, aloha=layout)


@pytest.mark.parametrize("options, expected", [
    ({"joint_names": ""}, "--aloha-joint-names NAME,NAME,... (aloha_joint_names in config): "
                          "every joint needs a name, got ['']"),
    ({"joint_names": "a, ,b"}, "every joint needs a name, got ['a', '', 'b']"),
    ({"joint_names": []}, "every joint needs a name, got []"),
    ({"joint_names": "a,b,a,c,b"}, "(aloha_joint_names in config): repeated name(s) ['a', 'b']"),
    ({"rate_hz": 0.0}, "--aloha-rate-hz HZ (aloha_rate_hz in config) must be a number > 0, "
                       "got 0.0"),
    ({"rate_hz": -50}, "--aloha-rate-hz HZ (aloha_rate_hz in config) must be a number > 0"),
    ({"rate_hz": float("nan")}, "(aloha_rate_hz in config) must be a number > 0, got nan"),
])
def test_bad_aloha_joint_names_and_rate_name_the_option(options, expected):
    with pytest.raises(DatasetReadError) as error:
        aloha_layout(**options)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_aloha_unknown_camera_names_are_listed_with_the_option(tmp_path):
    path = tmp_path / "episode_0.hdf5"
    write_aloha_file(path, coded_episodes([3], [True])[0], {"left": "a", "right": "b",
                                                            "global": "c"}, success=True)
    report = read_file(path)
    assert report.source is None
    message = "\n".join(report.errors)
    assert str(path) in message and "['a', 'b', 'c']" in message
    assert "--aloha-cameras left=NAME,right=NAME,global=NAME" in message
    assert "cam_left_wrist" in message and "top" in message  # the known namings
    mapped = read_file(path, aloha=AlohaLayout(cameras={"left": "b", "right": "a",
                                                        "global": "c"}))
    assert mapped.source.images["left"].key == "observations/images/b"
    wrong = read_file(path, aloha=AlohaLayout(cameras={"left": "x", "right": "a",
                                                       "global": "c"}))
    assert "no camera ['x']" in "\n".join(wrong.errors)


def test_aloha_success_comes_from_labels_then_attribute_else_training_refuses(tmp_path):
    episodes = coded_episodes([3, 3, 3], [True] * 3)
    for index, success in enumerate([None, False, None]):
        write_aloha_file(tmp_path / f"ep_{index}.hdf5", episodes[index], CAMERAS, success)
    report = read_file(tmp_path / "ep_0.hdf5")
    assert report.unlabelled and report.source is not None and not report.errors
    assert any("NO SUCCESS LABEL" in w for w in report.warnings)
    with pytest.raises(DatasetReadError, match=r"2 ALOHA episode file\(s\) say nothing of "
                                               r"success .*ep_0.hdf5, .*ep_2.hdf5"):
        load_sources(tmp_path)
    assert len(load_sources(tmp_path, require_labels=False)) == 3  # evaluation needs none
    labels = tmp_path / "labels.yaml"
    labels.write_text("ep_0: true\nep_1: true\nep_2: false\n")  # a label beats the attribute
    layout = aloha_layout(labels_file=str(labels))
    rewards = [s.reward[-1] for s in load_sources(tmp_path, aloha=layout)]
    assert rewards == [1.0, 1.0, 0.0]
    assumed = load_sources(tmp_path, aloha=aloha_layout(assume_success=True))
    assert [s.reward[-1] for s in assumed] == [1.0, 0.0, 1.0]  # the attribute still counts


def test_several_files_and_folders_combine(tmp_path, canonical):
    folder = tmp_path / "more"
    folder.mkdir()
    write_seed_file(folder / "seed.hdf5", coded_episodes([2], [True]), chw=True, two_d=True)
    sources = load_sources([canonical, folder])
    assert [s.layout for s in sources] == ["canonical", "seed"]


def _break(path, key, value):
    with h5py.File(path, "a") as h5:
        if key in h5:
            del h5[key]
        if value is not None:
            h5[key] = value


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("actions", None, "missing key /actions"),
        ("rewards", np.zeros(12, np.float32), "mismatched lengths"),
        ("observations/left_image", np.zeros((13, 16, 16, 3), np.float32), "must be uint8"),
        ("observations/joint", np.zeros(13, np.float32), "/observations/joint has shape (13,)"),
        ("actions", np.full((13, 16), np.nan, np.float32), "/actions contains NaN or inf"),
        ("observations/joint", np.full((13, 16), np.inf, np.float32), "NaN or inf"),
        ("rewards", np.array([0] * 5 + [np.nan] * 8, np.float32), "first at step 5"),
        ("episode_ends", np.array([4, 4, 13]), "episode 1 is empty"),
        ("episode_ends", np.array([4, 10, 12]), "ends at 12, the data holds 13"),
        ("terminals", np.eye(13, dtype=bool)[1], "true at step 1 inside an episode"),
        ("terminals", np.full(13, 2.0), "only 0/1"),
        ("actions", np.array(["x"] * 13, dtype="S1"), "expected a numeric type"),
        ("actions", np.zeros((13, 0), np.float32), "/actions has shape (13, 0): no values"),
        ("observations/joint", np.zeros((13, 0), np.float32), "joint has shape (13, 0): no"),
    ],
)
def test_bad_data_errors_name_file_and_key(canonical, key, value, expected):
    _break(canonical, key, value)
    report = read_file(canonical)
    assert report.source is None
    assert any(expected in e and str(canonical) in e for e in report.errors), report.errors
    with pytest.raises(DatasetReadError, match="data.hdf5"):
        load_sources(canonical)


def test_empty_datasets_are_an_empty_episode(tmp_path):
    path = tmp_path / "empty.hdf5"
    with h5py.File(path, "w") as h5:
        for camera in ("left", "right", "global"):
            h5.create_dataset(f"observations/{camera}_image", shape=(0, 8, 8, 3), dtype=np.uint8)
        h5["observations/joint"] = np.zeros((0, 16), np.float32)
        h5["actions"] = np.zeros((0, 16), np.float32)
        h5["rewards"] = np.zeros(0, np.float32)
        h5["terminals"] = np.zeros(0, bool)
    assert any("empty episode" in e for e in read_file(path).errors)


def test_every_problem_is_reported_at_once(canonical):
    _break(canonical, "actions", None)
    _break(canonical, "rewards", np.full(13, np.nan, np.float32))
    errors = read_file(canonical).errors
    assert any("/actions" in e for e in errors) and any("/rewards" in e for e in errors)


def test_unreadable_and_missing_files(tmp_path):
    garbage = tmp_path / "broken.hdf5"
    garbage.write_bytes(b"this is not hdf5" * 10)
    assert "cannot open as HDF5" in read_file(garbage).errors[0]
    with pytest.raises(DatasetReadError, match="broken.hdf5: cannot open"):
        load_sources(garbage)
    with pytest.raises(DatasetReadError, match="nothing_here.hdf5: no such file"):
        load_sources(tmp_path / "nothing_here.hdf5")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(DatasetReadError, match="empty_folder: folder holds no HDF5 files"):
        load_sources(empty)


def test_unknown_layout_lists_keys(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["something"] = np.zeros(3)
    assert "not a known episode layout" in read_file(path).errors[0]


def test_joint_names_attribute_must_match_joint_count(canonical):
    with h5py.File(canonical, "a") as h5:
        h5.attrs["joint_names"] = '["a", "b"]'
    assert "joint_names has 2 names, joints have 16" in read_file(canonical).errors[0]


def test_images_in_memory_reads_frames_into_ram(canonical):
    source = read_file(canonical, images_in_memory=True).source
    assert {s.access for s in source.images.values()} == {"memory"}
    assert source.images["right"].array.shape == (13, 16, 16, 3)


@pytest.mark.parametrize(
    ("damaged", "expected"),
    [
        ("actions", "/actions cannot be opened: the file is damaged (bad object header"),
        ("episode_ends", "/episode_ends cannot be opened: the file is damaged"),
        ("observations", "/observations/joint cannot be opened: the file is damaged"),
    ],
)
def test_damaged_object_header_names_file_and_key(canonical, damaged, expected):
    damage_object_header(canonical, damaged)
    report = read_file(canonical)
    assert report.source is None
    assert any(e.startswith(f"{canonical}: {expected}") for e in report.errors), report.errors
    assert any(line.startswith(f"/{damaged} cannot be opened") for line in report.structure)
    assert "/rewards (13,) float32 [chunked]" in report.structure  # the rest is still listed
    with pytest.raises(DatasetReadError, match=f"data.hdf5: {expected[:20]}"):
        load_sources(canonical)


def test_dangling_links_name_where_they_lead(canonical, tmp_path):
    nowhere = tmp_path / "moved_away.hdf5"
    with h5py.File(canonical, "a") as h5:
        del h5["actions"], h5["rewards"]
        h5["actions"] = h5py.ExternalLink(str(nowhere), "/actions")
        h5["rewards"] = h5py.SoftLink("/old/rewards")
    errors = read_file(canonical).errors
    assert f"{canonical}: /actions cannot be opened: it is an external link to /actions in " \
           f"{nowhere}, which cannot be opened (can't open file)" in errors
    assert f"{canonical}: /rewards cannot be opened: it is a soft link to /old/rewards, which " \
           "does not exist" in errors
    with pytest.raises(DatasetReadError, match="external link"):
        load_sources(canonical)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("rate_hz", "fast", "attribute rate_hz must be a positive number, got 'fast'"),
        ("rate_hz", np.array([10.0, 20.0]), "attribute rate_hz must be a positive number"),
        ("rate_hz", True, "attribute rate_hz must be a positive number"),
        ("rate_hz", -5.0, "attribute rate_hz must be a positive number, got "),
        ("joint_names", "5", "attribute joint_names is not a list of strings"),
        ("joint_names", "[1, 2]", "attribute joint_names is not a list of strings"),
    ],
)
def test_attributes_of_the_wrong_kind(canonical, name, value, expected):
    with h5py.File(canonical, "a") as h5:
        h5.attrs[name] = value
    assert any(expected in e and str(canonical) in e for e in read_file(canonical).errors)
    with pytest.raises(DatasetReadError, match=expected[:30]):
        load_sources(canonical)


def test_aloha_success_attribute_must_be_true_or_false(tmp_path):
    path = tmp_path / "episode_0.hdf5"
    write_aloha_file(path, coded_episodes([3], [True])[0], CAMERAS)
    with h5py.File(path, "a") as h5:
        h5.attrs["success"] = "maybe"
    errors = read_file(path, aloha=AlohaLayout(cameras=CAMERAS)).errors
    assert errors == [f"{path}: attribute success must be true or false, got 'maybe'"]

