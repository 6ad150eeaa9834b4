"""Kinematics of the simulated dual arm: two 7-joint arms with a parallel gripper each.

World frame: x to the robot's right, y forward over the table, z up; the table top is
z = 0. Each arm is yaw, then three (pitch, roll) pairs; with the roll joints at zero the
arm moves in one vertical plane, which gives the scripted experts a closed-form IK.
Joint state and command are 16-dim: ``left_joint1..7, right_joint1..7, left_gripper,
right_gripper`` (radians; gripper opening in metres). numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ARMS = ("left", "right")
ARM_JOINTS = 7
JOINT_NAMES = tuple(f"{arm}_joint{i}" for arm in ARMS for i in range(1, ARM_JOINTS + 1)) + tuple(
    f"{arm}_gripper" for arm in ARMS)
NUM_JOINTS = len(JOINT_NAMES)
GRIPPER_INDICES = (14, 15)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _pitch(angle: float) -> np.ndarray:
    """Rotation about the local x axis that tilts the local +z axis towards local +y."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


@dataclass
class ArmGeometry:
    """Link lengths (m) shared by both arms and the base position of each."""

    shoulder_height: float = 0.30
    upper_arm: float = 0.40
    forearm: float = 0.35
    hand: float = 0.10  # wrist to fingertip
    bases: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"left": (-0.30, 0.0), "right": (0.30, 0.0)}
    )


@dataclass
class ArmPose:
    """Forward kinematics of one arm: joint positions along the chain and the hand frame."""

    points: np.ndarray  # (5,3): base, shoulder, elbow, wrist, fingertip
    hand_rotation: np.ndarray  # (3,3): columns are the hand's x, y, z (z along the fingers)
    gripper: float

    @property
    def tip(self) -> np.ndarray:
        return self.points[-1]

    @property
    def wrist(self) -> np.ndarray:
        return self.points[-2]


def joint_limits() -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) position limits of the 16 joints."""
    arm_low = [-1.6, -1.0, -np.pi, 0.0, -np.pi, -0.5, -np.pi]
    arm_high = [1.6, 2.0, np.pi, 2.9, np.pi, 3.1, np.pi]
    return np.array(arm_low * 2 + [0.0, 0.0]), np.array(arm_high * 2 + [0.08, 0.08])


def arm_slice(arm: str) -> slice:
    """Indices of ``arm``'s seven revolute joints in the 16-dim joint vector."""
    start = ARMS.index(arm) * ARM_JOINTS
    return slice(start, start + ARM_JOINTS)


def gripper_index(arm: str) -> int:
    return GRIPPER_INDICES[ARMS.index(arm)]


def forward_kinematics(joints: np.ndarray, arm: str, geometry: ArmGeometry) -> ArmPose:
    """Positions of one arm's base, shoulder, elbow, wrist and fingertip for ``joints`` (16,)."""
    q = joints[arm_slice(arm)]
    base = np.array([*geometry.bases[arm], 0.0])
    rotation = _rot_z(q[0])
    shoulder = base + rotation @ np.array([0.0, 0.0, geometry.shoulder_height])
    points = [base, shoulder]
    for pitch, roll, length in ((q[1], q[2], geometry.upper_arm),
                                (q[3], q[4], geometry.forearm),
                                (q[5], q[6], geometry.hand)):
        rotation = rotation @ _pitch(pitch) @ _rot_z(roll)
        points.append(points[-1] + rotation[:, 2] * length)
    return ArmPose(points=np.array(points), hand_rotation=rotation,
                   gripper=float(joints[gripper_index(arm)]))


def reach_ik(target: np.ndarray, arm: str, geometry: ArmGeometry) -> np.ndarray:
    """Joint angles (7,) that put ``arm``'s fingertip on ``target`` with the hand pointing down.

    Closed form with the roll joints at zero and the elbow up; targets out of reach are
    pulled onto the reachable sphere.
    """
    base = np.array([*geometry.bases[arm], 0.0])
    dx, dy = target[0] - base[0], target[1] - base[1]
    yaw = np.arctan2(-dx, dy)
    radial = np.hypot(dx, dy)
    # wrist above the fingertip; plane coordinates relative to the shoulder
    wr, wz = radial, target[2] + geometry.hand - geometry.shoulder_height
    a, b = geometry.upper_arm, geometry.forearm
    distance = np.clip(np.hypot(wr, wz), abs(a - b) + 1e-6, a + b - 1e-6)
    direction = np.arctan2(wr, wz)  # angle of the shoulder->wrist line from vertical
    inner = np.arccos(np.clip((a * a + distance * distance - b * b) / (2 * a * distance), -1, 1))
    phi1 = direction - inner  # upper arm, from vertical (elbow bends upward/outward)
    elbow_r, elbow_z = a * np.sin(phi1), a * np.cos(phi1)
    elbow = np.mod(np.arctan2(wr - elbow_r, wz - elbow_z) - phi1, 2 * np.pi)
    return np.array([yaw, phi1, 0.0, elbow, 0.0, np.pi - phi1 - elbow, 0.0])


def track_command(
    joints: np.ndarray, command: np.ndarray, max_step: np.ndarray,
    lower: np.ndarray, upper: np.ndarray,
) -> np.ndarray:
    """One control step of a position-controlled arm: clamp ``command`` to the joint limits,
    then move towards it by at most ``max_step`` per joint."""
    target = np.clip(command, lower, upper)
    return joints + np.clip(target - joints, -max_step, max_step)
