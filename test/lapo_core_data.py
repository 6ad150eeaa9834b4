"""Small in-memory transition sources for the learning-core tests (issue 3).

``ArrayTransitions`` implements exactly what the agents use of a replay buffer:
``sample(batch_size, discount)``, ``statistics``, ``image_size`` and ``num_episodes``. Its
rows are in episode order: a row with ``not_done`` 0 ends an episode.
"""

from __future__ import annotations

import numpy as np
import torch

from lapo_ros.lapo.data.batch import DatasetStatistics, TransitionBatch


class ArrayTransitions:
    """Transitions held as numpy arrays, sampled uniformly with a seeded generator; batches
    carry each row's episode index and step inside it and, when sampled with a discount,
    its return-to-go."""

    def __init__(
        self,
        image: np.ndarray,
        joint: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_image: np.ndarray,
        next_joint: np.ndarray,
        not_done: np.ndarray,
        seed: int = 0,
    ) -> None:
        self.arrays = {
            "image": image.astype(np.uint8),
            "joint": joint.astype(np.float32),
            "action": action.astype(np.float32),
            "reward": reward.reshape(-1, 1).astype(np.float32),
            "next_image": next_image.astype(np.uint8),
            "next_joint": next_joint.astype(np.float32),
            "not_done": not_done.reshape(-1, 1).astype(np.float32),
        }
        ends = self.arrays["not_done"][:, 0] == 0
        self.episode = np.concatenate([[0], np.cumsum(ends)[:-1]]).astype(np.int64)
        starts = np.flatnonzero(np.diff(self.episode, prepend=-1))
        self.step = np.arange(len(ends)) - np.repeat(starts, np.diff([*starts, len(ends)]))
        self.image_size = int(image.shape[-1])
        self.rng = np.random.default_rng(seed)
        self.statistics = DatasetStatistics(
            joint_mean=joint.mean(0).astype(np.float32),
            joint_std=joint.std(0).astype(np.float32),
            action_mean=action.mean(0).astype(np.float32),
            action_std=action.std(0).astype(np.float32),
            action_min=action.min(0).astype(np.float32),
            action_max=action.max(0).astype(np.float32),
            reward_min=float(reward.min()),
            reward_max=float(reward.max()),
            num_transitions=int(len(action)),
        )

    def __len__(self) -> int:
        return len(self.arrays["action"])

    @property
    def num_episodes(self) -> int:
        return int(self.episode[-1]) + 1

    def return_to_go(self, discount: float) -> np.ndarray:
        """Discounted reward sum to each row's episode end; NaN where the rows stop before
        the episode ends (a timed-out episode)."""
        reward, not_done = self.arrays["reward"][:, 0], self.arrays["not_done"][:, 0]
        returns = np.empty(len(self), np.float32)
        following = np.nan if not_done[-1] else 0.0
        for row in range(len(self) - 1, -1, -1):
            following = reward[row] + (discount * following if not_done[row] else 0.0)
            returns[row] = following
        return returns.reshape(-1, 1)

    def batch(self, index: np.ndarray, discount: float | None = None) -> TransitionBatch:
        batch = TransitionBatch(**{k: torch.from_numpy(v[index]) for k, v in self.arrays.items()},
                                episode=torch.from_numpy(self.episode[index]),
                                step=torch.from_numpy(self.step[index]))
        if discount is not None:
            batch.return_to_go = torch.from_numpy(self.return_to_go(discount)[index])
        return batch

    def sample(self, batch_size: int, discount: float | None = None) -> TransitionBatch:
        return self.batch(self.rng.integers(0, len(self), size=batch_size), discount)


def random_transitions(
    n: int = 64,
    image_size: int = 32,
    joint_dim: int = 16,
    action_dim: int = 16,
    seed: int = 0,
) -> ArrayTransitions:
    """Random images/joints/actions with rewards in [0, 1] and some terminal steps."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(n, 9, image_size, image_size), dtype=np.uint8)
    joint = rng.normal(0.5, 2.0, size=(n, joint_dim)).astype(np.float32)
    action = rng.uniform(-3.0, 3.0, size=(n, action_dim)).astype(np.float32)
    reward = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
    not_done = (rng.uniform(size=n) > 0.1).astype(np.float32)
    return ArrayTransitions(
        image,
        joint,
        action,
        reward,
        np.roll(image, -1, axis=0),
        np.roll(joint, -1, axis=0),
        not_done,
        seed=seed,
    )


def two_mode_transitions(
    n: int = 256,
    image_size: int = 16,
    joint_dim: int = 4,
    action_dim: int = 2,
    num_observations: int = 4,
    seed: int = 0,
) -> tuple[ArrayTransitions, TransitionBatch, np.ndarray, np.ndarray]:
    """One-step episodes whose actions come from two modes; which one is rewarded depends
    on the observation.

    ``num_observations`` distinct random observations (images + joints) each appear with
    actions from both modes, about half near ``+0.6`` and half near ``-0.6`` in every
    dimension. Even observations reward the ``+0.6`` mode, odd ones the ``-0.6`` mode
    (reward 1, else 0). Every step is terminal, so Q(s, a) is the reward: a policy can
    only get it by reading the observation and choosing the action accordingly.

    Returns (data, observations, rewarded_action, unrewarded_action) where
    ``observations`` holds each distinct observation once (image, joint) and the two
    arrays give, per observation, the centre of its rewarded and unrewarded mode.
    """
    rng = np.random.default_rng(seed)
    plus = np.full(action_dim, 0.6, dtype=np.float32)
    rewarded = np.where((np.arange(num_observations) % 2 == 0)[:, None], plus, -plus)
    observation = rng.integers(0, num_observations, size=n)
    near_plus = rng.uniform(size=n) < 0.5
    centres = np.where(near_plus[:, None], plus, -plus)
    action = (centres + rng.normal(0.0, 0.05, size=(n, action_dim))).astype(np.float32)
    # pin the action range symmetric so both modes are equally far from its centre
    action[0], action[1] = 1.0, -1.0
    reward = np.all(np.sign(centres) == np.sign(rewarded[observation]), axis=1)
    reward = reward.astype(np.float32)
    images = rng.integers(
        0, 256, size=(num_observations, 9, image_size, image_size), dtype=np.uint8
    )
    joints = rng.normal(0.0, 1.0, size=(num_observations, joint_dim)).astype(np.float32)
    image, joint = images[observation], joints[observation]
    data = ArrayTransitions(
        image, joint, action, reward, image, joint, np.zeros(n, dtype=np.float32), seed=seed
    )
    observations = TransitionBatch(
        image=torch.from_numpy(images),
        joint=torch.from_numpy(joints),
        action=torch.from_numpy(rewarded),
        reward=torch.ones(num_observations, 1),
        next_image=torch.from_numpy(images),
        next_joint=torch.from_numpy(joints),
        not_done=torch.zeros(num_observations, 1),
    )
    return data, observations, rewarded, -rewarded
