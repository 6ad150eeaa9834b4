"""Small offline-RL problems whose right policy is known and behaviour cloning gets wrong.

Each returns the training transitions (``lapo_core_data.ArrayTransitions``), a batch of
held-out observations and the action the right policy takes on each. Actions come in two
modes, ``+MODE`` and ``-MODE`` on every action dimension; the data holds both modes in
equal shares for every kind of observation, so BC's mean lands near 0, between them. The
cue that decides the right mode is painted into the global camera (channels 6..8), over
background noise, so the policy has to read the images.

- ``camera_bandit``: one-step episodes; a red square rewards ``+MODE``, a blue one ``-MODE``.
- ``sparse_chain``: ``length`` steps; the right mode alternates by step (the step is shown
  as the square's colour); the wrong mode ends the episode with reward 0, the right one
  moves on, and only the last right step is rewarded (1). The critic must bootstrap the
  reward back to the first step, where both modes earn 0 at once.
- ``mixed_quality``: demonstrations of ``length`` steps along a line (joints: position and
  step); the square's colour says which side the goal is on, and an episode succeeds (+1
  at the end) only if every step went that way, else it fails (-1). Half of the
  demonstrators go the other way, in the same recorded scenes; on unseen scenes, at the
  start, only the successful mode is right.
- ``sequence_bandit``: episodes of ``chunk_size`` steps in which the demonstrators play one
  of four mode sequences; only the sequence the square's colour names earns the reward at
  the end (red: ``+ + - -``, blue: ``- - + +``). Every step's mode is ``+`` and ``-`` in
  equal shares for either colour, so only the whole sequence (an action chunk) is right.
  Its data is a real ``MultimodalReplayBuffer`` of in-memory episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from lapo_core_data import ArrayTransitions

from lapo_ros.dataset.layout import Episode
from lapo_ros.lapo.data.batch import TransitionBatch
from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer

MODE = 0.6
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)
COLOURS = (RED, GREEN, BLUE)


@dataclass
class KnownAnswer:
    data: ArrayTransitions | MultimodalReplayBuffer
    observations: TransitionBatch  # held-out observations (image, joint); other fields unused
    right_action: np.ndarray  # [N, A] (chunks: [N, h, A]) the right policy's on each


def paint(rng: np.random.Generator, colour_index: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, 9, size, size]: noise, and a 6x6 square of the given colour at a random
    place in the global camera."""
    n = len(colour_index)
    image = rng.integers(0, 60, size=(n, 9, size, size), dtype=np.uint8)
    for i, colour in enumerate(colour_index):
        y, x = rng.integers(0, size - 6, size=2)
        image[i, 6:9, y:y + 6, x:x + 6] = np.array(COLOURS[colour], np.uint8)[:, None, None]
    return image


def modes(rng: np.random.Generator, sign: np.ndarray, action_dim: int) -> np.ndarray:
    """Actions of the given mode signs (+1/-1), with a little noise."""
    noise = rng.normal(0.0, 0.05, size=(len(sign), action_dim))
    return (sign[:, None] * MODE + noise).astype(np.float32)


def observations(image: np.ndarray, joint: np.ndarray, action: np.ndarray) -> TransitionBatch:
    n = len(image)
    return TransitionBatch(
        image=torch.from_numpy(image), joint=torch.from_numpy(joint),
        action=torch.from_numpy(action), reward=torch.zeros(n, 1),
        next_image=torch.from_numpy(image), next_joint=torch.from_numpy(joint),
        not_done=torch.zeros(n, 1))


