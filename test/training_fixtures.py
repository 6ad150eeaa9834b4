"""Small canonical HDF5 datasets for the training, export and evaluation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lapo_ros.dataset.layout import Episode, write_episodes

JOINT_NAMES = ["left_shoulder", "left_gripper", "right_shoulder", "right_gripper"]
RATE_HZ = 10.0


def make_episode(rng: np.random.Generator, steps: int, image_size: int) -> Episode:
    """A reach-like episode: the action moves the joints towards a target that tints the
    global camera, so the images carry information the policy needs."""
    target = rng.uniform(-1.0, 1.0, size=len(JOINT_NAMES)).astype(np.float32)
    joint = np.zeros((steps, len(JOINT_NAMES)), dtype=np.float32)
    action = np.zeros_like(joint)
    position = rng.normal(0.0, 0.3, size=len(JOINT_NAMES)).astype(np.float32)
    for t in range(steps):
        joint[t] = position
        action[t] = position + 0.3 * (target - position)
        position = action[t] + rng.normal(0.0, 0.01, size=position.shape).astype(np.float32)
    shape = (steps, image_size, image_size, 3)
    noise = rng.integers(0, 40, size=shape, dtype=np.uint8)
    tint = np.uint8(128) + (target[:3] * 100).astype(np.int16).astype(np.uint8)
    global_image = (noise + tint).astype(np.uint8)
    left = rng.integers(0, 256, size=shape, dtype=np.uint8)
    right = rng.integers(0, 256, size=shape, dtype=np.uint8)
    reward = -np.linalg.norm(joint - target, axis=1).astype(np.float32)
    return Episode(left, right, global_image, joint, action, reward, terminal=True)


def write_dataset(
    path: Path, *, episodes: int = 4, steps: int = 10, image_size: int = 32, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    write_episodes(
        path,
        [make_episode(rng, steps, image_size) for _ in range(episodes)],
        joint_names=JOINT_NAMES,
        rate_hz=RATE_HZ,
        source={"test": "training"},
    )
    return path
