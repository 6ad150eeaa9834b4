"""``MultimodalLatent``: LAPO on a 9-channel ResNet18 + joint feature, critic-led encoder.

One update (``train_step``) on a batch (s, a, r, s', not_done), f = enc(s), f' = enc_target(s'):

1. critic: ``target_Q = r + not_done * gamma * V_target(f')``;
   ``target_v = q_mix(f, decode_target(f, actor_target(f) + clipped noise))`` from the target
   critic; loss = mse(Q1, target_Q) + mse(Q2, target_Q) + mse(V(f), target_v), targets
   clipped to [min_v, max_v]. The critic optimizer steps the critic AND the encoder.
2. advantage ``r + not_done * gamma * q_mix_target(f', pi_target(f')) - V(f)`` (V after
   step 1); weight = expectile where it is positive, 1 - expectile elsewhere.
3. VAE (detached f): ``mean(weight * (sum((a_hat - a)^2) + kl_beta * KL))``.
4. actor (detached f): ``-Q1(f, decode_target(f, actor(f)))``.
5. Polyak (tau) of encoder, critic, actor and VAE targets, parameters AND buffers.

Opt-in, for short runs and sparse rewards (defaults keep the seed's update):

- ``encoder_action_weight`` > 0: the critic loss in step 1 also gets that weight times the
  MSE of a critic action head (feature -> recorded action), advantage-weighted like the VAE
  (with V before the step) when ``weighted_encoder_action``. It shapes the encoder through
  the critic optimizer only; the VAE and the actor still see detached features.
- ``return_mix`` / ``return_lower_bound``: target_Q and the advantage's Q estimate are
  mixed with / bounded below by the recorded Monte-Carlo return-to-go
  (``batch.return_to_go``).
- ``advantage_weighting="exponential"``: weight = exp(beta * A / std(A)), at most 20
  (exp(beta * A) with ``advantage_std_normalized=False``).
- ``advantage_baseline="joint"``: the advantages (step 2 and the action head) subtract a
  regression b(joint) of their Q estimate on the normalised joint state instead of V(s),
  fitted in step 1 by the critic optimizer (it sees no image, so not the encoder) and
  cross-fitted: ``baseline_folds`` networks, network k fitted on the transitions whose
  ``batch.episode`` is k mod K, a transition scored by the mean of the others.

Joints and actions are normalised inside (``normalization.py``); images stay uint8 until
they reach the training device. The agent uses the replay buffer only through
``sample(batch_size)``, ``statistics`` and ``image_size``.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lapo_ros.lapo.agent_checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_modules,
    read_checkpoint,
    save_checkpoint,
)
from lapo_ros.lapo.batch import DatasetStatistics, TransitionBatch
from lapo_ros.lapo.config import LAPOConfig
from lapo_ros.lapo.deploy import DeployablePolicy, LatentPolicyHead, observation_arrays
from lapo_ros.lapo.networks import Actor, ActorVAE, Critic, ImageJointEncoder
from lapo_ros.lapo.normalization import ActionScaler, JointNormalizer


class TransitionSource(Protocol):
    """What the agents need from a replay buffer (``MultimodalReplayBuffer`` provides it)."""

    statistics: DatasetStatistics
    image_size: int

    def sample(self, batch_size: int) -> TransitionBatch: ...


def default_device(device: str | torch.device | None) -> torch.device:
    """``device`` as given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def polyak_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, for parameters and floating buffers.

    Integer buffers (BatchNorm's ``num_batches_tracked``) are copied.
    """
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers(), strict=True):
        if target_buffer.is_floating_point():
            target_buffer.lerp_(online_buffer, tau)
        else:
            target_buffer.copy_(online_buffer)


def autocast(config: LAPOConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision as configured; only on CUDA (a no-op on CPU)."""
    if config.autocast_dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, config.autocast_dtype))


def adam(params: Any, lr: float, config: LAPOConfig) -> torch.optim.Adam:
    """Adam as configured (``fused_adam``: one kernel per step instead of foreach)."""
    return torch.optim.Adam(params, lr=lr, fused=True if config.fused_adam else None)


def memory_layout(image: torch.Tensor, config: LAPOConfig) -> torch.Tensor:
    """NHWC images when ``channels_last`` is configured."""
    if config.channels_last:
        return image.contiguous(memory_format=torch.channels_last)
    return image


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a deep copy in eval mode that takes no gradients."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target.eval()


