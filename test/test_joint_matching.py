"""The joint-by-name matcher shared by the node and the converter."""

import numpy as np
import pytest

from lapo_ros.common.joints import JointNameError, check_unique, duplicate_names, joint_index


def test_values_are_picked_by_name_in_the_wanted_order():
    index = joint_index(["c", "a", "b", "extra"], ["a", "b", "c"], "joint_states")
    assert np.array([30.0, 10.0, 20.0, 99.0])[index].tolist() == [10.0, 20.0, 30.0]


def test_repeated_names_are_rejected_naming_them_and_the_source():
    assert duplicate_names(["j0", "j1", "j0", "j2", "j1"]) == ["j0", "j1"]
    with pytest.raises(JointNameError, match=r"joint_states: joint name\(s\) \['j0'\]"):
        joint_index(["j0", "j1", "j2", "j3", "j0"], ["j0", "j1"], "joint_states")
    with pytest.raises(JointNameError, match="policy metadata"):
        check_unique(["a", "a"], "policy metadata")


def test_missing_names_are_listed_with_what_the_message_has():
    with pytest.raises(JointNameError, match=r"lacks joint\(s\) \['b'\]; it has \['a'\]"):
        joint_index(["a"], ["a", "b"], "/joint_states")
