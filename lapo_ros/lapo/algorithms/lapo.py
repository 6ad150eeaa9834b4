"""``MultimodalLatent``: LAPO on a 9-channel ResNet18 + joint feature, critic-led encoder.

One update (``update``) on a batch (s, a, r, s', not_done) as named steps, each the
original LAPO's (pcchenxi/LAPO-offlienRL ``algos/algos_vae.py``, ``Latent.train``) with
the state read through the encoders: f = enc(s), f' = enc_target(s'), and
``q_mix(f, a) = doubleq_min * min(Q1, Q2) + (1 - doubleq_min) * max(Q1, Q2)`` of the
target critic, ``pi_target(f) = decode_target(f, actor_target(f))``:

1. ``critic_step``: ``target_Q = r + not_done * gamma * V(f')`` (online V, as LAPO);
   ``target_v = q_mix(f, decode_target(f, actor_target(f) + noise))``, noise N(0, 0.1)
   clipped at 0.2; loss = mse(Q1, target_Q) + mse(Q2, target_Q)
   + mse(V(f), clamp(target_v, min_v, max_v)) [+ encoder_action_weight * mse of the
   critic's action head]. The critic optimizer steps the critic AND the encoder.
2. ``advantages``: ``r + not_done * gamma * q_mix(f', pi_target(f')) - V(f)`` with V after
   step 1; weight = expectile where it is positive, 1 - expectile elsewhere.
3. ``vae_step`` (detached f): ``mean(weight * (sum((a_hat - a)^2) + kl_beta * KL))``.
4. ``actor_step`` (detached f): ``-Q1(f, decode_target(f, actor(f)))``.
5. ``sync_targets``: Polyak (tau) of encoder, critic, actor and VAE, parameters AND buffers.

What is ours, not LAPO's (LAPO has no images): the encoder and where each term reads it
(the online encoder for s, its target for s', the VAE and actor on detached f), the
critic's action head (on by default, see ``LAPOConfig.encoder_action_weight``), and tau
0.05 instead of 0.005 (see ``LAPOConfig.tau``). Joints and actions are z-scored with the
dataset's statistics inside (``normalization.py``); images stay uint8 until they reach the
training device. The agent uses the replay buffer only through ``sample(batch_size)``,
``statistics`` and ``image_size``.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, replace
from typing import Any, Protocol

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
from lapo_ros.lapo.data.batch import DatasetStatistics, TransitionBatch
from lapo_ros.lapo.models.networks import Actor, ActorVAE, Critic, ImageJointEncoder
from lapo_ros.lapo.models.normalization import ActionScaler, JointNormalizer
from lapo_ros.lapo.models.policy import DeployablePolicy, LatentPolicyHead, observation_arrays


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


@dataclass
class UpdateInputs:
    """A batch on the training device, normalised: what every update step reads."""

    image: torch.Tensor  # uint8 [B, 9, H, W]
    next_image: torch.Tensor
    joint: torch.Tensor  # z-scored [B, J]
    next_joint: torch.Tensor
    action: torch.Tensor  # z-scored [B, A]
    reward: torch.Tensor  # [B, 1]
    discount: torch.Tensor  # gamma * not_done, [B, 1]


@dataclass
class CriticStep:
    """What ``critic_step`` computed: features (detached), targets, estimates, losses."""

    feature: torch.Tensor  # enc(s) before the step, detached
    next_feature: torch.Tensor  # enc_target(s')
    target_q: torch.Tensor
    target_v: torch.Tensor  # before the clamp to [min_v, max_v]
    q1: torch.Tensor
    v: torch.Tensor
    losses: dict[str, torch.Tensor]
    encoder_grad_norm: torch.Tensor


@dataclass
class Advantages:
    advantage: torch.Tensor  # [B, 1]
    weight: torch.Tensor  # [B, 1], the VAE loss weight


@dataclass
class UpdateRecord:
    """Everything one ``MultimodalLatent.update`` computed, step by step."""

    critic: CriticStep
    advantages: Advantages
    vae: dict[str, torch.Tensor]
    actor: dict[str, torch.Tensor]


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
    defaults to 2 * action_dim. ``max_action`` is the seed's argument, kept and saved; as in
    the original LAPO the update does not use it (actions are z-scored by the dataset and
    the deployed action is clipped to the recorded range). Keyword ``overrides`` are
    ``LAPOConfig`` fields. ``statistics`` replaces the buffer when there is none (export,
    evaluation).
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
                action_head=config.encoder_action_weight > 0)
            self.actor = Actor(
                config.feature_dim, self.latent_dim, config.max_latent_action, config.hidden_dims
            )
            self.actor_vae = ActorVAE(
                config.feature_dim,
                self.action_dim,
                self.latent_dim,
                config.max_latent_action,
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
        self.action_scaler = ActionScaler(self.statistics, self.action_dim).to(device)
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
    def _q_mix(self, critic: Critic, feature: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q1, q2 = critic(feature, action)
        weight = self.config.doubleq_min
        return weight * torch.min(q1, q2) + (1.0 - weight) * torch.max(q1, q2)

    def _target_policy_value(self, feature: torch.Tensor, noise: bool) -> torch.Tensor:
        """q_mix of the target critic at the target policy's action (LAPO's get_target_q),
        with clipped noise on the latent when ``noise``."""
        latent = self.actor_target(feature)
        if noise and self.config.target_latent_noise > 0:
            std, clip = self.config.target_latent_noise, self.config.target_latent_noise_clip
            draw = torch.randn(
                latent.shape, generator=self.generator, device=latent.device, dtype=latent.dtype
            )
            latent = latent + (draw * std).clamp(-clip, clip)
        action = self.actor_vae_target.decode_latent(feature, latent)
        return self._q_mix(self.critic_target, feature, action)

    def _inputs(self, batch: TransitionBatch) -> UpdateInputs:
        check_batch("MultimodalLatent", batch, self.config.image_size, self.joint_dim,
                    self.action_dim)
        batch = batch.to(self.device, non_blocking=True)
        return UpdateInputs(
            image=self._images(batch.image),
            next_image=self._images(batch.next_image),
            joint=self.joint_normalizer(batch.joint.float()),
            next_joint=self.joint_normalizer(batch.next_joint.float()),
            action=self.action_scaler.normalize(batch.action.float()),
            reward=batch.reward.float().reshape(-1, 1),
            discount=self.config.gamma * batch.not_done.float().reshape(-1, 1),
        )

    def critic_step(self, x: UpdateInputs) -> CriticStep:
        """Step 1: fit Q1, Q2 and V (and the action head); steps the critic and encoder."""
        with self._autocast():
            feature = self.obs_encoder(x.image, x.joint)
            with torch.no_grad():
                next_feature = self.obs_encoder_target(x.next_image, x.next_joint)
                target_q = x.reward + x.discount * self.critic.v(next_feature).float()
                target_v = self._target_policy_value(feature.detach(), noise=True).float()
            q1, q2 = self.critic(feature, x.action)
            v = self.critic.v(feature)
        losses = {
            "q1_loss": F.mse_loss(q1.float(), target_q),
            "q2_loss": F.mse_loss(q2.float(), target_q),
            "v_loss": F.mse_loss(v.float(), target_v.clamp(self.min_v, self.max_v)),
        }
        loss = losses["q1_loss"] + losses["q2_loss"] + losses["v_loss"]
        losses["critic_loss"] = loss
        if self.config.encoder_action_weight > 0:
            with self._autocast():
                predicted = self.critic.predict_action(feature).float()
            losses["encoder_action_loss"] = F.mse_loss(predicted, x.action)
            loss = loss + self.config.encoder_action_weight * losses["encoder_action_loss"]
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        encoder_grad_norm = torch.nn.utils.get_total_norm(
            [p.grad for p in self.obs_encoder.parameters() if p.grad is not None]
        )
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [*self.critic.parameters(), *self.obs_encoder.parameters()],
                self.config.max_grad_norm,
            )
        self.critic_optimizer.step()
        return CriticStep(
            feature=feature.detach(), next_feature=next_feature, target_q=target_q,
            target_v=target_v, q1=q1.detach().float(), v=v.detach().float(),
            losses={k: value.detach() for k, value in losses.items()},
            encoder_grad_norm=encoder_grad_norm.detach(),
        )

    @torch.no_grad()
    def advantages(self, x: UpdateInputs, critic: CriticStep) -> Advantages:
        """Step 2: one-step advantage against the updated V, and LAPO's expectile weight."""
        with self._autocast():
            value = self.critic.v(critic.feature).float()
            next_q = self._target_policy_value(critic.next_feature, noise=False).float()
        advantage = x.reward + x.discount * next_q - value
        expectile = self.config.expectile
        weight = torch.where(advantage > 0, expectile, 1.0 - expectile)
        return Advantages(advantage=advantage, weight=weight)

    def vae_step(self, feature: torch.Tensor, action: torch.Tensor,
                 weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step 3: the advantage-weighted conditional VAE on detached features."""
        with self._autocast():
            reconstruction, _, mean, log_var = self.actor_vae(feature, action, self.generator)
        mean, log_var = mean.float(), log_var.float()
        recon = (reconstruction.float() - action).pow(2).sum(dim=1, keepdim=True)
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1, keepdim=True)
        loss = (weight * (recon + self.config.kl_beta * kl)).mean()
        self.actorvae_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actorvae_optimizer.step()
        return {"vae_loss": loss.detach(), "recon_loss": recon.detach().mean(),
                "kl_loss": kl.detach().mean()}

    def actor_step(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step 4: the latent policy maximises Q1 through the target decoder."""
        with self._autocast():
            action = self.actor_vae_target.decode_latent(feature, self.actor(feature))
            loss = -self.critic.q1(feature, action).float().mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.actor.parameters()))
        self.actor_optimizer.step()
        return {"actor_loss": loss.detach()}

    @torch.no_grad()
    def sync_targets(self) -> None:
        """Step 5: every target follows its network by tau, buffers included."""
        for online, target in self._target_pairs():
            polyak_update(online, target, self.config.tau)

    def _target_pairs(self) -> tuple[tuple[nn.Module, nn.Module], ...]:
        return ((self.obs_encoder, self.obs_encoder_target), (self.critic, self.critic_target),
                (self.actor, self.actor_target), (self.actor_vae, self.actor_vae_target))

    def update(self, batch: TransitionBatch) -> UpdateRecord:
        """One LAPO update; the record holds every step's targets, weights and losses."""
        self._set_training(True)
        x = self._inputs(batch)
        critic = self.critic_step(x)
        advantages = self.advantages(x, critic)
        vae = self.vae_step(critic.feature, x.action, advantages.weight)
        actor = self.actor_step(critic.feature)
        self.sync_targets()
        self.total_it += 1
        return UpdateRecord(critic, advantages, vae, actor)

    def _update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        record = self.update(batch)
        critic, advantage = record.critic, record.advantages.advantage
        return {
            **critic.losses, **record.vae, **record.actor,
            "q_mean": critic.q1.mean(),
            "v_mean": critic.v.mean(),
            "target_q_mean": critic.target_q.mean(),
            "advantage_mean": advantage.mean(),
            "positive_advantage_share": (advantage > 0).float().mean(),
            "encoder_grad_norm": critic.encoder_grad_norm,
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