def resolve_data(
    owner: str,
    replay_buffer: TransitionSource | None,
    statistics: DatasetStatistics | None,
    overrides: dict[str, Any],
) -> tuple[DatasetStatistics, LAPOConfig]:
    """Statistics and config from the buffer (preferred) or explicit arguments."""
    config = LAPOConfig.from_overrides(overrides, owner=owner)
    if replay_buffer is None:
        if statistics is None:
            raise ValueError(f"{owner}: give a replay_buffer or dataset statistics")
        return statistics, config
    buffer_size = int(replay_buffer.image_size)
    if "image_size" in overrides and int(overrides["image_size"]) != buffer_size:
        raise ValueError(
            f"{owner}: image_size={overrides['image_size']} but the replay buffer holds "
            f"{buffer_size} px images; give the same image_size to both"
        )
    return replay_buffer.statistics, replace(config, image_size=buffer_size)


def check_batch(owner: str, batch: TransitionBatch, image_size: int, joint_dim: int,
                action_dim: int) -> None:
    """Raise ValueError naming the field whose shape does not fit the agent."""
    expected = {
        "image": (9, image_size, image_size),
        "next_image": (9, image_size, image_size),
        "joint": (joint_dim,),
        "next_joint": (joint_dim,),
        "action": (action_dim,),
        "reward": (1,),
        "not_done": (1,),
    }
    size = batch.image.shape[0]
    for name, shape in expected.items():
        tensor = getattr(batch, name)
        flat_scalar = shape == (1,) and tensor.ndim == 1  # [B] rewards are read as [B, 1]
        if tensor.shape[0] != size or (tuple(tensor.shape[1:]) != shape and not flat_scalar):
            raise ValueError(
                f"{owner}: batch.{name} has shape {tuple(tensor.shape)}, expected [{size}, "
                f"{', '.join(map(str, shape))}]"
            )
    if batch.image.dtype != torch.uint8 or batch.next_image.dtype != torch.uint8:
        raise ValueError(f"{owner}: batch images must be uint8, got {batch.image.dtype}")


class OfflineAgent:
    """The training loop and greedy acting ``MultimodalLatent`` and ``BehaviorCloning`` share.

    Subclasses provide ``_update(batch)`` (one step, diagnostics as tensors),
    ``_set_training(flag)`` and the attributes ``replay_buffer``, ``config``, ``device``,
    ``joint_dim``, ``total_it`` and ``_policy`` (their ``DeployablePolicy``).
    """

    replay_buffer: TransitionSource | None
    config: LAPOConfig
    device: torch.device
    joint_dim: int
    total_it: int
    _policy: DeployablePolicy

    def _update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _set_training(self, training: bool) -> None:
        raise NotImplementedError

    def train(self, iterations: int, batch_size: int = 100) -> dict[str, float]:
        """``iterations`` updates on ``replay_buffer.sample(batch_size)``; mean diagnostics."""
        if self.replay_buffer is None:
            raise RuntimeError(f"{type(self).__name__}.train: this agent has no replay_buffer")
        if iterations < 1 or batch_size < 1:
            raise ValueError(
                f"iterations ({iterations}) and batch_size ({batch_size}) must be >= 1"
            )
        totals: dict[str, torch.Tensor] = {}
        for _ in range(iterations):
            batch = self.replay_buffer.sample(batch_size)
            for name, value in self._update(batch).items():
                totals[name] = totals[name] + value if name in totals else value
        metrics = {name: float(value) / iterations for name, value in totals.items()}
        metrics["step"] = float(self.total_it)
        return metrics

    def train_step(self, batch: TransitionBatch) -> dict[str, float]:
        """One update on a batch from any data loader; diagnostics as floats."""
        metrics = {name: float(value) for name, value in self._update(batch).items()}
        metrics["step"] = float(self.total_it)
        return metrics

    @torch.no_grad()
    def select_action(
        self,
        left_img: np.ndarray,
        right_img: np.ndarray,
        global_img: np.ndarray,
        joint: np.ndarray,
    ) -> np.ndarray:
        """uint8 HWC RGB images of any size + joint (robot units) -> action (A,) robot units."""
        image, joint = observation_arrays(
            left_img, right_img, global_img, joint, self.config.image_size, self.joint_dim
        )
        self._set_training(False)
        image_t = memory_layout(torch.from_numpy(image).unsqueeze(0).to(self.device), self.config)
        joint_t = torch.from_numpy(joint).unsqueeze(0).to(self.device)
        return self._policy(image_t, joint_t)[0].cpu().numpy()

    def deployable_policy(self) -> DeployablePolicy:
        """A standalone copy of the greedy policy (eval mode, float32, agent's device)."""
        policy = copy.deepcopy(self._policy).float().eval()
        policy.obs_encoder.to(memory_format=torch.contiguous_format)
        return policy.requires_grad_(False)


