"""Behaviour cloning with the same encoder and API as ``MultimodalLatent`` (baseline).

BC here is deterministic regression: the observation feature (same ``ImageJointEncoder``)
goes through an MLP and the encoder and head minimise the MSE to the z-scored recorded
action, every transition weighted equally (the deployed action is clipped to the recorded
range, as LAPO's). Rewards are
ignored, so on data from several modes it predicts their average: the reference LAPO's
advantage weighting must beat. Hyper-parameters come from ``LAPOConfig``: the encoder and
network sizes, ``actor_lr`` (encoder + head), ``image_size``, ``seed`` and the compute knobs.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lapo_ros.lapo.algorithms.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_modules,
    read_checkpoint,
    save_checkpoint,
)
from lapo_ros.lapo.algorithms.config import LAPOConfig
from lapo_ros.lapo.algorithms.lapo import (
    OfflineAgent,
    TransitionSource,
    adam,
    autocast,
    check_batch,
    default_device,
    memory_layout,
    resolve_data,
)
from lapo_ros.lapo.data.batch import DatasetStatistics, TransitionBatch
from lapo_ros.lapo.models.networks import ImageJointEncoder, mlp
from lapo_ros.lapo.models.normalization import ActionScaler, JointNormalizer
from lapo_ros.lapo.models.policy import DeployablePolicy


class RegressionHead(nn.Module):
    """feature -> z-scored action."""

    def __init__(self, feature_dim: int, action_dim: int, hidden_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(feature_dim, hidden_dims, action_dim)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.net(feature)


class BehaviorCloning(OfflineAgent):
    """MSE behaviour cloning on the multimodal observation (baseline for LAPO)."""

    kind = "behavior_cloning"

    def __init__(
        self,
        action_dim: int,
        max_action: float = 1.0,
        replay_buffer: TransitionSource | None = None,
        device: str | torch.device | None = None,
        *,
        statistics: DatasetStatistics | None = None,
        **overrides: Any,
    ) -> None:
        statistics, self.config = resolve_data("BehaviorCloning", replay_buffer, statistics,
                                               overrides)
        self.replay_buffer = replay_buffer
        self.statistics = statistics
        self.device = default_device(device)
        self.action_dim = int(action_dim)
        self.joint_dim = int(np.asarray(statistics.joint_mean).size)
        self.max_action = float(max_action)
        self.total_it = 0
        config = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.obs_encoder = ImageJointEncoder(
                joint_dim=self.joint_dim,
                image_feature_dim=config.image_feature_dim,
                fusion_dim=config.feature_dim,
                joint_hidden_dim=config.joint_hidden_dim,
                pretrained_path=config.pretrained_path,
                conv1_scale=config.conv1_scale,
            )
            self.policy_head = RegressionHead(
                config.feature_dim, self.action_dim, config.hidden_dims
            )
        self.obs_encoder.to(self.device)
        self.policy_head.to(self.device)
        if config.channels_last:
            self.obs_encoder.to(memory_format=torch.channels_last)
        self.joint_normalizer = JointNormalizer(statistics, self.joint_dim).to(self.device)
        self.action_scaler = ActionScaler(statistics, self.action_dim).to(self.device)
        self.optimizer = adam(
            [*self.obs_encoder.parameters(), *self.policy_head.parameters()],
            config.actor_lr,
            config,
        )
        self._policy = DeployablePolicy(
            self.obs_encoder,
            self.policy_head,
            self.joint_normalizer,
            self.action_scaler,
            config.image_size,
            self.action_dim,
        )

    # ------------------------------------------------------------------ training
    def _set_training(self, training: bool) -> None:
        self.obs_encoder.train(training)
        self.policy_head.train(training)

    def _update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        check_batch("BehaviorCloning", batch, self.config.image_size, self.joint_dim,
                    self.action_dim)
        batch = batch.to(self.device, non_blocking=True)
        self._set_training(True)
        target = self.action_scaler.normalize(batch.action.float())
        with autocast(self.config, self.device):
            feature = self.obs_encoder(
                memory_layout(batch.image, self.config), self.joint_normalizer(batch.joint.float())
            )
            prediction = self.policy_head(feature).float()
        loss = F.mse_loss(prediction, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        encoder_grad_norm = torch.nn.utils.get_total_norm(
            [p.grad for p in self.obs_encoder.parameters() if p.grad is not None]
        )
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [*self.obs_encoder.parameters(), *self.policy_head.parameters()],
                self.config.max_grad_norm,
            )
        self.optimizer.step()
        self.total_it += 1
        return {"bc_loss": loss.detach(), "encoder_grad_norm": encoder_grad_norm.detach()}

    # ------------------------------------------------------------------ checkpoints
    def _modules(self) -> dict[str, Any]:
        return {
            "obs_encoder": self.obs_encoder,
            "policy_head": self.policy_head,
            "joint_normalizer": self.joint_normalizer,
            "action_scaler": self.action_scaler,
            "optimizer": self.optimizer,
        }

    def save(self, path: str | os.PathLike) -> None:
        """One file: networks, optimizer, statistics, config and step count."""
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": self.kind,
            "arguments": {"action_dim": self.action_dim, "max_action": self.max_action},
            "config": self.config.to_dict(),
            "statistics": self.statistics.to_dict(),
            "step": self.total_it,
            "modules": {name: module.state_dict() for name, module in self._modules().items()},
        })

    def load(self, path: str | os.PathLike) -> None:
        path = os.fspath(path)
        payload = read_checkpoint(path, self.kind)
        if payload["arguments"]["action_dim"] != self.action_dim:
            raise CheckpointError(
                f"checkpoint {path!r}: action_dim {payload['arguments']['action_dim']}, "
                f"this agent has {self.action_dim}"
            )
        load_modules(path, self._modules(), payload["modules"])
        self.statistics = DatasetStatistics.from_dict(payload["statistics"])
        self.total_it = int(payload["step"])

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        replay_buffer: TransitionSource | None = None,
    ) -> BehaviorCloning:
        payload = read_checkpoint(path, cls.kind)
        config = LAPOConfig.from_dict(payload["config"])
        agent = cls(
            **payload["arguments"],
            replay_buffer=replay_buffer,
            device=device,
            statistics=DatasetStatistics.from_dict(payload["statistics"]),
            **replace(config, pretrained_path=None).to_dict(),
        )
        agent.config = config
        agent.load(path)
        return agent
