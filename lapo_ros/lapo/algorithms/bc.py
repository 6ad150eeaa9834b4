"""Behaviour cloning with the same encoder and API as ``MultimodalLatent`` (baseline).

BC here is deterministic regression: the observation feature (same ``ImageJointEncoder``)
goes through an MLP and the encoder and head minimise the MSE to the z-scored recorded
action (or chunk of ``chunk_size`` actions, ACT's target without its CVAE), every
transition weighted equally (the deployed action is clipped to the recorded range, as
LAPO's). Rewards are ignored, so on data from several modes it predicts their
average: what LAPO's advantage weighting must beat. Its options are ``BCConfig``: the
encoder, network and compute options LAPO has too, and one learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lapo_ros.lapo.algorithms.base import (
    AgentModules,
    OfflineAgent,
    TransitionSource,
    check_batch,
)
from lapo_ros.lapo.algorithms.config import BCConfig
from lapo_ros.lapo.compute import adam, autocast, encoder_step
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


@dataclass
class BCModules(AgentModules):
    """The networks, normalisers and optimiser of one ``BehaviorCloning``."""

    obs_encoder: ImageJointEncoder
    policy_head: RegressionHead
    joint_normalizer: JointNormalizer
    action_scaler: ActionScaler
    optimizer: torch.optim.Adam  # encoder + head


class BehaviorCloning(OfflineAgent):
    """MSE behaviour cloning on the multimodal observation (baseline for LAPO)."""

    kind = "behavior_cloning"
    config_class = BCConfig
    modules: BCModules

    def __init__(
        self,
        action_dim: int,
        max_action: float = 1.0,
        replay_buffer: TransitionSource | None = None,
        device: str | torch.device | None = None,
        *,
        statistics: DatasetStatistics | None = None,
        joint_names: Sequence[str] | None = None,
        rate_hz: float | None = None,
        **overrides: Any,
    ) -> None:
        self._setup(replay_buffer, statistics, device, overrides, joint_names, rate_hz)
        self.action_dim = int(action_dim)
        self.max_action = float(max_action)
        config, device = self.config, self.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            obs_encoder = self._encoder()
            policy_head = RegressionHead(config.feature_dim, config.chunk_size * self.action_dim,
                                         config.hidden_dims).to(device)
        self.modules = BCModules(
            obs_encoder=obs_encoder,
            policy_head=policy_head,
            joint_normalizer=JointNormalizer(self.statistics, self.joint_dim).to(device),
            action_scaler=ActionScaler(self.statistics, self.action_dim).to(device),
            optimizer=adam([*obs_encoder.parameters(), *policy_head.parameters()], config.lr,
                           config.fused_adam),
        )
        self._compile_encoders()
        self._policy = DeployablePolicy(obs_encoder, policy_head, self.joint_normalizer,
                                        self.action_scaler, config.image_size, self.action_dim,
                                        config.chunk_size)

    def _update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        check_batch("BehaviorCloning", batch, self.config.image_size, self.joint_dim,
                    self.action_dim, self.chunk_size)
        batch = batch.to(self.device, non_blocking=True)
        self.set_training(True)
        target = self._action_target(batch.action)
        with autocast(self.autocast_dtype, self.device):
            feature = self.obs_encoder(self._training_images(batch.image),
                                       self.joint_normalizer(batch.joint.float()))
            prediction = self.policy_head(feature).float()
        loss = F.mse_loss(prediction, target)
        encoder_grad_norm = encoder_step(self.optimizer, loss,
                                         [(self.obs_encoder, self.policy_head)],
                                         self.config.max_grad_norm)
        self.total_it += 1
        return {"bc_loss": loss.detach(), "encoder_grad_norm": encoder_grad_norm}

    def _arguments(self) -> dict[str, Any]:
        return {"action_dim": self.action_dim, "max_action": self.max_action}
