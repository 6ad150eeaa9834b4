"""Scripted transfer-cube demonstrators planned in joint space from the task's geometry.

The right gripper, tilted ``pick_pitch_deg`` below horizontal with its fingers closing along
the table's y axis, comes down onto the cube along its own axis, closes, lifts the cube to
the hand-over point ``meet``; the left gripper comes in level from the left with its fingers
closing vertically, closes on the cube's top and bottom faces, and the right gripper lets go.
Each gripper pose is turned into joint angles by inverse kinematics (``kinematics``) every
``ik_stride`` steps along straight fingertip paths; the plan is the joint targets in between,
interpolated, so the demonstration is a sequence of 14 absolute joint position targets, as
the scene's position controllers (and ACT's recorded actions) take them. Unlike ACT's
mocap-driven expert, nothing is welded: the same environment serves demos and evaluation.

Kinds (heterogeneous quality for offline RL): ``expert``; ``noisy`` (joint targets with
Gaussian noise, the grasp point off by up to ``noisy_grasp_error``); ``wrong_grasp`` (the
right gripper closes ``wrong_grasp_offset`` beside the cube); ``drop`` (the right gripper
opens while carrying the cube to the hand-over).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lapo_ros.sim.aloha.env import AlohaSimEnv
from lapo_ros.sim.aloha.kinematics import GripperPose, gripper_pose, joint_names, solve_arm
from lapo_ros.sim.aloha.scene import ARMS, JOINT_NAMES

EXPERT_KINDS = ("expert", "noisy", "wrong_grasp", "drop")
OPEN, CLOSED = 1.0, 0.0  # normalised gripper targets


@dataclass
class TransferCubeExpertConfig:
    """Which demonstrator, the grasp geometry and the timeline (control steps at 50 Hz)."""

    kind: str = "expert"
    pick_pitch_deg: float = 55.0  # right gripper's tilt below horizontal when picking
    grasp_depth: float = 0.01  # fingertip point beyond the cube's centre along the gripper (m)
    approach_distance: float = 0.08  # pre-grasp stand-off along the gripper axis (m)
    meet: tuple[float, float, float] = (0.0, 0.5, 0.25)  # cube centre at the hand-over (m)
    left_standoff: float = 0.1  # left gripper waits this far left of the hand-over (m)
    ik_stride: int = 5  # steps between inverse-kinematics solutions
    # timeline: the step each key pose is reached
    pregrasp_step: int = 60
    grasp_step: int = 100
    close_step: int = 125
    lift_step: int = 190
    meet_step: int = 220
    left_wait_step: int = 150
    left_grasp_step: int = 265
    left_close_step: int = 290
    release_step: int = 315
    retreat_step: int = 360
    # the other kinds
    noise: float = 0.02  # noisy: std of the joint target noise (rad; normalised for grippers)
    noisy_grasp_error: float = 0.02  # noisy: grasp point error, uniform per axis (m)
    wrong_grasp_offset: float = 0.045  # wrong_grasp: closes this far beside the cube (m, y)
    drop_step: int = 205  # drop: the right gripper opens at this step (lift_step..meet_step)

    def __post_init__(self) -> None:
        if self.kind not in EXPERT_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(EXPERT_KINDS)}")
        if self.ik_stride < 1:
            raise ValueError(f"ik_stride must be >= 1, got {self.ik_stride}")
        timeline = [self.pregrasp_step, self.grasp_step, self.close_step, self.lift_step,
                    self.meet_step, self.left_grasp_step, self.left_close_step,
                    self.release_step, self.retreat_step]
        if any(b <= a for a, b in zip([0, *timeline], timeline, strict=False)) or not (
                0 < self.left_wait_step < self.left_grasp_step):
            raise ValueError(f"the timeline steps must increase, got {timeline} "
                             f"(left_wait_step {self.left_wait_step})")
        if not self.lift_step < self.drop_step < self.meet_step:
            raise ValueError(f"drop_step must lie between lift_step {self.lift_step} and "
                             f"meet_step {self.meet_step}, got {self.drop_step}")
        if self.release_step - 5 <= self.meet_step:
            raise ValueError(f"release_step must be > meet_step + 5, got {self.release_step}")


@dataclass(frozen=True)
class KeyPose:
    """An arm's gripper pose and gripper target, reached at control step ``step``."""

    step: int
    pose: GripperPose
    gripper: float


