"""Scripted demonstrators with privileged access to the target layout.

``expert`` reaches the red target with the arm on its side; ``noisy`` does the same with
jittery, hesitant commands; ``wrong_target`` reaches the blue target instead (same arm). Commands
move in a straight joint-space line, as fast as the per-step change limit allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lapo_ros.sim.dual_arm import arm_slice, gripper_index, reach_ik
from lapo_ros.sim.env import DualArmReachEnv

DEMONSTRATOR_KINDS = ("expert", "noisy", "wrong_target")


@dataclass
class DemonstratorConfig:
    """Which demonstrator, and how noisy the ``noisy`` one is."""

    kind: str = "expert"
    noise: float = 0.6  # noisy: command noise, in units of the per-step change limit
    hesitation: float = 0.15  # noisy: probability of repeating the current position
    approach_height: float = 0.015  # fingertip aim above the target's top (m)


class ScriptedDemonstrator:
    """Computes the next 16-dim command from the environment's true state."""

    def __init__(self, env: DualArmReachEnv, config: DemonstratorConfig,
                 rng: np.random.Generator):
        if config.kind not in DEMONSTRATOR_KINDS:
            raise ValueError(f"demonstrator kind {config.kind!r} is not one of "
                             f"{', '.join(DEMONSTRATOR_KINDS)}")
        self.env = env
        self.config = config
        self.rng = rng
        self._goal_joints: np.ndarray | None = None

    def reset(self) -> None:
        """Plan the goal configuration for the episode the environment just started."""
        env, c = self.env, self.config
        layout = env.layout
        target = layout.distractor if c.kind == "wrong_target" else layout.goal
        arm = layout.goal_arm  # both targets lie on this arm's side
        goal = env.home.copy()
        aim = target + np.array([0.0, 0.0, c.approach_height])
        goal[arm_slice(arm)] = reach_ik(aim, arm, env.config.geometry)
        gripper = gripper_index(arm)
        goal[gripper] = env.upper[gripper]  # open the gripper of the reaching arm
        self._goal_joints = goal

    def act(self, joints: np.ndarray) -> np.ndarray:
        """The 16-dim position command for the current ``joints``."""
        c = self.config
        max_step = self.env.config.max_step()
        command = self._goal_joints.copy()
        if c.kind == "noisy":
            if self.rng.random() < c.hesitation:
                command = joints.copy()
            command = command + self.rng.normal(0.0, c.noise, joints.shape) * max_step
        return np.clip(command, self.env.lower, self.env.upper)