def camera_bandit(scenes: int = 128, samples: int = 512, size: int = 16, action_dim: int = 4,
                  joint_dim: int = 4, seed: int = 0) -> KnownAnswer:
    """One-step episodes: reward 1 when the action's mode matches the square's colour.

    128 recorded scenes (4 transitions each): with 32, the 11M-parameter encoder could tell
    the recorded scenes apart by the square's place, the background and the joints, and
    which unseen scene it misread changed with the CPU's rounding (BENCHMARKS.md, learning: the
    camera bandit on another CPU)."""
    rng = np.random.default_rng(seed)
    red = rng.uniform(size=scenes) < 0.5
    scene_image = paint(rng, np.where(red, 0, 2), size)
    scene_joint = rng.normal(0.0, 1.0, size=(scenes, joint_dim)).astype(np.float32)
    scene = rng.integers(0, scenes, size=samples)
    sign = np.where(rng.uniform(size=samples) < 0.5, 1.0, -1.0)
    reward = (sign == np.where(red[scene], 1.0, -1.0)).astype(np.float32)
    image, joint = scene_image[scene], scene_joint[scene]
    data = ArrayTransitions(image, joint, modes(rng, sign, action_dim), reward, image, joint,
                            np.zeros(samples, np.float32), seed=seed)
    test_red = rng.uniform(size=64) < 0.5
    test_image = paint(rng, np.where(test_red, 0, 2), size)
    test_joint = rng.normal(0.0, 1.0, size=(64, joint_dim)).astype(np.float32)
    right = np.where(test_red, MODE, -MODE)[:, None] * np.ones((1, action_dim), np.float32)
    return KnownAnswer(data, observations(test_image, test_joint, right), right)


def sparse_chain(episodes: int = 600, length: int = 3, backgrounds: int = 4, size: int = 16,
                 action_dim: int = 4, joint_dim: int = 4, seed: int = 0) -> KnownAnswer:
    """Reward only after ``length`` right steps; the right mode is +MODE on even steps."""
    rng = np.random.default_rng(seed)
    # a few recorded backgrounds per step, so every state is seen with both modes
    state_image = paint(rng, np.repeat(np.arange(length) % 3, backgrounds), size)
    state_joint = np.zeros((length * backgrounds, joint_dim), np.float32)

    def right_sign(step: np.ndarray) -> np.ndarray:
        return np.where(step % 2 == 0, 1.0, -1.0)

    rows = {"state": [], "next": [], "sign": [], "reward": [], "not_done": []}
    for _ in range(episodes):
        for step in range(length):
            state = step * backgrounds + rng.integers(backgrounds)
            right = rng.uniform() < 0.5
            last = step == length - 1
            rows["state"].append(state)
            rows["sign"].append(right_sign(np.array(step)) * (1.0 if right else -1.0))
            rows["reward"].append(1.0 if right and last else 0.0)
            done = last or not right
            rows["not_done"].append(0.0 if done else 1.0)
            rows["next"].append(state if done else (step + 1) * backgrounds
                                + rng.integers(backgrounds))
            if done:
                break
    state, nxt = np.array(rows["state"]), np.array(rows["next"])
    data = ArrayTransitions(
        state_image[state], state_joint[state],
        modes(rng, np.array(rows["sign"]), action_dim), np.array(rows["reward"], np.float32),
        state_image[nxt], state_joint[nxt], np.array(rows["not_done"], np.float32), seed=seed)
    step = np.repeat(np.arange(length), backgrounds)
    right = right_sign(step)[:, None] * MODE * np.ones((1, action_dim), np.float32)
    return KnownAnswer(data, observations(state_image, state_joint, right.astype(np.float32)),
                       right.astype(np.float32))


