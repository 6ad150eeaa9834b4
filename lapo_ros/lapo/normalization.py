"""Joint and action normalisation from ``DatasetStatistics``, as torch modules.

The statistics live in buffers, so they travel with checkpoints (``state_dict``) and are
baked into exported policy files; nothing outside the model needs to know them.

- Joints use mean/std (z-score): joint readings are unbounded sensor values whose spread,
  not range, matters to the networks, and one outlier must not squash every other reading.
- Actions use min/max scaling onto [-max_action, max_action]: the decoder and the BC head
  end in ``max_action * tanh``, so every recorded action must be reachable and the range
  fully used; mean/std would put outliers outside the tanh range and bias the policy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lapo_ros.lapo.batch import DatasetStatistics

MIN_JOINT_STD = 1e-3
"""Std floor: a joint that never moved in the data is only centred, not blown up."""
MIN_ACTION_HALF_RANGE = 1e-6
"""Half-range floor: a constant action dimension maps to 0 and back to its value."""


def _vector(values: np.ndarray, name: str, dim: int) -> torch.Tensor:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.shape != (dim,):
        raise ValueError(f"DatasetStatistics.{name} has {array.size} values, expected {dim}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"DatasetStatistics.{name} is not finite: {array.tolist()}")
    return torch.from_numpy(array.copy())


class JointNormalizer(nn.Module):
    """Robot-unit joints [B, J] -> (joint - mean) / max(std, MIN_JOINT_STD)."""

    def __init__(self, statistics: DatasetStatistics, joint_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", _vector(statistics.joint_mean, "joint_mean", joint_dim))
        std = _vector(statistics.joint_std, "joint_std", joint_dim)
        self.register_buffer("std", std.clamp_min(MIN_JOINT_STD))

    def forward(self, joint: torch.Tensor) -> torch.Tensor:
        return (joint - self.mean) / self.std


class ActionScaler(nn.Module):
    """Robot-unit actions <-> [-max_action, max_action] by the dataset's min/max."""

    def __init__(self, statistics: DatasetStatistics, action_dim: int, max_action: float) -> None:
        super().__init__()
        if max_action <= 0:
            raise ValueError(f"max_action must be positive, got {max_action}")
        low = _vector(statistics.action_min, "action_min", action_dim)
        high = _vector(statistics.action_max, "action_max", action_dim)
        if bool((high < low).any()):
            raise ValueError("DatasetStatistics.action_max is below action_min")
        self.max_action = float(max_action)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", ((high - low) / 2).clamp_min(MIN_ACTION_HALF_RANGE))

    def normalize(self, action: torch.Tensor) -> torch.Tensor:
        return (action - self.center) / self.half_range * self.max_action

    def forward(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalised action -> robot units (the direction the deployed policy needs)."""
        return normalized / self.max_action * self.half_range + self.center
