"""Safety limits on joint commands: pure numpy, no ROS, no torch.

A command leaves the policy node only through ``safe_command``: finite, inside the
per-joint position limits, and within ``max_step`` of the CURRENT joint position.
When no such command exists, it raises ``UnsafeCommand`` with a short reason that the
node counts as a skipped tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class UnsafeCommand(Exception):
    """No safe command can be made this tick; ``reason`` is a short snake_case tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class CommandLimits:
    """Per-joint position limits and maximum change per control tick (robot units)."""

    lower: np.ndarray
    upper: np.ndarray
    max_step: np.ndarray

    @classmethod
    def from_parameters(
        cls,
        joint_names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_step: Sequence[float],
        *,
        names: tuple[str, str, str] = ("joint_lower_limits", "joint_upper_limits", "max_step"),
    ) -> CommandLimits:
        """Validate limit lists against the commanded joints.

        ``max_step`` may hold one value for all joints. Raises ``ValueError`` naming the
        parameter (``names``) that is wrong.
        """
        count = len(joint_names)
        lower_name, upper_name, step_name = names
        arrays = []
        for name, values in ((lower_name, lower), (upper_name, upper), (step_name, max_step)):
            array = np.asarray(list(values), dtype=np.float64)
            if array.size == 0:
                raise ValueError(
                    f"parameter {name!r} is required: one value per commanded joint "
                    f"({', '.join(joint_names)})"
                )
            if name == step_name and array.size == 1:
                array = np.full(count, array[0])
            if array.shape != (count,):
                raise ValueError(
                    f"parameter {name!r} has {array.size} values, expected {count} "
                    f"(one per commanded joint: {', '.join(joint_names)})"
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"parameter {name!r} must be finite, got {array.tolist()}")
            arrays.append(array)
        lower_array, upper_array, step_array = arrays
        bad = [joint_names[i] for i in np.flatnonzero(lower_array > upper_array)]
        if bad:
            raise ValueError(
                f"parameter {lower_name!r} exceeds {upper_name!r} for joints {', '.join(bad)}"
            )
        if np.any(step_array <= 0):
            raise ValueError(f"parameter {step_name!r} must be > 0, got {step_array.tolist()}")
        for array in arrays:
            array.setflags(write=False)
        return cls(lower_array, upper_array, step_array)


def safe_command(action: np.ndarray, current: np.ndarray, limits: CommandLimits) -> np.ndarray:
    """The policy's ``action`` made safe, as float64; raises ``UnsafeCommand`` when impossible.

    The result lies in [lower, upper] and in [current - max_step, current + max_step].
    If the current position is so far outside the limits that both cannot hold, no
    command is safe (``joint_outside_limits``): the operator must move the arm back.
    """
    action = np.asarray(action, dtype=np.float64).reshape(-1)
    current = np.asarray(current, dtype=np.float64).reshape(-1)
    if action.shape != limits.lower.shape:
        raise UnsafeCommand(
            "wrong_action_size", f"policy gave {action.size} values for {limits.lower.size} joints"
        )
    if not np.all(np.isfinite(action)):
        raise UnsafeCommand("nonfinite_action", f"policy output {action.tolist()}")
    if current.shape != limits.lower.shape or not np.all(np.isfinite(current)):
        raise UnsafeCommand("nonfinite_joint", f"current position {current.tolist()}")
    low = np.maximum(limits.lower, current - limits.max_step)
    high = np.minimum(limits.upper, current + limits.max_step)
    if np.any(low > high):
        raise UnsafeCommand(
            "joint_outside_limits",
            f"joints {np.flatnonzero(low > high).tolist()} are more than max_step outside "
            "their limits",
        )
    return np.clip(action, low, high)
