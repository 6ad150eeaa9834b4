"""Scripted demonstrators for gym-aloha's two scenes, planned in joint space from the geometry.

Transfer cube: the right gripper, tilted ``pick_pitch_deg`` below horizontal with its fingers
closing along the table's y axis, comes down onto the cube along its own axis, closes, lifts
the cube to the hand-over point ``meet``; the left gripper comes in level from the left with
its fingers closing vertically, closes on the cube's top and bottom faces, and the right
gripper lets go.

Insertion: each gripper, tilted ``pick_pitch_deg``, takes its object by the middle from
above the table: the right one the red peg, turned towards its shoulder (the fingers square
the small peg to themselves as they close), the left one the blue socket with its fingers
along the table's y axis (the socket keeps its orientation). Both lift, the left arm holds the
socket at ``meet`` and the right arm turns the peg along the table's x axis, lines it up
``insert_standoff`` to the right of the socket and pushes it in until it touches the pin.

Each gripper pose is turned into joint angles by inverse kinematics (``kinematics``) every
``ik_stride`` steps along straight fingertip paths; the plan is the joint targets in between,
interpolated, so the demonstration is a sequence of 14 absolute joint position targets, as
the scene's position controllers (and ACT's recorded actions) take them. Unlike ACT's
mocap-driven experts, nothing is welded: the same environment serves demos and evaluation.

Kinds (heterogeneous quality for offline RL): ``expert``; ``noisy`` (joint targets with
Gaussian noise, the grasp point off by up to ``noisy_grasp_error``); ``wrong_grasp`` (the
right gripper closes ``wrong_grasp_offset`` beside the cube or peg); ``drop`` (the right
gripper opens while carrying the cube or peg).
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lapo_ros.sim.aloha.env import AlohaSimEnv
from lapo_ros.sim.aloha.kinematics import GripperPose, gripper_pose, joint_names, solve_arm
from lapo_ros.sim.aloha.scene import ARMS, JOINT_NAMES

EXPERT_KINDS = ("expert", "noisy", "wrong_grasp", "drop")
OPEN, CLOSED = 1.0, 0.0  # normalised gripper targets


@dataclass
class ScriptedExpertConfig:
    """Which demonstrator and what every task's planning shares; subclasses add the grasp
    geometry and the timeline (control steps at 50 Hz) and set the kinds' defaults."""

    kind: str = "expert"
    ik_stride: int = 5  # steps between inverse-kinematics solutions
    noise: float = 0.02  # noisy: std of the joint target noise (rad; normalised for grippers)
    noisy_grasp_error: float = 0.02  # noisy: grasp point error, uniform per axis (m)
    wrong_grasp_offset: float = 0.045  # wrong_grasp: closes this far beside the object (m, y)

    def __post_init__(self) -> None:
        if self.kind not in EXPERT_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(EXPERT_KINDS)}")
        if self.ik_stride < 1:
            raise ValueError(f"ik_stride must be >= 1, got {self.ik_stride}")

    @staticmethod
    def check_timeline(timeline: list[int]) -> None:
        """Key steps that increase from 1."""
        if any(b <= a for a, b in zip([0, *timeline], timeline, strict=False)):
            raise ValueError(f"the timeline steps must increase, got {timeline}")


@dataclass
class TransferCubeExpertConfig(ScriptedExpertConfig):
    """The transfer cube's grasp geometry and timeline."""

    pick_pitch_deg: float = 55.0  # right gripper's tilt below horizontal when picking
    grasp_depth: float = 0.01  # fingertip point beyond the cube's centre along the gripper (m)
    approach_distance: float = 0.08  # pre-grasp stand-off along the gripper axis (m)
    meet: tuple[float, float, float] = (0.0, 0.5, 0.25)  # cube centre at the hand-over (m)
    left_standoff: float = 0.1  # left gripper waits this far left of the hand-over (m)
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
    drop_step: int = 205  # drop: the right gripper opens at this step (lift_step..meet_step)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_timeline([
            self.pregrasp_step, self.grasp_step, self.close_step, self.lift_step,
            self.meet_step, self.left_grasp_step, self.left_close_step, self.release_step,
            self.retreat_step])
        if not 0 < self.left_wait_step < self.left_grasp_step:
            raise ValueError(f"left_wait_step must lie between 0 and left_grasp_step "
                             f"{self.left_grasp_step}, got {self.left_wait_step}")
        if not self.lift_step < self.drop_step < self.meet_step:
            raise ValueError(f"drop_step must lie between lift_step {self.lift_step} and "
                             f"meet_step {self.meet_step}, got {self.drop_step}")
        if self.release_step - 5 <= self.meet_step:
            raise ValueError(f"release_step must be > meet_step + 5, got {self.release_step}")


