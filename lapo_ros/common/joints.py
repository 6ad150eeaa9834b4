"""Joint values matched by name: the one matcher ``policy_node`` and ``bag_to_hdf5`` share.

ROS joint messages (JointState, JointTrajectory) carry names beside the values, in any
order and often with more joints than a policy uses. Values are picked by name, never by
position, and a message whose names repeat is rejected: with ``[j0, j1, j0]`` there is no
telling which ``j0`` the robot meant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


class JointNameError(ValueError):
    """Joint names that cannot be matched: repeated, missing, or more names than values."""


def duplicate_names(names: Sequence[str]) -> list[str]:
    """The names that occur more than once, in order of first occurrence."""
    counts = Counter(names)
    return [name for name in dict.fromkeys(names) if counts[name] > 1]


def check_unique(names: Sequence[str], where: str) -> None:
    """Raise ``JointNameError`` naming ``where`` when a joint name repeats."""
    repeated = duplicate_names(names)
    if repeated:
        raise JointNameError(f"{where}: joint name(s) {repeated} occur more than once")


def joint_index(available: Sequence[str], wanted: Sequence[str], where: str) -> np.ndarray:
    """Positions of ``wanted`` in ``available`` (int64), so ``values[index]`` is in the
    ``wanted`` order. Raises ``JointNameError`` naming ``where`` when ``available`` repeats
    a name or lacks one of ``wanted``."""
    check_unique(available, where)
    position = {name: i for i, name in enumerate(available)}
    missing = [name for name in wanted if name not in position]
    if missing:
        raise JointNameError(f"{where}: lacks joint(s) {missing}; it has {list(available)}")
    return np.array([position[name] for name in wanted], dtype=np.int64)
