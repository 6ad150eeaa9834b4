"""What the replay buffer hands the agent: a batch of transitions and dataset statistics.

This is the seam between the data layer (``replay_buffer``) and the learning core
(``agent``): images stay uint8 until they reach the training device, joints and actions
stay in robot units, and the agent normalises them with ``DatasetStatistics``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class TransitionBatch:
    """A batch of (s, a, r, s', not_done) on one device.

    image / next_image: uint8 [B, 9, H, W], cameras stacked as [left, right, global] RGB.
    joint / next_joint: float32 [B, J] in robot units.
    action: float32 [B, A] in robot units.
    reward, not_done: float32 [B, 1]; not_done is 0 where s' ended the episode in a
    terminal state.
    episode: int64 [B], which of the buffer's episodes each transition comes from (None when
    the source does not say); step: int64 [B], each transition's index inside it.
    return_to_go: float32 [B, 1], the discounted return over the rest of the recorded
    episode, NaN where it timed out; present when sampled with a discount.
    With action chunks of h > 1 steps (``dataset.sampler.RawBatch``): action [B, h, A],
    reward [B, h] (zeros past the episode's end), chunk_steps float32 [B, 1], the n <= h
    transitions the chunk covers; next_* and not_done are those of s_{t+n}.
    """

    image: torch.Tensor
    joint: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_image: torch.Tensor
    next_joint: torch.Tensor
    not_done: torch.Tensor
    episode: torch.Tensor | None = None
    step: torch.Tensor | None = None
    return_to_go: torch.Tensor | None = None
    chunk_steps: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TransitionBatch:
        return TransitionBatch(**{
            k: None if v is None else v.to(device, non_blocking=non_blocking)
            for k, v in vars(self).items()
        })

    def __len__(self) -> int:
        return self.action.shape[0]


@dataclass
class DatasetStatistics:
    """Joint/action/reward statistics computed once from the training episodes, as the
    data has them (a std may be 0; the normalisers apply the floor, ``MIN_STD``).

    They travel with the checkpoint and, baked in, with the exported policy file.
    """

    joint_mean: np.ndarray
    joint_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray
    action_min: np.ndarray
    action_max: np.ndarray
    reward_min: float
    reward_max: float
    num_transitions: int

    def value_bounds(self, discount: float) -> tuple[float, float]:
        """(min_v, max_v): bounds of any discounted return of 1 to infinitely many steps.

        The original LAPO's (r_min, r_max) / (1 - discount), widened to (r_min, r_max)
        themselves: with terminal steps a value can be a single reward, which the
        endless-episode bound would clip (r_min / (1 - discount) > r_min when r_min > 0).
        """
        scale = 1.0 / (1.0 - discount)
        return (
            min(self.reward_min * scale, self.reward_min),
            max(self.reward_max * scale, self.reward_max),
        )

    def to_dict(self) -> dict:
        """Plain lists and floats, safe for JSON and ``torch.load(weights_only=True)``."""
        return {
            k: (v.astype(np.float64).tolist() if isinstance(v, np.ndarray) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetStatistics:
        arrays = {
            k: np.asarray(data[k], dtype=np.float32)
            for k in ("joint_mean", "joint_std", "action_mean", "action_std",
                      "action_min", "action_max")
        }
        return cls(
            **arrays,
            reward_min=float(data["reward_min"]),
            reward_max=float(data["reward_max"]),
            num_transitions=int(data["num_transitions"]),
        )
