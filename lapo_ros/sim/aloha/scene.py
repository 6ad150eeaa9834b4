"""gym-aloha's MuJoCo scenes, loaded through the optional extra ``lapo_ros[aloha]``.

One place imports gym-aloha, dm-control and mujoco, so a missing extra is one clear error.
Rendering defaults to EGL (``MUJOCO_GL=egl``, headless, CPU through Mesa); set
``MUJOCO_GL=osmesa`` before the first import to use OSMesa instead.

Importing triton (torch's compiler; torchvision imports it) after Mesa's EGL has started
segfaults, both bringing their own LLVM; the other order works. So triton, when installed,
is loaded here first: a process may then use the sim and torch in any order.
"""

from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("MUJOCO_GL", "egl")
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401  (before dm_control starts EGL: see above)

try:
    from dm_control import mujoco
    from dm_control.utils.inverse_kinematics import qpos_from_site_pose
    from gym_aloha.constants import ASSETS_DIR, DT, JOINTS
    from gym_aloha.tasks.sim import BOX_POSE, InsertionTask, TransferCubeTask
    from gym_aloha.utils import sample_box_pose, sample_insertion_pose
except ModuleNotFoundError as error:
    raise ImportError(
        "the ALOHA sim needs the optional extra: pip install 'lapo_ros[aloha]' (gym-aloha, "
        f"mujoco, dm-control; `make setup` installs it): {error}") from error
except ImportError as error:  # the modules are there; the renderer they asked for is not
    raise ImportError(
        f"the ALOHA sim cannot start MUJOCO_GL={os.environ['MUJOCO_GL']!r} (egl: Debian's "
        "libegl1 + libgl1-mesa-dri; osmesa: libosmesa6, with PYOPENGL_PLATFORM unset or "
        f"'osmesa'): {error}") from error

JOINT_NAMES: tuple[str, ...] = tuple(JOINTS)
"""The 14 joints in gym-aloha's order: 6 arm joints + normalised gripper, left then right."""
NUM_JOINTS = len(JOINT_NAMES)
RATE_HZ = 1.0 / DT  # 50 Hz, gym-aloha's control rate
CAMERAS = {"left": "left_wrist", "right": "right_wrist", "global": "top"}
"""Our camera name -> the scene's camera."""
ARMS = ("left", "right")
TASKS = {
    "transfer_cube": ("bimanual_viperx_transfer_cube.xml", TransferCubeTask, sample_box_pose),
    "insertion": ("bimanual_viperx_insertion.xml", InsertionTask, sample_insertion_pose),
}
"""Task name -> (scene file, gym-aloha task class, object pose sampler)."""

__all__ = ["ARMS", "BOX_POSE", "CAMERAS", "JOINT_NAMES", "NUM_JOINTS", "RATE_HZ", "TASKS",
           "ASSETS_DIR", "mujoco", "qpos_from_site_pose"]
