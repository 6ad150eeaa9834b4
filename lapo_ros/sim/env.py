"""Gymnasium-like environment of the simulated dual arm: ``reset(seed)`` / ``step(command)``.

Observations are what the robot's sensors give: three HxWx3 uint8 RGB images (left wrist,
right wrist, global) and the 16 joint positions. A command is 16 joint position targets;
each step the arm moves towards it by at most ``max_step`` per joint (the controller's
per-step change limit). Deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.sim.dual_arm import (
    ARMS,
    GRIPPER_INDICES,
    JOINT_NAMES,
    NUM_JOINTS,
    ArmGeometry,
    ArmPose,
    arm_slice,
    forward_kinematics,
    gripper_index,
    joint_limits,
    reach_ik,
    track_command,
)
from lapo_ros.sim.rendering import GLOBAL_CAMERA, SceneRenderer, wrist_camera
from lapo_ros.sim.task import ReachTask, TargetLayout, TaskConfig

Observation = dict[str, np.ndarray]  # 'left', 'right', 'global' images and 'joint'


class InvalidCommandError(ValueError):
    """A command the simulated controller rejects (wrong size, NaN or inf)."""


@dataclass
class SimConfig:
    """Everything that defines the simulated scene and its controller."""

    image_size: tuple[int, int] = (64, 64)  # (height, width) of each camera
    rate_hz: float = 10.0  # control rate; one step is 1/rate_hz seconds
    max_steps: int = 80  # episode length limit (truncation)
    max_joint_step: float = 0.05  # rad per step, revolute joints
    max_gripper_step: float = 0.01  # m per step
    home_tip: tuple[float, float] = (0.22, 0.30)  # fingertip (forward, height) at home
    home_gripper: float = 0.04
    geometry: ArmGeometry = field(default_factory=ArmGeometry)
    task: TaskConfig = field(default_factory=TaskConfig)

    def max_step(self) -> np.ndarray:
        step = np.full(NUM_JOINTS, self.max_joint_step)
        step[list(GRIPPER_INDICES)] = self.max_gripper_step
        return step


class DualArmReachEnv:
    """Two 7-joint arms with grippers, three cameras, and the red-target reach task."""

    joint_names = JOINT_NAMES

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.task = ReachTask(self.config.task)
        self.renderer = SceneRenderer(self.config.image_size)
        self.lower, self.upper = joint_limits()
        self._max_step = self.config.max_step()
        self.home = self._home_joints()
        self.joints = self.home.copy()
        self.layout: TargetLayout | None = None
        self.steps = 0
        self._distance = 0.0
        self._done = True

    def _home_joints(self) -> np.ndarray:
        c = self.config
        joints = np.zeros(NUM_JOINTS)
        for arm in ARMS:
            base_x, base_y = c.geometry.bases[arm]
            tip = np.array([base_x, base_y + c.home_tip[0], c.home_tip[1]])
            joints[arm_slice(arm)] = reach_ik(tip, arm, c.geometry)
            joints[gripper_index(arm)] = c.home_gripper
        return joints

    def reset(self, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        """Home pose, new target layout drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        self.layout = self.task.sample_layout(rng)
        self.joints = self.home.copy()
        self.steps = 0
        self._distance = self.task.goal_distance(self.layout, self._tips())
        self._done = False
        return self.observe(), self._info(success=False, failure=False)

    def step(self, command: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply one joint position command; return (obs, reward, terminated, truncated, info)."""
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        command = np.asarray(command, dtype=np.float64)
        if command.shape != (NUM_JOINTS,):
            raise InvalidCommandError(
                f"command must have {NUM_JOINTS} joint positions ({', '.join(JOINT_NAMES)}), "
                f"got shape {command.shape}")
        if not np.all(np.isfinite(command)):
            bad = [JOINT_NAMES[i] for i in np.flatnonzero(~np.isfinite(command))]
            raise InvalidCommandError(f"command is NaN or inf for {', '.join(bad)}")
        self.joints = track_command(self.joints, command, self._max_step, self.lower, self.upper)
        self.steps += 1
        outcome = self.task.score(self.layout, self._tips(), self._distance)
        self._distance = outcome.goal_distance
        terminated = outcome.success or outcome.failure
        truncated = not terminated and self.steps >= self.config.max_steps
        self._done = terminated or truncated
        info = self._info(success=outcome.success, failure=outcome.failure)
        return self.observe(), outcome.reward, terminated, truncated, info

    def poses(self) -> dict[str, ArmPose]:
        return {arm: forward_kinematics(self.joints, arm, self.config.geometry) for arm in ARMS}

    def _tips(self) -> list[np.ndarray]:
        return [pose.tip for pose in self.poses().values()]

    def observe(self) -> Observation:
        """Current camera images (CAMERA_ORDER keys) and joint positions ('joint')."""
        poses = self.poses()
        discs = self.task.discs(self.layout)
        cameras = {"left": wrist_camera(poses["left"]), "right": wrist_camera(poses["right"]),
                   "global": GLOBAL_CAMERA}
        obs = {name: self.renderer.render(cameras[name], poses, discs) for name in CAMERA_ORDER}
        obs["joint"] = self.joints.astype(np.float32)
        return obs

    def _info(self, *, success: bool, failure: bool) -> dict[str, Any]:
        return {"success": success, "failure": failure, "goal_distance": self._distance,
                "goal_arm": self.layout.goal_arm, "steps": self.steps}
