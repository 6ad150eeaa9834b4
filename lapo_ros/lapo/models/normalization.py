"""Joint and action normalisation from ``DatasetStatistics``, as torch modules.

The statistics live in buffers, so they travel with checkpoints (``state_dict``) and are
baked into exported policy files; nothing outside the model needs to know them.

- Joints use mean/std (z-score): joint readings are unbounded sensor values whose spread,
  not range, matters to the networks, and one outlier must not squash every other reading.
- Actions use mean/std too, as the original LAPO: every joint's command counts alike in
  the VAE's reconstruction error, whatever its units. The networks' outputs are unbounded;
  the deployed action is clipped to the per-joint range of the recorded commands, as
  LAPO's environments clip actions to their action space.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lapo_ros.lapo.data.batch import DatasetStatistics

MIN_STD = 1e-3
"""Std floor of joints and commands: one that never moved in the data is only centred (and
mapped back to its value), not blown up."""


def _vector(values: np.ndarray, name: str, dim: int) -> torch.Tensor:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.shape != (dim,):
        raise ValueError(f"DatasetStatistics.{name} has {array.size} values, expected {dim}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"DatasetStatistics.{name} is not finite: {array.tolist()}")
    return torch.from_numpy(array.copy())


class JointNormalizer(nn.Module):
    """Robot-unit joints [B, J] -> (joint - mean) / max(std, MIN_STD)."""

    def __init__(self, statistics: DatasetStatistics, joint_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", _vector(statistics.joint_mean, "joint_mean", joint_dim))
        std = _vector(statistics.joint_std, "joint_std", joint_dim)
        self.register_buffer("std", std.clamp_min(MIN_STD))

    def forward(self, joint: torch.Tensor) -> torch.Tensor:
        return (joint - self.mean) / self.std


class ActionScaler(nn.Module):
    """Robot-unit actions <-> z-scores by the dataset's mean/std; ``forward`` also clips to
    the recorded [action_min, action_max] (what the deployed policy needs)."""

    def __init__(self, statistics: DatasetStatistics, action_dim: int) -> None:
        super().__init__()
        low = _vector(statistics.action_min, "action_min", action_dim)
        high = _vector(statistics.action_max, "action_max", action_dim)
        if bool((high < low).any()):
            raise ValueError("DatasetStatistics.action_max is below action_min")
        self.register_buffer("mean", _vector(statistics.action_mean, "action_mean", action_dim))
        std = _vector(statistics.action_std, "action_std", action_dim)
        self.register_buffer("std", std.clamp_min(MIN_STD))
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def normalize(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.mean) / self.std

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalised action -> robot units, within the recorded range of each joint."""
        action = normalized * self.std + self.mean
        return torch.minimum(torch.maximum(action, self.low), self.high)