def mixed_quality(episodes: int = 200, length: int = 4, scenes: int = 32, size: int = 16,
                  action_dim: int = 4, seed: int = 0) -> KnownAnswer:
    """Demonstrations towards the goal side (+1 at the end) or away from it (-1); one
    wrong step anywhere and the goal cannot be reached any more. Each episode is recorded in
    one of ``scenes`` recorded scenes, by a demonstrator who succeeds or fails at random."""
    rng = np.random.default_rng(seed)
    goals = np.where(rng.uniform(size=scenes) < 0.5, 1.0, -1.0)  # red: the goal is on the + side
    scene_image = paint(rng, np.where(goals > 0, 0, 2), size)
    images, joints, signs, rewards, not_done, next_images, next_joints = ([] for _ in range(7))
    for _ in range(episodes):
        scene = rng.integers(scenes)
        goal, image = goals[scene], scene_image[scene]
        sign = goal if rng.uniform() < 0.5 else -goal  # half the demonstrators fail
        position = np.zeros(1, np.float32)
        for step in range(length):
            moved = position + sign * 0.25
            last = step == length - 1
            images.append(image)
            joints.append(np.concatenate([position, [step / length]]).astype(np.float32))
            signs.append(sign)
            reached = float(moved[0]) * goal > 0.25 * length - 1e-6
            rewards.append((1.0 if reached else -1.0) if last else 0.0)
            not_done.append(0.0 if last else 1.0)
            next_images.append(image)
            next_joints.append(np.concatenate([moved, [(step + 1) / length]]).astype(np.float32))
            position = moved
    data = ArrayTransitions(
        np.stack(images), np.stack(joints), modes(rng, np.array(signs), action_dim),
        np.array(rewards, np.float32), np.stack(next_images), np.stack(next_joints),
        np.array(not_done, np.float32), seed=seed)
    test_goal = np.where(rng.uniform(size=32) < 0.5, 1.0, -1.0)  # unseen scenes
    test_image = paint(rng, np.where(test_goal > 0, 0, 2), size)
    test_joint = np.zeros((32, 2), np.float32)  # the start of an episode
    right = (test_goal[:, None] * MODE * np.ones((1, action_dim))).astype(np.float32)
    return KnownAnswer(data, observations(test_image, test_joint, right), right)


def sequence_bandit(episodes: int = 400, chunk_size: int = 4, scenes: int = 32, size: int = 16,
                    action_dim: int = 4, seed: int = 0) -> KnownAnswer:
    """Reward 1 at the end of an episode whose ``chunk_size`` modes were the sequence its
    scene's colour rewards; the other three sequences earn 0. Joints: the step, scaled."""
    rng = np.random.default_rng(seed)
    half = chunk_size // 2
    rewarded = {1.0: np.repeat([1.0, -1.0], [half, chunk_size - half]),  # red
                -1.0: np.repeat([-1.0, 1.0], [half, chunk_size - half])}  # blue
    played = [rewarded[1.0], rewarded[-1.0], np.ones(chunk_size), -np.ones(chunk_size)]
    colour = np.where(rng.uniform(size=scenes) < 0.5, 1.0, -1.0)
    scene_image = paint(rng, np.where(colour > 0, 0, 2), size).transpose(0, 2, 3, 1)
    recorded = []
    for _ in range(episodes):
        scene = rng.integers(scenes)
        signs = played[rng.integers(len(played))]
        reward = np.zeros(chunk_size, np.float32)
        reward[-1] = float(np.array_equal(signs, rewarded[colour[scene]]))
        frames = np.repeat(scene_image[scene][None], chunk_size, axis=0)
        joint = np.zeros((chunk_size, action_dim), np.float32)
        joint[:, 0] = np.arange(chunk_size) / chunk_size
        recorded.append(Episode(
            left_image=frames[..., 0:3], right_image=frames[..., 3:6],
            global_image=frames[..., 6:9], joint=joint,
            action=modes(rng, signs, action_dim), reward=reward, terminal=True))
    data = MultimodalReplayBuffer(action_dim, action_dim, image_size=size, seed=seed)
    data.add_episodes(recorded)
    test_colour = np.where(rng.uniform(size=32) < 0.5, 1.0, -1.0)  # unseen scenes, step 0
    test_image = paint(rng, np.where(test_colour > 0, 0, 2), size)
    test_joint = np.zeros((32, action_dim), np.float32)
    right = np.stack([rewarded[c] for c in test_colour])[:, :, None] * MODE * np.ones(
        (1, 1, action_dim))
    right = right.astype(np.float32)
    return KnownAnswer(data, observations(test_image, test_joint, right[:, 0]), right)
