"""The gym-aloha bimanual scenes with our observation format: ``reset(seed)`` / ``step(action)``.

Observations: the three cameras under our names (``left`` = ``left_wrist``, ``right`` =
``right_wrist``, ``global`` = ``top``) as HxWx3 uint8 RGB, and ``joint``: the 14 joint
positions in ``JOINT_NAMES`` order (grippers normalised 0 closed .. 1 open). An action is 14
absolute joint position targets in the same order, held for one 20 ms control step (50 Hz),
as in gym-aloha and ACT. The reward is gym-aloha's stage of the task, 0..4 (transfer cube:
1 touched by the right gripper, 2 lifted, 3 touched by the left gripper, 4 held by the left
gripper in the air); an episode terminates at stage 4 (success) and is truncated at
``max_steps``. The scene's physics and task code are gym-aloha's own; this wrapper drives them
without gym-aloha's per-step 480x640 renders, renders only our three cameras, at
``image_size``, with shadows off by default (about 3-10x cheaper on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.sim.aloha.scene import (
    ASSETS_DIR,
    BOX_POSE,
    CAMERAS,
    JOINT_NAMES,
    NUM_JOINTS,
    RATE_HZ,
    TASKS,
    mujoco,
)

Observation = dict[str, np.ndarray]  # 'left', 'right', 'global' images and 'joint'
MAX_STAGE = 4  # gym-aloha's max_reward for both tasks


@dataclass
class AlohaSimConfig:
    """Which scene, how it is seen, and how long an episode lasts."""

    task: str = "transfer_cube"  # or "insertion"
    image_size: tuple[int, int] | None = (96, 128)  # (H, W) per camera; None: no images
    max_steps: int = 400  # ACT's episode length for transfer cube (8 s at 50 Hz)
    shadows: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.image_size is not None and (
                len(self.image_size) != 2 or min(self.image_size) <= 0):
            raise ValueError(f"image_size must be (H, W) > 0 or None, got {self.image_size}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


class AlohaSimEnv:
    """One gym-aloha scene: physics, gym-aloha's task (actions, reward) and our cameras."""

    joint_names = JOINT_NAMES
    rate_hz = RATE_HZ

    def __init__(self, config: AlohaSimConfig | None = None):
        self.config = config or AlohaSimConfig()
        scene_file, task_class, self._sample_objects = TASKS[self.config.task]
        self.physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / scene_file))
        if not self.config.shadows:
            self.physics.model.light_castshadow[:] = 0
        self.task = task_class()
        control_dt = 1.0 / RATE_HZ
        self._substeps = int(round(control_dt / self.physics.model.opt.timestep))
        self.steps = 0
        self.stage = 0
        self.max_stage = 0
        self._done = True
        self._closed = False

    def close(self) -> None:
        """Free the renderer's contexts now; the environment is unusable afterwards. Left to
        dm_control's exit hook, under OSMesa the freeing runs after Python has stopped its
        render thread and prints a traceback at every exit."""
        if not self._closed:
            self._closed = True
            self.physics.free()

    def __enter__(self) -> AlohaSimEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reset(self, seed: int | None = None) -> tuple[Observation, dict[str, Any]]:
        """ACT's start pose; the object(s) placed by gym-aloha's sampler from ``seed``."""
        BOX_POSE[0] = np.hstack(self._sample_objects(seed))
        self.task.initialize_episode(self.physics)
        self.steps = 0
        self.stage = self.max_stage = 0
        self._done = False
        return self.observe(), self._info()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Hold 14 joint position targets for one control step; (obs, stage, term, trunc, info)."""
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (NUM_JOINTS,):
            raise ValueError(f"action must have {NUM_JOINTS} joint positions "
                             f"({', '.join(JOINT_NAMES)}), got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            bad = [JOINT_NAMES[i] for i in np.flatnonzero(~np.isfinite(action))]
            raise ValueError(f"action is NaN or inf for {', '.join(bad)}")
        self.task.before_step(action, self.physics)
        self.physics.step(self._substeps)
        self.steps += 1
        self.stage = int(self.task.get_reward(self.physics))
        self.max_stage = max(self.max_stage, self.stage)
        terminated = self.stage == MAX_STAGE
        truncated = not terminated and self.steps >= self.config.max_steps
        self._done = terminated or truncated
        return self.observe(), float(self.stage), terminated, truncated, self._info()

    @property
    def joints(self) -> np.ndarray:
        """The 14 joint positions, grippers normalised (gym-aloha's qpos observation)."""
        return self.task.get_qpos(self.physics)

    def observe(self) -> Observation:
        """Camera images (CAMERA_ORDER keys, when ``image_size``) and ``joint``."""
        obs: Observation = {}
        if self.config.image_size is not None:
            height, width = self.config.image_size
            for name in CAMERA_ORDER:
                obs[name] = self.physics.render(height, width, camera_id=CAMERAS[name])
        obs["joint"] = self.joints.astype(np.float32)
        return obs

    def _info(self) -> dict[str, Any]:
        return {"stage": self.stage, "max_stage": self.max_stage,
                "success": self.max_stage == MAX_STAGE, "steps": self.steps}