@dataclass
class InsertionExpertConfig(ScriptedExpertConfig):
    """The insertion's grasp geometry and timeline."""

    pick_pitch_deg: float = 70.0  # both grippers' tilt below horizontal
    approach_distance: float = 0.08  # pre-grasp stand-off along the gripper axis (m)
    lift_height: float = 0.08  # both objects rise this far above where they rest (m)
    meet: tuple[float, float, float] = (0.0, 0.5, 0.25)  # socket centre during insertion (m)
    insert_standoff: float = 0.1  # the peg lines up this far short of the pin (m, x)
    insert_depth: float = 0.015  # and is pushed this far past touching it (m)
    # timeline: the step each key pose is reached
    pregrasp_step: int = 60
    grasp_step: int = 100
    close_step: int = 125
    lift_step: int = 150
    align_step: int = 210
    hold_step: int = 330  # the peg is pushed in from align_step to here, then held
    # the other kinds: the peg enters the socket with 8 mm to spare, so noisy's joint noise
    # and grasp error are smaller than the transfer cube's (33 of 50 succeed)
    noise: float = 0.0075
    noisy_grasp_error: float = 0.005
    wrong_grasp_offset: float = 0.03
    drop_step: int = 180  # drop: the right gripper opens at this step (lift..align)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_timeline([
            self.pregrasp_step, self.grasp_step, self.close_step, self.lift_step,
            self.align_step, self.hold_step])
        if not self.lift_step < self.drop_step < self.align_step:
            raise ValueError(f"drop_step must lie between lift_step {self.lift_step} and "
                             f"align_step {self.align_step}, got {self.drop_step}")



@dataclass(frozen=True)
class KeyPose:
    """An arm's gripper pose and gripper target, reached at control step ``step``."""

    step: int
    pose: GripperPose
    gripper: float


class ScriptedExpert:
    """Plans a whole episode at ``reset`` from the true object poses; ``act(step)`` plays it.

    Subclasses set ``task`` (the scene they plan for) and provide ``key_poses()``: each arm's
    key poses for the episode the environment just started.
    """

    task: ClassVar[str]

    def __init__(self, env: AlohaSimEnv, config: ScriptedExpertConfig,
                 rng: np.random.Generator):
        if env.config.task != self.task:
            raise ValueError(f"{type(self).__name__} needs the {self.task} task, "
                             f"got {env.config.task!r}")
        self.env = env
        self.config = config
        self.rng = rng
        self.plan = np.empty((0, len(JOINT_NAMES)))

    def reset(self) -> np.ndarray:
        """Plan the episode the environment just started; returns the (steps, 14) targets."""
        keys = self.key_poses()
        columns = {arm: self._plan_arm(arm, keys[arm]) for arm in ARMS}
        self.plan = np.concatenate([columns["left"], columns["right"]], axis=1)
        return self.plan

    def act(self, step: int) -> np.ndarray:
        """The 14 joint targets for control step ``step`` (the last one held after the plan)."""
        target = self.plan[min(step, len(self.plan) - 1)].copy()
        if self.config.kind == "noisy":
            target += self.rng.normal(0.0, self.config.noise, target.shape)
        return target

    def key_poses(self) -> dict[str, list[KeyPose]]:
        raise NotImplementedError

    def rest_position(self, joint: str, bottom_geom: str) -> np.ndarray:
        """Where a free object rests: its placed x, y; z where ``bottom_geom`` meets the table."""
        model = self.env.physics.named.model
        position = self.env.physics.named.data.qpos[joint][:3].copy()
        position[2] = model.geom_size[bottom_geom][2] - model.geom_pos[bottom_geom][2]
        return position

    def _grasp_error(self) -> np.ndarray:
        """Where the right gripper closes relative to the object: beside it for
        ``wrong_grasp``, a uniform error per axis for ``noisy``."""
        c = self.config
        if c.kind == "wrong_grasp":
            return np.array([0.0, c.wrong_grasp_offset, 0.0])
        if c.kind == "noisy":
            return self.rng.uniform(-c.noisy_grasp_error, c.noisy_grasp_error, 3)
        return np.zeros(3)

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