class TransferCubeExpert:
    """Plans a whole episode at ``reset`` from the true cube position; ``act(step)`` plays it."""

    def __init__(self, env: AlohaSimEnv, config: TransferCubeExpertConfig,
                 rng: np.random.Generator):
        if env.config.task != "transfer_cube":
            raise ValueError(f"TransferCubeExpert needs the transfer_cube task, "
                             f"got {env.config.task!r}")
        self.env = env
        self.config = config
        self.rng = rng
        self.plan = np.empty((0, len(JOINT_NAMES)))

    def reset(self) -> np.ndarray:
        """Plan the episode the environment just started; returns the (steps, 14) targets."""
        keys = self.key_poses(self.cube_position())
        columns = {arm: self._plan_arm(arm, keys[arm]) for arm in ARMS}
        self.plan = np.concatenate([columns["left"], columns["right"]], axis=1)
        return self.plan

    def act(self, step: int) -> np.ndarray:
        """The 14 joint targets for control step ``step`` (the last one held after the plan)."""
        target = self.plan[min(step, len(self.plan) - 1)].copy()
        if self.config.kind == "noisy":
            target += self.rng.normal(0.0, self.config.noise, target.shape)
        return target

    def cube_position(self) -> np.ndarray:
        """Where the cube rests: its placed x, y on the table, z at its half height."""
        physics = self.env.physics
        position = physics.named.data.qpos["red_box_joint"][:3].copy()
        position[2] = physics.named.model.geom_size["red_box"][2]
        return position

    def key_poses(self, cube: np.ndarray) -> dict[str, list[KeyPose]]:
        """Each arm's key poses for a cube resting at ``cube``."""
        c = self.config
        physics = self.env.physics
        pitch = np.radians(c.pick_pitch_deg)
        down = np.array([-np.cos(pitch), 0.0, -np.sin(pitch)])  # right gripper, picking
        right_closing = gripper_pose(physics, "right").closing
        level = np.array([1.0, 0.0, 0.0])  # left gripper at the hand-over
        vertical = np.array([0.0, 0.0, 1.0])
        meet = np.asarray(c.meet, dtype=float)
        grasp = cube.copy()
        if c.kind == "wrong_grasp":
            grasp[1] += c.wrong_grasp_offset
        elif c.kind == "noisy":
            grasp += self.rng.uniform(-c.noisy_grasp_error, c.noisy_grasp_error, 3)
        grasp_tip = grasp + down * c.grasp_depth
        carried_tip = meet + down * c.grasp_depth

        def right(step: int, tip: np.ndarray, gripper: float) -> KeyPose:
            return KeyPose(step, GripperPose(tip, down, right_closing), gripper)

        def left(step: int, tip: np.ndarray, gripper: float) -> KeyPose:
            return KeyPose(step, GripperPose(tip, level, vertical), gripper)

        right_keys = [
            right(c.pregrasp_step, grasp_tip - down * c.approach_distance, OPEN),
            right(c.grasp_step, grasp_tip, OPEN),
            right(c.close_step, grasp_tip, CLOSED),
            right(c.lift_step, carried_tip + np.array([0.05, 0.0, 0.0]), CLOSED),
        ]
        held = CLOSED
        if c.kind == "drop":  # lets go on the way to the hand-over
            right_keys.append(right(c.drop_step, carried_tip + np.array([0.02, 0.0, 0.0]), OPEN))
            held = OPEN
        right_keys += [
            right(c.meet_step, carried_tip, held),
            right(c.release_step - 5, carried_tip, held),  # opens over the last 5 steps
            right(c.release_step, carried_tip, OPEN),
            right(c.retreat_step, carried_tip + np.array([0.1, 0.0, 0.0]), OPEN),
        ]
        left_tip = meet + level * c.grasp_depth
        left_keys = [
            left(c.left_wait_step, left_tip - level * c.left_standoff, OPEN),
            left(c.left_grasp_step, left_tip, OPEN),
            left(c.left_close_step, left_tip, CLOSED),
            left(c.retreat_step, left_tip - level * c.left_standoff, CLOSED),
        ]
        return {"left": left_keys, "right": right_keys}

    def _plan_arm(self, arm: str, keys: list[KeyPose]) -> np.ndarray:
        """(steps, 7) joint targets of ``arm`` through its key poses, from where it is now."""
        physics = self.env.physics
        gripper_column = JOINT_NAMES.index(f"{arm}_arm_gripper")
        joints = physics.named.data.qpos[joint_names(arm)].copy()
        start = KeyPose(0, gripper_pose(physics, arm), float(self.env.joints[gripper_column]))
        knots_step, knots_joints = [0], [np.append(joints, start.gripper)]
        for before, after in zip([start, *keys], keys, strict=False):
            span = after.step - before.step
            for step in [*range(before.step + self.config.ik_stride, after.step,
                                self.config.ik_stride), after.step]:
                fraction = (step - before.step) / span
                joints = solve_arm(physics, arm, _blend(before.pose, after.pose, fraction),
                                   joints)
                gripper = before.gripper + fraction * (after.gripper - before.gripper)
                knots_step.append(step)
                knots_joints.append(np.append(joints, gripper))
        knots = np.array(knots_joints)
        steps = np.arange(1, knots_step[-1] + 1)
        return np.column_stack([np.interp(steps, knots_step, knots[:, j])
                                for j in range(knots.shape[1])])


def _blend(start: GripperPose, end: GripperPose, fraction: float) -> GripperPose:
    """The pose ``fraction`` of the way from ``start`` to ``end`` (straight fingertip path)."""
    def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        vector = (1.0 - fraction) * a + fraction * b
        return vector / np.linalg.norm(vector)

    return GripperPose(tip=(1.0 - fraction) * start.tip + fraction * end.tip,
                       pointing=mix(start.pointing, end.pointing),
                       closing=mix(start.closing, end.closing))
