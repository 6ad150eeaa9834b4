"""Gripper poses -> arm joint angles on the ALOHA scene (dm_control's inverse kinematics).

A gripper pose is where its fingertip point is (the scene's ``cali_<arm>_site1``, 15 cm out
along the gripper, between the finger tips) and how the gripper is turned: ``pointing`` is
the direction from wrist to fingertips, ``closing`` the axis the fingers slide along.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lapo_ros.sim.aloha.scene import mujoco, qpos_from_site_pose

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


class PlanningError(RuntimeError):
    """A gripper pose the arm cannot reach."""


@dataclass(frozen=True)
class GripperPose:
    """Fingertip position and gripper orientation in the world frame."""

    tip: np.ndarray  # (3,) m
    pointing: np.ndarray  # (3,) unit: wrist -> fingertips (the gripper's x axis)
    closing: np.ndarray  # (3,) unit, orthogonal to pointing: finger slide axis (y axis)

    def quaternion(self) -> np.ndarray:
        """(w, x, y, z) of the gripper frame [pointing, closing, pointing x closing]."""
        x = self.pointing / np.linalg.norm(self.pointing)
        y = self.closing - x * float(x @ self.closing)
        y /= np.linalg.norm(y)
        rotation = np.column_stack([x, y, np.cross(x, y)])
        quat = np.empty(4)
        mujoco.wrapper.mjbindings.mjlib.mju_mat2Quat(quat, rotation.reshape(-1))
        return quat


def tip_site(arm: str) -> str:
    return f"cali_{arm}_site1"


def joint_names(arm: str) -> list[str]:
    return [f"vx300s_{arm}/{joint}" for joint in ARM_JOINTS]


def gripper_pose(physics, arm: str) -> GripperPose:
    """The current pose of ``arm``'s gripper."""
    site = tip_site(arm)
    rotation = physics.named.data.site_xmat[site].reshape(3, 3)
    return GripperPose(tip=physics.named.data.site_xpos[site].copy(),
                       pointing=rotation[:, 0].copy(), closing=rotation[:, 1].copy())


def solve_arm(physics, arm: str, pose: GripperPose, start: np.ndarray,
              tolerance: float = 2e-3) -> np.ndarray:
    """The 6 joint angles of ``arm`` putting its gripper at ``pose``, searched from ``start``.

    ``physics`` is not changed (the search runs on a copy sharing its model).
    """
    names = joint_names(arm)
    scratch = physics.copy(share_model=True)
    scratch.named.data.qpos[names] = start
    result = qpos_from_site_pose(scratch, tip_site(arm), target_pos=pose.tip,
                                 target_quat=pose.quaternion(), joint_names=names,
                                 tol=1e-10, max_steps=200, inplace=True)
    scratch.forward()
    reached = gripper_pose(scratch, arm)
    error = float(np.linalg.norm(reached.tip - pose.tip))
    if not result.success and error > tolerance:
        raise PlanningError(f"{arm} arm cannot reach fingertip {np.round(pose.tip, 3)} "
                            f"(pointing {np.round(pose.pointing, 2)}): off by {error:.3f} m")
    return scratch.named.data.qpos[names].copy()
