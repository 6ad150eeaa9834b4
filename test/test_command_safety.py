"""Safety limits hold for any policy output and joint state (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lapo_ros.robot.command_safety import CommandLimits, UnsafeCommand, safe_command

NAMES = ["a", "b", "c"]
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)
anything = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def cases(draw):
    count = draw(st.integers(1, 6))
    vec = hnp.arrays(np.float64, count, elements=finite)
    lower = draw(vec)
    upper = lower + draw(hnp.arrays(np.float64, count, elements=st.floats(0, 5)))
    max_step = draw(hnp.arrays(np.float64, count, elements=st.floats(1e-4, 2)))
    limits = CommandLimits.from_parameters([f"j{i}" for i in range(count)], lower, upper, max_step)
    action = draw(hnp.arrays(np.float64, count, elements=anything | finite))
    current = draw(hnp.arrays(np.float64, count, elements=finite))
    return limits, action, current


@settings(max_examples=400, deadline=None)
@given(cases())
def test_limits_and_step_always_hold(case):
    limits, action, current = case
    try:
        command = safe_command(action, current, limits)
    except UnsafeCommand as error:
        if error.reason == "nonfinite_action":
            assert not np.all(np.isfinite(action))
        else:
            assert error.reason == "joint_outside_limits"
            low = np.maximum(limits.lower, current - limits.max_step)
            high = np.minimum(limits.upper, current + limits.max_step)
            assert np.any(low > high)
        return
    assert np.all(np.isfinite(command))
    assert np.all(command >= limits.lower) and np.all(command <= limits.upper)
    assert np.all(command >= current - limits.max_step)
    assert np.all(command <= current + limits.max_step)
    inside = (action >= np.maximum(limits.lower, current - limits.max_step)) & (
        action <= np.minimum(limits.upper, current + limits.max_step)
    )
    np.testing.assert_array_equal(command[inside], action[inside])


def test_step_is_relative_to_the_current_position():
    limits = CommandLimits.from_parameters(NAMES, [-1] * 3, [1] * 3, [0.1])
    command = safe_command(np.array([0.9, -0.9, 0.31]), np.array([0.0, 0.0, 0.3]), limits)
    np.testing.assert_allclose(command, [0.1, -0.1, 0.31])


def test_limits_clamp_even_within_one_step():
    limits = CommandLimits.from_parameters(NAMES, [-1, -1, 0], [1, 1, 0.5], [10])
    command = safe_command(np.array([5.0, -5.0, 0.7]), np.zeros(3), limits)
    np.testing.assert_allclose(command, [1, -1, 0.5])


def test_joint_far_outside_limits_gives_no_command():
    limits = CommandLimits.from_parameters(NAMES, [-1] * 3, [1] * 3, [0.1])
    with pytest.raises(UnsafeCommand) as caught:
        safe_command(np.zeros(3), np.array([0.0, 1.5, 0.0]), limits)
    assert caught.value.reason == "joint_outside_limits"
    # slightly outside: one step back inside is allowed
    command = safe_command(np.zeros(3), np.array([0.0, 1.05, 0.0]), limits)
    np.testing.assert_allclose(command, [0.0, 0.95, 0.0])


@pytest.mark.parametrize(
    ("action", "current", "reason"),
    [
        ([np.nan, 0, 0], [0, 0, 0], "nonfinite_action"),
        ([np.inf, 0, 0], [0, 0, 0], "nonfinite_action"),
        ([0, 0, 0], [0, np.nan, 0], "nonfinite_joint"),
        ([0, 0], [0, 0, 0], "wrong_action_size"),
    ],
)
def test_bad_values_are_refused(action, current, reason):
    limits = CommandLimits.from_parameters(NAMES, [-1] * 3, [1] * 3, [0.1])
    with pytest.raises(UnsafeCommand) as caught:
        safe_command(np.array(action, float), np.array(current, float), limits)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("lower", "upper", "step", "message"),
    [
        ([-1, -1], [1, 1, 1], [0.1], "'joint_lower_limits' has 2 values, expected 3"),
        ([-1] * 3, [1] * 3, [0.1, 0.2], "'max_step' has 2 values"),
        ([-1, 2, -1], [1] * 3, [0.1], "'joint_lower_limits' exceeds .* for joints b"),
        ([-1] * 3, [1, 1, np.nan], [0.1], "'joint_upper_limits' must be finite"),
        ([-1] * 3, [1] * 3, [0.0], "'max_step' must be > 0"),
    ],
)
def test_bad_limit_parameters_name_the_parameter(lower, upper, step, message):
    with pytest.raises(ValueError, match=message):
        CommandLimits.from_parameters(NAMES, lower, upper, step)