class MultimodalLatent(OfflineAgent):
    """Multimodal LAPO agent (the seed's API).

    ``min_v`` / ``max_v`` default to ``statistics.value_bounds``; ``latent_dim``
    defaults to 2 * action_dim. Keyword ``overrides`` are ``LAPOConfig`` fields.
    ``statistics`` replaces the buffer when there is none (export, evaluation).
    """

    kind = "multimodal_latent"

    def __init__(
        self,
        action_dim: int,
        latent_dim: int | None = None,
        max_action: float = 1.0,
        min_v: float | None = None,
        max_v: float | None = None,
        replay_buffer: TransitionSource | None = None,
        device: str | torch.device | None = None,
        *,
        statistics: DatasetStatistics | None = None,
        **overrides: Any,
    ) -> None:
        statistics, config = resolve_data("MultimodalLatent", replay_buffer, statistics, overrides)
        if latent_dim is None:
            latent_dim = config.resolved_latent_dim(action_dim)
        self.config = replace(config, latent_dim=int(latent_dim))
        self.replay_buffer = replay_buffer
        self.statistics = statistics
        self.device = default_device(device)
        self.action_dim = int(action_dim)
        self.latent_dim = int(latent_dim)
        self.joint_dim = int(np.asarray(statistics.joint_mean).size)
        self.max_action = float(max_action)
        bounds = statistics.value_bounds(self.config.gamma)
        self.min_v = float(bounds[0] if min_v is None else min_v)
        self.max_v = float(bounds[1] if max_v is None else max_v)
        if not self.min_v <= self.max_v:
            raise ValueError(f"MultimodalLatent: min_v {self.min_v} exceeds max_v {self.max_v}")
        discount = getattr(replay_buffer, "discount", self.config.gamma)
        if self._uses_returns() and discount != self.config.gamma:
            raise ValueError(
                f"MultimodalLatent: the replay buffer's return_to_go is discounted at "
                f"{discount}, the agent's gamma is {self.config.gamma}; give the buffer "
                f"discount={self.config.gamma}"
            )
        self.total_it = 0
        self._build()

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        config, device = self.config, self.device
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
            self.critic = Critic(
                config.feature_dim, self.action_dim, config.hidden_dims,
                action_head=config.encoder_action_weight > 0, joint_dim=self.joint_dim,
                baseline_folds=config.baseline_folds if self._joint_baseline() else 0)
            self.actor = Actor(
                config.feature_dim, self.latent_dim, config.max_latent_action, config.hidden_dims
            )
            self.actor_vae = ActorVAE(
                config.feature_dim,
                self.action_dim,
                self.latent_dim,
                config.max_latent_action,
                self.max_action,
                config.hidden_dims,
            )
        for module in (self.obs_encoder, self.critic, self.actor, self.actor_vae):
            module.to(device)
        if config.channels_last:
            self.obs_encoder.to(memory_format=torch.channels_last)
        self.obs_encoder_target = frozen_copy(self.obs_encoder)
        self.critic_target = frozen_copy(self.critic)
        self.actor_target = frozen_copy(self.actor)
        self.actor_vae_target = frozen_copy(self.actor_vae)
        self.joint_normalizer = JointNormalizer(self.statistics, self.joint_dim).to(device)
        self.action_scaler = ActionScaler(self.statistics, self.action_dim, self.max_action).to(
            device
        )
        self.critic_optimizer = adam(
            [{"params": self.critic.parameters()}, {"params": self.obs_encoder.parameters()}],
            config.critic_lr,
            config,
        )
        self.actorvae_optimizer = adam(self.actor_vae.parameters(), config.actor_vae_lr, config)
        self.actor_optimizer = adam(self.actor.parameters(), config.actor_lr, config)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        # select_action runs the online encoder and actor with the target decoder (as LAPO)
        self._policy = DeployablePolicy(
            self.obs_encoder,
            LatentPolicyHead(self.actor, self.actor_vae_target),
            self.joint_normalizer,
            self.action_scaler,
            config.image_size,
            self.action_dim,
        )

    def _online(self) -> tuple[nn.Module, ...]:
        return self.obs_encoder, self.critic, self.actor, self.actor_vae

    def _set_training(self, training: bool) -> None:
        for module in self._online():
            module.train(training)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.config, self.device)

    def _images(self, image: torch.Tensor) -> torch.Tensor:
        return memory_layout(image, self.config)

    # ------------------------------------------------------------------ training
    def _q_mix(self, q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        weight = self.config.doubleq_min
        return weight * torch.min(q1, q2) + (1.0 - weight) * torch.max(q1, q2)

    def _advantage_weight(self, advantage: torch.Tensor) -> torch.Tensor:
        """Per-transition weight of the VAE loss: LAPO's expectile step on the sign, or
        exp(beta * A [/ std(A)]) clipped (AWR-like), as configured."""
        config = self.config
        if config.advantage_weighting == "exponential":
            scale = 1.0
            if config.advantage_std_normalized and advantage.numel() > 1:
                scale = advantage.std().clamp_min(1e-6)
            return torch.exp(config.advantage_beta * advantage / scale).clamp(max=20.0)
        positive = (advantage > 0).float()
        return positive * config.expectile + (1.0 - positive) * (1.0 - config.expectile)

    def _uses_returns(self) -> bool:
        return self.config.return_mix > 0 or self.config.return_lower_bound

    def _with_returns(self, td_target: torch.Tensor, batch: TransitionBatch) -> torch.Tensor:
        """``td_target`` mixed with / bounded below by the batch's Monte-Carlo return-to-go
        (as configured; kept where the return is unknown, i.e. timed-out episodes)."""
        if not self._uses_returns():
            return td_target
        if batch.return_to_go is None:
            raise ValueError(
                "MultimodalLatent: return_mix / return_lower_bound need batch.return_to_go "
                "(MultimodalReplayBuffer batches carry it)"
            )
        returns = batch.return_to_go.float().reshape(-1, 1)
        returns = torch.where(torch.isfinite(returns), returns, td_target)
        target = td_target
        if self.config.return_lower_bound:
            target = torch.maximum(target, returns)
        mix = self.config.return_mix
        return (1.0 - mix) * target + mix * returns if mix > 0 else target

    def _joint_baseline(self) -> bool:
        return self.config.advantage_baseline == "joint"

    def _fold_mask(self, batch: TransitionBatch) -> torch.Tensor | None:
        """One-hot [B, baseline_folds] of each transition's fold (episode index mod K);
        None without cross-fitting."""
        folds = self.config.baseline_folds
        if not self._joint_baseline() or folds == 1:
            return None
        if batch.episode is None:
            raise ValueError(
                "MultimodalLatent: advantage_baseline='joint' with baseline_folds > 1 needs "
                "batch.episode (MultimodalReplayBuffer batches carry it)"
            )
        return F.one_hot(batch.episode.reshape(-1).long() % folds, folds).float()

    @staticmethod
    def _in_fold(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """[B, 1]: the baseline network fitted on each transition's own fold."""
        return values if mask is None else (values * mask).sum(dim=1, keepdim=True)

    @staticmethod
    def _held_out(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """[B, 1]: the mean of the baseline networks that never saw each transition's
        episode (the one network without cross-fitting)."""
        if mask is None:
            return values
        return (values * (1.0 - mask)).sum(dim=1, keepdim=True) / (mask.shape[1] - 1)

    def _target_latent(self, feature: torch.Tensor) -> torch.Tensor:
        latent = self.actor_target(feature)
        std, clip = self.config.target_latent_noise, self.config.target_latent_noise_clip
        if std > 0:
            noise = torch.randn(
                latent.shape, generator=self.generator, device=latent.device, dtype=latent.dtype
            )
            latent = latent + (noise * std).clamp(-clip, clip)
        return latent

    def _update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        config = self.config
        check_batch("MultimodalLatent", batch, config.image_size, self.joint_dim, self.action_dim)
        batch = batch.to(self.device, non_blocking=True)
        self._set_training(True)
        joint = self.joint_normalizer(batch.joint.float())
        next_joint = self.joint_normalizer(batch.next_joint.float())
        action = self.action_scaler.normalize(batch.action.float())
        reward = batch.reward.float().reshape(-1, 1)
        not_done = batch.not_done.float().reshape(-1, 1)
        discount = config.gamma * not_done
        folds = self._fold_mask(batch)

        # 1. critic + encoder
        with self._autocast():
            feature = self.obs_encoder(self._images(batch.image), joint)
            with torch.no_grad():
                detached = feature.detach()
                next_feature = self.obs_encoder_target(self._images(batch.next_image), next_joint)
                target_q = reward + discount * self.critic_target.v(next_feature).float()
                target_q = self._with_returns(target_q, batch)
                target_action = self.actor_vae_target.decode_latent(
                    detached, self._target_latent(detached)
                )
                target_v = self._q_mix(*self.critic_target(detached, target_action)).float()
            current_q1, current_q2 = self.critic(feature, action)
            current_v = self.critic.v(feature)
        target_q = target_q.clamp(self.min_v, self.max_v)
        q1_loss = F.mse_loss(current_q1.float(), target_q)
        q2_loss = F.mse_loss(current_q2.float(), target_q)
        v_loss = F.mse_loss(current_v.float(), target_v.clamp(self.min_v, self.max_v))
        critic_loss = q1_loss + q2_loss + v_loss
        extra: dict[str, torch.Tensor] = {}
        loss = critic_loss
        # advantage's Q estimate: target networks only, unchanged by the critic step
        with torch.no_grad(), self._autocast():
            next_action = self.actor_vae_target.decode_latent(
                next_feature, self.actor_target(next_feature)
            )
            next_q = self._q_mix(*self.critic_target(next_feature, next_action)).float()
        q_estimate = self._with_returns(
            reward + discount * next_q.clamp(self.min_v, self.max_v), batch
        )
        baseline = current_v.detach().float()  # what the advantage subtracts, before the step
        if self._joint_baseline():  # cross-fitted regression of q_estimate on the joints
            with self._autocast():
                baselines = self.critic.baselines(joint).float()
            baseline_loss = F.mse_loss(self._in_fold(baselines, folds), q_estimate)
            loss = loss + baseline_loss
            extra["baseline_loss"] = baseline_loss.detach()
            baseline = self._held_out(baselines.detach(), folds)
        if config.encoder_action_weight > 0:  # auxiliary representation loss (opt-in)
            with self._autocast():
                predicted = self.critic.predict_action(feature)
            aux_error = (predicted.float() - action).pow(2).mean(dim=1, keepdim=True)
            if config.weighted_encoder_action:
                aux_error = aux_error * self._advantage_weight(
                    q_estimate - baseline.clamp(self.min_v, self.max_v))
            aux_loss = aux_error.mean()
            loss = loss + config.encoder_action_weight * aux_loss
            extra["encoder_action_loss"] = aux_loss.detach()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        encoder_grad_norm = torch.nn.utils.get_total_norm(
            [p.grad for p in self.obs_encoder.parameters() if p.grad is not None]
        )
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [*self.critic.parameters(), *self.obs_encoder.parameters()], config.max_grad_norm
            )
        self.critic_optimizer.step()

        # 2. advantage from the target networks and the updated V (or joint baseline)
        with torch.no_grad(), self._autocast():
            if self._joint_baseline():
                value = self._held_out(self.critic.baselines(joint).float(), folds)
            else:
                value = self.critic.v(detached).float()
        advantage = q_estimate - value.clamp(self.min_v, self.max_v)
        positive = (advantage > 0).float()
        weight = self._advantage_weight(advantage)

        # 3. advantage-weighted CVAE on detached features
        with self._autocast():
            reconstruction, _, mean, log_var = self.actor_vae(detached, action, self.generator)
        mean, log_var = mean.float(), log_var.float()
        recon_loss = (reconstruction.float() - action).pow(2).sum(dim=1, keepdim=True)
        kl_loss = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1, keepdim=True)
        vae_loss = (weight * (recon_loss + config.kl_beta * kl_loss)).mean()
        self.actorvae_optimizer.zero_grad(set_to_none=True)
        vae_loss.backward()
        self.actorvae_optimizer.step()

        # 4. latent policy through the target decoder, on detached features
        with self._autocast():
            policy_action = self.actor_vae_target.decode_latent(detached, self.actor(detached))
            actor_loss = -self.critic.q1(detached, policy_action).float().mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=list(self.actor.parameters()))
        self.actor_optimizer.step()

        # 5. targets follow, buffers included
        polyak_update(self.obs_encoder, self.obs_encoder_target, config.tau)
        polyak_update(self.critic, self.critic_target, config.tau)
        polyak_update(self.actor, self.actor_target, config.tau)
        polyak_update(self.actor_vae, self.actor_vae_target, config.tau)
        self.total_it += 1
        return {
            "critic_loss": critic_loss.detach(),
            "q1_loss": q1_loss.detach(),
            "q2_loss": q2_loss.detach(),
            "v_loss": v_loss.detach(),
            "vae_loss": vae_loss.detach(),
            "recon_loss": recon_loss.detach().mean(),
            "kl_loss": kl_loss.detach().mean(),
            "actor_loss": actor_loss.detach(),
            "q_mean": current_q1.detach().float().mean(),
            "v_mean": current_v.detach().float().mean(),
            "target_q_mean": target_q.mean(),
            "advantage_mean": advantage.mean(),
            "positive_advantage_share": positive.mean(),
            "encoder_grad_norm": encoder_grad_norm.detach(),
            **extra,
        }

    # ------------------------------------------------------------------ checkpoints
    def _modules(self) -> dict[str, Any]:
        return {
            "obs_encoder": self.obs_encoder,
            "obs_encoder_target": self.obs_encoder_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "actor": self.actor,
            "actor_target": self.actor_target,
            "actor_vae": self.actor_vae,
            "actor_vae_target": self.actor_vae_target,
            "joint_normalizer": self.joint_normalizer,
            "action_scaler": self.action_scaler,
        }

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "critic_optimizer": self.critic_optimizer,
            "actorvae_optimizer": self.actorvae_optimizer,
            "actor_optimizer": self.actor_optimizer,
        }

    def _arguments(self) -> dict[str, Any]:
        return {
            "action_dim": self.action_dim,
            "latent_dim": self.latent_dim,
            "max_action": self.max_action,
            "min_v": self.min_v,
            "max_v": self.max_v,
        }

    def save(self, path: str | os.PathLike) -> None:
        """One file: networks, targets, optimizers, statistics, config, step, RNG state."""
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": self.kind,
            "arguments": self._arguments(),
            "config": self.config.to_dict(),
            "statistics": self.statistics.to_dict(),
            "step": self.total_it,
            "modules": {name: module.state_dict() for name, module in self._modules().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self._optimizers().items()},
            "generator": self.generator.get_state(),
        })

    def load(self, path: str | os.PathLike) -> None:
        """Restore everything ``save`` wrote into this agent (same sizes required)."""
        path = os.fspath(path)
        payload = read_checkpoint(path, self.kind)
        for name, value in payload["arguments"].items():
            mine = getattr(self, name)
            if name in ("action_dim", "latent_dim") and value != mine:
                raise CheckpointError(f"checkpoint {path!r}: {name} {value}, this agent has {mine}")
        load_modules(path, self._modules(), payload["modules"])
        load_modules(path, self._optimizers(), payload["optimizers"])
        self.statistics = DatasetStatistics.from_dict(payload["statistics"])
        self.min_v = float(payload["arguments"]["min_v"])
        self.max_v = float(payload["arguments"]["max_v"])
        self.total_it = int(payload["step"])
        try:
            self.generator.set_state(payload["generator"])
        except RuntimeError:  # saved on another device type: a fresh, still seeded stream
            self.generator.manual_seed(self.config.seed + self.total_it)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        replay_buffer: TransitionSource | None = None,
    ) -> MultimodalLatent:
        """Rebuild a saved agent; without ``replay_buffer`` it can act, export and evaluate."""
        payload = read_checkpoint(path, cls.kind)
        config = LAPOConfig.from_dict(payload["config"])
        # the weights come from the checkpoint, not from the pretrained file
        overrides = {**config.to_dict(), "pretrained_path": None}
        overrides.pop("latent_dim")  # an argument of its own
        agent = cls(
            **payload["arguments"],
            replay_buffer=replay_buffer,
            device=device,
            statistics=DatasetStatistics.from_dict(payload["statistics"]),
            **overrides,
        )
        agent.config = config
        agent.load(path)
        return agent
