"""Small HDF5 datasets whose every frame says which step it is (shared by the HDF5 tests).

Frame code: step ``t`` of the whole dataset has joint[t, 0] = t and every pixel of camera
``k`` channel ``c`` equal to (t + 50 * k + c) % 256, so a test can check from a batch alone
that images, joints and next states belong together.
"""

from __future__ import annotations

import h5py
import numpy as np

from lapo_ros.dataset.layout import Episode

JOINT_DIM = 16
ACTION_DIM = 16
JOINT_NAMES = [f"arm_joint_{i}" for i in range(JOINT_DIM)]


def coded_frames(steps: np.ndarray, camera: int, size: int) -> np.ndarray:
    """(T,H,W,3) uint8 frames carrying the frame code of ``steps``."""
    values = (steps[:, None] + 50 * camera + np.arange(3)[None, :]) % 256
    return np.broadcast_to(values[:, None, None, :], (len(steps), size, size, 3)).astype(np.uint8)


def coded_episodes(lengths, terminals, size: int = 16, first_step: int = 0) -> list[Episode]:
    episodes, step = [], first_step
    for length, terminal in zip(lengths, terminals, strict=True):
        steps = np.arange(step, step + length)
        joint = np.zeros((length, JOINT_DIM), np.float32)
        joint[:, 0] = steps
        joint[:, 1:] = np.sin(steps[:, None] * np.arange(1, JOINT_DIM))
        action = np.cos(steps[:, None] * np.arange(1, ACTION_DIM + 1)).astype(np.float32)
        reward = (steps % 7 - 3).astype(np.float32)
        episodes.append(
            Episode(
                left_image=coded_frames(steps, 0, size),
                right_image=coded_frames(steps, 1, size),
                global_image=coded_frames(steps, 2, size),
                joint=joint,
                action=action,
                reward=reward,
                terminal=terminal,
            )
        )
        step += length
    return episodes


def write_seed_file(
    path, episodes: list[Episode], *, chw: bool, two_d: bool, compression: str | None = None
) -> None:
    """The seed's own layout: no /episode_ends, terminals mark the boundaries."""

    def cat(name):
        return np.concatenate([getattr(e, name) for e in episodes])

    terminals = np.concatenate([e.terminals() for e in episodes]).astype(np.float32)
    rewards = cat("reward")
    with h5py.File(path, "w") as h5:
        for camera in ("left", "right", "global"):
            frames = cat(f"{camera}_image")
            if chw:
                frames = frames.transpose(0, 3, 1, 2)
            h5.create_dataset(
                f"observations/{camera}_image",
                data=frames,
                chunks=(1, *frames.shape[1:]),
                compression=compression,
            )
        h5["observations/joint"] = cat("joint")
        h5["actions"] = cat("action")
        h5["rewards"] = rewards[:, None] if two_d else rewards
        h5["terminals"] = terminals[:, None] if two_d else terminals


def write_aloha_file(
    path, episode: Episode, cameras: dict[str, str], success: bool | None = None
) -> None:
    """One ALOHA-style episode file: /observations/qpos, /observations/images/<cam>, /action."""
    with h5py.File(path, "w") as h5:
        h5["observations/qpos"] = episode.joint
        h5["action"] = episode.action
        for camera, name in cameras.items():
            frames = getattr(episode, f"{camera}_image")
            h5.create_dataset(
                f"observations/images/{name}", data=frames, chunks=(1, *frames.shape[1:])
            )
        if success is not None:
            h5.attrs["success"] = success


def assert_batch_consistent(batch) -> None:
    """Images, joints and next states of every row carry matching frame codes."""
    image, next_image = batch.image.cpu().numpy(), batch.next_image.cpu().numpy()
    steps = batch.joint[:, 0].cpu().numpy().astype(np.int64)
    next_steps = batch.next_joint[:, 0].cpu().numpy().astype(np.int64)
    for frames, codes in ((image, steps), (next_image, next_steps)):
        expected = np.stack(
            [(codes + 50 * (ch // 3) + ch % 3) % 256 for ch in range(9)], axis=1
        ).astype(np.uint8)
        assert np.array_equal(frames, np.broadcast_to(expected[:, :, None, None], frames.shape))


def damage_object_header(path, key: str) -> None:
    """Overwrite the start of ``key``'s object header, as a bad disk block would."""
    with h5py.File(path, "r") as h5:
        address = h5py.h5o.get_info(h5[key].id).addr
    with open(path, "r+b") as file:
        file.seek(address)
        file.write(b"\xff" * 32)
