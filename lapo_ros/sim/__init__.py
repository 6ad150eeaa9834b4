"""A simulated three-camera dual arm speaking the robot's observation/command format."""

from lapo_ros.sim.dual_arm import JOINT_NAMES, NUM_JOINTS
from lapo_ros.sim.env import DualArmReachEnv, InvalidCommandError, SimConfig
from lapo_ros.sim.task import TaskConfig

__all__ = ["JOINT_NAMES", "NUM_JOINTS", "DualArmReachEnv", "InvalidCommandError", "SimConfig",
           "TaskConfig"]
