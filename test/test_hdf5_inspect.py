"""``lapo_hdf5 inspect``: report contents and problems, exit non-zero when data cannot train."""

from __future__ import annotations

import subprocess
import sys

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

from lapo_ros.dataset.inspect import main
from lapo_ros.dataset.layout import write_episodes


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.hdf5"
    write_episodes(
        path, coded_episodes([3, 5, 2], [True, False, True]), joint_names=JOINT_NAMES, rate_hz=30.0
    )
    return path


def test_reports_structure_episodes_ranges(good_file, capsys):
    assert main(["inspect", str(good_file)]) == 0
    out = capsys.readouterr().out
    assert "[canonical]" in out
    assert "/observations/left_image (10, 16, 16, 3) uint8 [chunked]" in out
    assert "episodes: 3 (2 terminal, 1 timed out), steps 10, transitions 9" in out
    assert "lengths: min 2, median 3, max 5: 3 5 2" in out
    assert "rate_hz: 30.0" in out
    assert "joint[0] arm_joint_0: 0 / 4.5 / 9" in out
    assert "reward: -3 / " in out
    assert "read by memmap" in out
    assert "result: the data can train" in out


def test_lists_every_problem_and_fails(good_file, tmp_path, capsys):
    with h5py.File(good_file, "a") as h5:
        h5["actions"][4, 2] = np.nan
        del h5["rewards"]
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"\0" * 64)
    assert main(["inspect", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "good.hdf5: /actions contains NaN or inf (1 values, first at step 4)" in out
    assert "good.hdf5: missing key /rewards" in out
    assert "junk.hdf5: cannot open as HDF5" in out
    assert "result: the data cannot train (3 error(s))" in out


def test_damaged_files_are_problems_not_crashes(tmp_path, capsys):
    """A damaged object header, a dangling link, a text rate and actions without values."""
    for name in ("header", "link", "rate", "no_actions"):
        write_episodes(tmp_path / f"{name}.hdf5", coded_episodes([3], [True]),
                       joint_names=JOINT_NAMES, rate_hz=10.0)
    damage_object_header(tmp_path / "header.hdf5", "observations/left_image")
    with h5py.File(tmp_path / "link.hdf5", "a") as h5:
        del h5["rewards"]
        h5["rewards"] = h5py.ExternalLink("elsewhere.hdf5", "/rewards")
    with h5py.File(tmp_path / "rate.hdf5", "a") as h5:
        h5.attrs["rate_hz"] = "ten"
    with h5py.File(tmp_path / "no_actions.hdf5", "a") as h5:
        del h5["actions"]
        h5["actions"] = np.zeros((3, 0), np.float32)
    assert main(["inspect", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {tmp_path / 'header.hdf5'}: /observations/left_image cannot be opened" in out
    assert f"ERROR {tmp_path / 'link.hdf5'}: /rewards cannot be opened: it is an external " \
           "link to /rewards in elsewhere.hdf5" in out
    assert f"ERROR {tmp_path / 'rate.hdf5'}: attribute rate_hz must be a positive number" in out
    assert f"ERROR {tmp_path / 'no_actions.hdf5'}: /actions has shape (3, 0)" in out
    assert "result: the data cannot train (4 error(s))" in out


def test_files_that_cannot_train_together(good_file, tmp_path, capsys):
    other = tmp_path / "other_rate.hdf5"
    write_episodes(other, coded_episodes([3], [True]), joint_names=JOINT_NAMES, rate_hz=10.0)
    assert main(["inspect", str(good_file), str(other)]) == 1
    assert "rate_hz 10.0 differs from 30.0" in capsys.readouterr().out


def test_no_transitions_cannot_train(tmp_path, capsys):
    path = tmp_path / "single_steps.hdf5"
    write_episodes(
        path, coded_episodes([1, 1], [False, False]), joint_names=JOINT_NAMES, rate_hz=10.0
    )
    assert main(["inspect", str(path)]) == 1
    assert "no transitions" in capsys.readouterr().out


def test_seed_and_aloha_layouts_with_camera_option(tmp_path, capsys):
    write_seed_file(
        tmp_path / "seed.hdf5", coded_episodes([2, 3], [True, False]), chw=True, two_d=True
    )
    cameras = {"left": "a", "right": "b", "global": "c"}
    write_aloha_file(tmp_path / "episode_0.hdf5", coded_episodes([4], [True])[0], cameras)
    mapping = ["--aloha-cameras", "left=a,right=b,global=c"]
    assert main(["inspect", str(tmp_path), *mapping]) == 1  # no success label: cannot train
    out = capsys.readouterr().out
    assert "NO SUCCESS LABEL" in out and "cannot train until 1 episode(s) are labelled" in out
    assert main(["inspect", str(tmp_path), *mapping, "--assume-success"]) == 0
    out = capsys.readouterr().out
    assert "[seed]" in out and "[aloha]" in out
    assert "/observations/images/c 16x16 HWC" in out
    assert "WARNING" in out and "timed-out episode" in out
    labels = tmp_path / "labels.yaml"
    labels.write_text("episode_0: false\n")
    assert main(["inspect", str(tmp_path), *mapping, "--labels", str(labels)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path)]) == 1  # cameras a, b, c: not a known naming
    assert "not a known ALOHA naming" in capsys.readouterr().out


def test_aloha_joint_names_and_rate_options(tmp_path, capsys):
    path = tmp_path / "episode_0.hdf5"
    episode = coded_episodes([4], [True])[0]
    episode.joint, episode.action = episode.joint[:, :14], episode.action[:, :14]
    write_aloha_file(path, episode, {"left": "left_wrist", "right": "right_wrist",
                                     "global": "top"}, success=True)
    names = [f"joint_{i}" for i in range(14)]
    options = ["--aloha-joint-names", ",".join(names), "--aloha-rate-hz", "20"]
    assert main(["inspect", str(path), *options]) == 0
    out = capsys.readouterr().out
    assert f"joint_names: {names}" in out and "rate_hz: 20.0, 0.2 s recorded" in out
    assert main(["inspect", str(path), "--aloha-joint-names", "a,b"]) == 1
    assert "--aloha-joint-names NAME,NAME,... (aloha_joint_names in config) has 2 names, " \
           "joints have 14" in capsys.readouterr().out
    for bad in (["--aloha-rate-hz", "-1"], ["--aloha-joint-names", "a,a"]):
        assert main(["inspect", str(path), *bad]) == 1
        error = capsys.readouterr().err
        assert error.startswith(f"error: {bad[0]} ") and error.count("\n") == 1


def test_usage_errors(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.hdf5")]) == 1
    assert "missing.hdf5: no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect"])
    assert exit_info.value.code == 2
    assert main(["inspect", str(tmp_path), "--aloha-cameras", "left"]) == 1


def test_runs_as_a_module(good_file):
    result = subprocess.run(
        [sys.executable, "-m", "lapo_ros.dataset.inspect", "inspect", str(good_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "the data can train" in result.stdout
