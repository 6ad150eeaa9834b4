"""The atomic HDF5 episode writer: whole files or none, with the permissions a user expects."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from hdf5_test_data import JOINT_NAMES, coded_episodes

from lapo_ros.dataset.layout import DatasetWriteError, write_episodes


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def write(path, lengths=(3, 2), **kwargs):
    episodes = coded_episodes(list(lengths), [True] * len(lengths))
    return write_episodes(path, episodes, joint_names=JOINT_NAMES, rate_hz=10.0, **kwargs)


def mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_file_gets_the_permissions_of_the_umask(tmp_path, umask_027):
    write(tmp_path / "data.hdf5")
    assert mode(tmp_path / "data.hdf5") == 0o640  # 0666 less the umask, not mkstemp's 0600


@pytest.mark.parametrize("append", [False, True])
def test_a_replaced_or_extended_file_keeps_its_permissions(tmp_path, umask_027, append):
    path = tmp_path / "data.hdf5"
    write(path)
    path.chmod(0o664)
    write(path, (4,), append=append)
    assert mode(path) == 0o664
    with h5py.File(path) as h5:
        assert h5["episode_ends"][:].tolist() == ([3, 5, 9] if append else [4])


def test_the_file_holds_no_reserved_space_beyond_its_data(tmp_path):
    path = tmp_path / "data.hdf5"
    episodes = coded_episodes([40, 60], [True, False], size=64)
    write_episodes(path, episodes, joint_names=JOINT_NAMES, rate_hz=10.0)
    data = sum(e.nbytes for e in episodes)
    assert data < path.stat().st_size < data * 1.05  # the 1 MiB per episode was given back
    with h5py.File(path) as h5:
        assert np.array_equal(h5["observations/left_image"][-1], episodes[1].left_image[-1])


def test_episodes_without_joint_or_action_values_are_refused(tmp_path):
    [episode] = coded_episodes([3], [True])
    episode.action = np.zeros((3, 0), np.float32)
    with pytest.raises(DatasetWriteError, match=r"episode 0: /actions must be \(T,D\) with D >= 1"):
        write_episodes(tmp_path / "data.hdf5", [episode], joint_names=JOINT_NAMES, rate_hz=10.0)
    assert os.listdir(tmp_path) == []