class TransferCubeExpert(ScriptedExpert):
    """The right arm picks the cube and hands it over to the left arm in the air."""

    task = "transfer_cube"

    def key_poses(self) -> dict[str, list[KeyPose]]:
        """Each arm's key poses for the cube where it rests."""
        c = self.config
        cube = self.rest_position("red_box_joint", "red_box")
        physics = self.env.physics
        pitch = np.radians(c.pick_pitch_deg)
        down = np.array([-np.cos(pitch), 0.0, -np.sin(pitch)])  # right gripper, picking
        right_closing = gripper_pose(physics, "right").closing
        level = np.array([1.0, 0.0, 0.0])  # left gripper at the hand-over
        vertical = np.array([0.0, 0.0, 1.0])
        meet = np.asarray(c.meet, dtype=float)
        grasp_tip = cube + self._grasp_error() + down * c.grasp_depth
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

class InsertionExpert(ScriptedExpert):
    """Each arm takes its object, the left holds the socket up, the right pushes the peg in."""

    task = "insertion"

    def tilted(self, heading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pointing, closing) of a gripper heading along ``heading`` (xy), tilted down."""
        pitch = np.radians(self.config.pick_pitch_deg)
        h = heading[:2] / np.linalg.norm(heading[:2])
        return (np.array([h[0] * np.cos(pitch), h[1] * np.cos(pitch), -np.sin(pitch)]),
                np.array([-h[1], h[0], 0.0]))

    def key_poses(self) -> dict[str, list[KeyPose]]:
        """Each arm's key poses, fingertips on the objects' centres, for where they rest."""
        c = self.config
        physics = self.env.physics
        x, up = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, c.lift_height])
        peg = self.rest_position("red_peg_joint", "red_peg") + self._grasp_error()
        socket = self.rest_position("blue_socket_joint", "socket-1")
        meet = np.asarray(c.meet, dtype=float)
        # the peg's end touches the pin with its centre this far right of the socket's
        size = physics.named.model.geom_size
        touch = size["pin"][0] + size["red_peg"][0]
        shoulder = physics.named.data.xpos["vx300s_right/shoulder_link"]
        turned = self.tilted(peg - shoulder)  # towards the shoulder: the peg squares up
        level = self.tilted(-x)  # the peg along x, pointing at the socket
        square = self.tilted(x)  # the socket's grasp, fingers along y

        def pose(step: int, tip: np.ndarray, heading: tuple, gripper: float) -> KeyPose:
            return KeyPose(step, GripperPose(tip, *heading), gripper)

        right_keys = [
            pose(c.pregrasp_step, peg - turned[0] * c.approach_distance, turned, OPEN),
            pose(c.grasp_step, peg, turned, OPEN),
            pose(c.close_step, peg, turned, CLOSED),
            pose(c.lift_step, peg + up, turned, CLOSED),
        ]
        held = CLOSED
        if c.kind == "drop":  # lets go on the way to the socket
            right_keys.append(pose(c.drop_step, peg + 1.5 * up, turned, OPEN))
            held = OPEN
        inserted = meet + x * (touch - c.insert_depth)
        right_keys += [
            pose(c.align_step, meet + x * (touch + c.insert_standoff), level, held),
            pose(c.hold_step, inserted, level, held),
        ]
        left_keys = [
            pose(c.pregrasp_step, socket - square[0] * c.approach_distance, square, OPEN),
            pose(c.grasp_step, socket, square, OPEN),
            pose(c.close_step, socket, square, CLOSED),
            pose(c.lift_step, socket + up, square, CLOSED),
            pose(c.align_step, meet, square, CLOSED),
            pose(c.hold_step, meet, square, CLOSED),
        ]
        return {"left": left_keys, "right": right_keys}


EXPERTS = {"transfer_cube": (TransferCubeExpert, TransferCubeExpertConfig),
           "insertion": (InsertionExpert, InsertionExpertConfig)}
"""Task -> (scripted expert, its config)."""


def make_expert(env: AlohaSimEnv, kind: str, rng: np.random.Generator) -> ScriptedExpert:
    """The scripted demonstrator of ``kind`` for the task ``env`` runs."""
    expert_class, config_class = EXPERTS[env.config.task]
    return expert_class(env, config_class(kind=kind), rng)


def _blend(start: GripperPose, end: GripperPose, fraction: float) -> GripperPose:
    """The pose ``fraction`` of the way from ``start`` to ``end`` (straight fingertip path)."""
    def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        vector = (1.0 - fraction) * a + fraction * b
        return vector / np.linalg.norm(vector)

    return GripperPose(tip=(1.0 - fraction) * start.tip + fraction * end.tip,
                       pointing=mix(start.pointing, end.pointing),
                       closing=mix(start.closing, end.closing))
