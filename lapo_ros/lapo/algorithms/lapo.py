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
2. ``advantages`` (LAPO's one-step estimate): ``r + not_done * gamma * q_mix(f',
   pi_target(f')) - V(f)`` with V after step 1; weight = expectile where it is positive,
   1 - expectile elsewhere.
3. ``vae_step`` (LAPO: detached f): ``mean(weight * (sum((a_hat - a)^2) + kl_beta * KL))``.
4. ``actor_step`` (detached f): ``-Q1(f, decode_target(f, actor(f)))``.
5. ``sync_targets``: Polyak (tau) of encoder, critic, actor and VAE, parameters AND buffers.

What is ours, not LAPO's (LAPO has no images): the encoder and where each term reads it
(the online encoder for s, its target for s', the actor on detached f), the critic's
action head (``LAPOConfig.encoder_action_weight``), tau 0.05 instead of 0.005
(``LAPOConfig.tau``) and, by default, how step 2 makes the VAE's weights from
demonstrations: cross-fitted critics (``critic_folds`` K = 2: K encoder + critic pairs,
pair k fitted on the episodes outside fold k; each transition's advantage and actor
gradient from its held-out pair; the policy reads pair 0's features), the return estimate
(``advantage_estimate="return"``: ``G - V(f)``, G the recorded discounted return-to-go;
``return_baseline="behaviour"`` compares with V_b, a critic head regressed on G in step 1;
one-step where the episode timed out; batches then carry ``return_to_go``), one weight
sign per demonstration (``advantage_scope="episode"``: its first step's target, G_0, against
the mean of the recorded starts' V(s_0), ``episode_baseline="mean"``; ``EpisodeAdvantage``;
batches then carry ``episode`` and ``step``), expectile 1.0, and the
VAE's loss training the encoder (``vae_encoder_gradient``: step 3 on f, not detached);
opt-in, DrQ's random shift of the training images (``random_shift``). LAPO's own choices
are one setting each (1, "one_step", "step", 0.9, false); BENCHMARKS.md (learning)
measures each. With ``chunk_size`` h > 1 (action chunks, ours too) the VAE, decoder,
actor latent and critic act on the h-action sequence (z-scored per joint, concatenated),
and step 1's target is the n-step backup of ``chunk_backup``. Joints and actions are
z-scored with the dataset's statistics inside (``models/normalization.py``); images stay
uint8 until they reach the training device. The agent uses the replay buffer only through
``sample(batch_size, discount, chunk_size)``,
``statistics``, ``image_size``, ``joint_names``, ``rate_hz`` and ``num_episodes``; its
modules and optimisers are one ``LAPOModules`` record (``base.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
from lapo_ros.lapo.algorithms.config import LAPOConfig
from lapo_ros.lapo.compute import (
    adam,
    autocast,
    encoder_step,
    frozen_copy,
    polyak_update,
)
from lapo_ros.lapo.data.batch import DatasetStatistics, TransitionBatch
from lapo_ros.lapo.models.networks import Actor, ActorVAE, Critic, ImageJointEncoder
from lapo_ros.lapo.models.normalization import ActionScaler, JointNormalizer
from lapo_ros.lapo.models.policy import DeployablePolicy, LatentPolicyHead


@dataclass
class UpdateInputs:
    """A batch on the training device, normalised: what every update step reads."""

    image: torch.Tensor  # uint8 [B, 9, H, W]
    next_image: torch.Tensor  # s' (with chunks of h: s_{t+n}, n <= h)
    joint: torch.Tensor  # z-scored [B, J]
    next_joint: torch.Tensor
    action: torch.Tensor  # z-scored [B, A] (chunks: [B, h * A], a_t first)
    reward: torch.Tensor  # [B, 1] (chunks: sum_{i<n} gamma^i r_{t+i})
    discount: torch.Tensor  # gamma * not_done, [B, 1] (chunks: gamma^n * not_done)
    return_to_go: torch.Tensor | None  # [B, 1] (NaN: timed out); with the "return" estimate
    fold: torch.Tensor | None  # [B] critic fold of each transition's episode (critic_folds > 1)
    episode: torch.Tensor | None  # [B] episode of each transition (advantage_scope "episode")
    step: torch.Tensor | None  # [B] its index inside the episode (advantage_scope "episode")


@dataclass
class CriticStep:
    """What ``critic_step`` computed: features (detached), targets, estimates, losses."""

    feature: torch.Tensor  # enc(s) before the step, detached: what the actor and VAE read
    next_feature: torch.Tensor  # enc_target(s')
    fold_features: list[torch.Tensor]  # the same through each critic fold's encoder (0 first)
    fold_next_features: list[torch.Tensor]
    # of the held-out fold's critic for each transition (the only critic at critic_folds 1)
    target_q: torch.Tensor
    target_v: torch.Tensor  # before the clamp to [min_v, max_v]
    q1: torch.Tensor
    v: torch.Tensor
    losses: dict[str, torch.Tensor]
    encoder_grad_norm: torch.Tensor


@dataclass
class Advantages:
    """What ``advantages`` computed: the advantage and the VAE weight."""

    advantage: torch.Tensor  # [B, 1]
    scored: torch.Tensor  # [B, 1], what the weight's sign is taken of (advantage_scope)
    weight: torch.Tensor  # [B, 1], the VAE loss weight


@dataclass
class UpdateRecord:
    """Everything one ``MultimodalLatent.update`` computed, step by step."""

    critic: CriticStep
    advantages: Advantages
    vae: dict[str, torch.Tensor]
    actor: dict[str, torch.Tensor]


@dataclass
class LAPOModules(AgentModules):
    """The networks, targets, normalisers and optimisers of one ``MultimodalLatent``."""

    obs_encoder: ImageJointEncoder
    critic: Critic
    actor: Actor
    actor_vae: ActorVAE
    obs_encoder_target: ImageJointEncoder
    critic_target: Critic
    actor_target: Actor
    actor_vae_target: ActorVAE
    joint_normalizer: JointNormalizer
    action_scaler: ActionScaler
    # critic folds 1..K-1 (LAPOConfig.critic_folds; empty at 1); fold 0 is obs_encoder + critic
    fold_encoders: nn.ModuleList
    fold_critics: nn.ModuleList
    fold_encoders_target: nn.ModuleList
    fold_critics_target: nn.ModuleList
    episode_advantage: EpisodeAdvantage  # first-step advantage per episode (advantage_scope)
    critic_optimizer: torch.optim.Adam  # every critic + its observation encoder
    actorvae_optimizer: torch.optim.Adam
    actor_optimizer: torch.optim.Adam


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
    config_class = LAPOConfig
    size_arguments = ("action_dim", "latent_dim")
    modules: LAPOModules

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
        joint_names: Sequence[str] | None = None,
        rate_hz: float | None = None,
        **overrides: Any,
    ) -> None:
        self._setup(replay_buffer, statistics, device, overrides, joint_names, rate_hz)
        check_folds(self.config.critic_folds, getattr(replay_buffer, "num_episodes", None))
        self.action_dim = int(action_dim)
        self.chunk_dim = self.config.chunk_size * self.action_dim  # what the heads model
        self.latent_dim = int(self.config.resolved_latent_dim(self.chunk_dim)
                              if latent_dim is None else latent_dim)
        self.config = replace(self.config, latent_dim=self.latent_dim)
        self.max_action = float(max_action)
        bounds = self.statistics.value_bounds(self.config.gamma)
        self.min_v = float(bounds[0] if min_v is None else min_v)
        self.max_v = float(bounds[1] if max_v is None else max_v)
        if not self.min_v <= self.max_v:
            raise ValueError(f"MultimodalLatent: min_v {self.min_v} exceeds max_v {self.max_v}")
        self.modules = self._build()
        self._compile_encoders()
        # select_action runs the online encoder and actor with the target decoder (as LAPO)
        self._policy = DeployablePolicy(
            self.obs_encoder,
            LatentPolicyHead(self.actor, self.actor_vae_target),
            self.joint_normalizer,
            self.action_scaler,
            self.config.image_size,
            self.action_dim,
            self.config.chunk_size,
        )

    def _build(self) -> LAPOModules:
        config, device = self.config, self.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            obs_encoder = self._encoder()
            critic = self._critic()
            actor = Actor(config.feature_dim, self.latent_dim, config.max_latent_action,
                          config.hidden_dims).to(device)
            actor_vae = ActorVAE(config.feature_dim, self.chunk_dim, self.latent_dim,
                                 config.max_latent_action, config.hidden_dims).to(device)
            fold_encoders = nn.ModuleList(
                self._encoder() for _ in range(config.critic_folds - 1))
            fold_critics = nn.ModuleList(self._critic() for _ in range(config.critic_folds - 1))
        fused = config.fused_adam
        return LAPOModules(
            obs_encoder=obs_encoder, critic=critic, actor=actor, actor_vae=actor_vae,
            obs_encoder_target=frozen_copy(obs_encoder), critic_target=frozen_copy(critic),
            actor_target=frozen_copy(actor), actor_vae_target=frozen_copy(actor_vae),
            joint_normalizer=JointNormalizer(self.statistics, self.joint_dim).to(device),
            action_scaler=ActionScaler(self.statistics, self.action_dim).to(device),
            fold_encoders=fold_encoders, fold_critics=fold_critics,
            fold_encoders_target=frozen_copy(fold_encoders),
            fold_critics_target=frozen_copy(fold_critics),
            episode_advantage=EpisodeAdvantage().to(device),
            critic_optimizer=adam([{"params": critic.parameters()},
                                   {"params": obs_encoder.parameters()},
                                   *({"params": module.parameters()}
                                     for module in (*fold_critics, *fold_encoders))],
                                  config.critic_lr, fused),
            actorvae_optimizer=adam(
                [{"params": actor_vae.parameters()},
                 *([{"params": obs_encoder.parameters()}] if config.vae_encoder_gradient
                   else [])],
                config.actor_vae_lr, fused),
            actor_optimizer=adam(actor.parameters(), config.actor_lr, fused),
        )

    def _critic(self) -> Critic:
        config = self.config
        return Critic(config.feature_dim, self.chunk_dim, config.hidden_dims,
                      action_head=config.encoder_action_weight > 0,
                      behaviour_head=config.behaviour_baseline).to(self.device)

    def _folds(self) -> list[tuple[ImageJointEncoder, Critic, ImageJointEncoder, Critic]]:
        """(encoder, critic, encoder_target, critic_target) of every critic fold, 0 first."""
        m = self.modules
        return [(m.obs_encoder, m.critic, m.obs_encoder_target, m.critic_target),
                *zip(m.fold_encoders, m.fold_critics, m.fold_encoders_target,
                     m.fold_critics_target, strict=True)]

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.autocast_dtype, self.device)

    # ------------------------------------------------------------------ training
    def _q_mix(self, critic: Critic, feature: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q1, q2 = critic(feature, action)
        weight = self.config.doubleq_min
        return weight * torch.min(q1, q2) + (1.0 - weight) * torch.max(q1, q2)

    def _target_policy_action(self, feature: torch.Tensor, noise: bool) -> torch.Tensor:
        """The target policy's action (LAPO's get_target_q scores it with the target
        critic), with clipped noise on the latent when ``noise``."""
        latent = self.actor_target(feature)
        if noise and self.config.target_latent_noise > 0:
            std, clip = self.config.target_latent_noise, self.config.target_latent_noise_clip
            draw = torch.randn(
                latent.shape, generator=self.generator, device=latent.device, dtype=latent.dtype
            )
            latent = latent + (draw * std).clamp(-clip, clip)
        return self.actor_vae_target.decode_latent(feature, latent)

    def _inputs(self, batch: TransitionBatch, augment: bool = True) -> UpdateInputs:
        check_batch("MultimodalLatent", batch, self.config.image_size, self.joint_dim,
                    self.action_dim, self.chunk_size)
        batch = batch.to(self.device, non_blocking=True)
        reward, discount = chunk_backup(batch, self.config.gamma)
        images = self._training_images if augment else self._images
        returns = None
        if self.config.advantage_estimate == "return":
            if batch.return_to_go is None:
                raise ValueError(
                    "MultimodalLatent: advantage_estimate 'return' needs batches with "
                    "return_to_go: sample them with discount=agent.return_discount"
                )
            returns = batch.return_to_go.float().reshape(-1, 1)
        fold = episode = step = None
        needs = {"critic_folds > 1": ("episode",) if self.config.critic_folds > 1 else (),
                 "advantage_scope 'episode'": ("episode", "step")
                 if self.config.advantage_scope == "episode" else ()}
        for setting, names in needs.items():
            for name in names:
                if getattr(batch, name) is None:
                    raise ValueError(f"MultimodalLatent: {setting} needs batches with {name} "
                                     "(the replay buffer's batches carry it)")
        if self.config.critic_folds > 1:
            fold = episode_fold(batch.episode, self.config.critic_folds)
        if self.config.advantage_scope == "episode":
            episode, step = batch.episode.to(torch.int64), batch.step.to(torch.int64)
        return UpdateInputs(
            image=images(batch.image),  # s and s' shift independently (DrQ)
            next_image=images(batch.next_image),
            joint=self.joint_normalizer(batch.joint.float()),
            next_joint=self.joint_normalizer(batch.next_joint.float()),
            action=self._action_target(batch.action),
            reward=reward,
            discount=discount,
            return_to_go=returns,
            fold=fold,
            episode=episode,
            step=step,
        )

    @property
    def return_discount(self) -> float | None:
        return self.config.gamma if self.config.advantage_estimate == "return" else None

    def critic_step(self, x: UpdateInputs) -> CriticStep:
        """Step 1: fit Q1, Q2 and V (and the action head) of every critic fold on the
        episodes outside it; steps the critics and their encoders."""
        folds = self._folds()
        features, next_features = self._encode(x)
        with torch.no_grad(), self._autocast():
            action = self._target_policy_action(features[0].detach(), noise=True)
        fitted = [self._fit_critic(x, k, critic, critic_target, features[k], next_features[k],
                                   action)
                  for k, (_, critic, _, critic_target) in enumerate(folds)]
        loss = sum(losses.pop("loss") for _, losses in fitted)
        losses = {name: torch.stack([fold_losses[name] for _, fold_losses in fitted]).mean()
                  for name in fitted[0][1]}
        encoder_grad_norm = encoder_step(self.critic_optimizer, loss,
                                         [(encoder, critic) for encoder, critic, *_ in folds],
                                         self.config.max_grad_norm)
        target_q, target_v, q1, v = (self._held_out(list(values), x.fold)
                                     for values in zip(*(fit for fit, _ in fitted), strict=True))
        return CriticStep(
            feature=features[0].detach(), next_feature=next_features[0],
            fold_features=[feature.detach() for feature in features],
            fold_next_features=next_features, target_q=target_q, target_v=target_v,
            q1=q1, v=v, losses={k: value.detach() for k, value in losses.items()},
            encoder_grad_norm=encoder_grad_norm,
        )

    def _encode(self, x: UpdateInputs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every critic fold's enc(s) (with gradients when enabled) and enc_target(s')."""
        folds = self._folds()
        with self._autocast():
            features = [encoder(x.image, x.joint) for encoder, *_ in folds]
            with torch.no_grad():
                next_features = [target(x.next_image, x.next_joint) for _, _, target, _ in folds]
        return features, next_features

    def _fit_critic(self, x: UpdateInputs, fold: int, critic: Critic, critic_target: Critic,
                    feature: torch.Tensor, next_feature: torch.Tensor, policy_action: torch.Tensor
                    ) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        """One critic's targets and losses on the episodes outside ``fold``: ((target_q,
        target_v, q1, v), losses with the weighted sum under "loss")."""
        with self._autocast():
            with torch.no_grad():
                target_q = x.reward + x.discount * critic.v(next_feature).float()
                target_v = self._q_mix(critic_target, feature.detach(), policy_action).float()
            q1, q2 = critic(feature, x.action)
            v = critic.v(feature)
        keep = None if x.fold is None else (x.fold != fold).reshape(-1, 1)
        losses = {
            "q1_loss": _mse(q1.float(), target_q, keep),
            "q2_loss": _mse(q2.float(), target_q, keep),
            "v_loss": _mse(v.float(), target_v.clamp(self.min_v, self.max_v), keep),
        }
        loss = losses["q1_loss"] + losses["q2_loss"] + losses["v_loss"]
        losses["critic_loss"] = loss
        if self.config.encoder_action_weight > 0:
            with self._autocast():
                predicted = critic.predict_action(feature).float()
            losses["encoder_action_loss"] = _mse(predicted, x.action, keep)
            loss = loss + self.config.encoder_action_weight * losses["encoder_action_loss"]
        if self.config.behaviour_baseline:  # V_b(s) towards the recorded returns
            with self._autocast():
                behaviour = critic.behaviour_v(feature).float()
            recorded = torch.isfinite(x.return_to_go)
            fitted = recorded if keep is None else recorded & keep
            losses["behaviour_v_loss"] = _mse(behaviour, x.return_to_go.nan_to_num(), fitted)
            loss = loss + losses["behaviour_v_loss"]
        losses["loss"] = loss
        return (target_q, target_v, q1.detach().float(), v.detach().float()), losses

    @staticmethod
    def _held_out(per_fold: list[torch.Tensor], fold: torch.Tensor | None) -> torch.Tensor:
        """Each transition's value from the critic fold of its episode ([B, 1])."""
        if fold is None:
            return per_fold[0]
        stacked = torch.stack(per_fold)
        return stacked[fold, torch.arange(stacked.shape[1], device=stacked.device)]

    def _held_out_value(self, features: Sequence[torch.Tensor], fold: torch.Tensor | None
                        ) -> torch.Tensor:
        """V(s) of each transition from its held-out critic fold (``features[k]``: fold k's)."""
        return self._held_out([critic.v(feature).float() for feature, (_, critic, *_)
                               in zip(features, self._folds(), strict=True)], fold)

    @torch.no_grad()
    def advantages(self, x: UpdateInputs, features: Sequence[torch.Tensor],
                   next_features: Sequence[torch.Tensor], track: bool = True) -> Advantages:
        """Step 2: the advantage against the updated V, and LAPO's expectile weight;
        ``features[k]`` = critic fold k's enc(s) before step 1, ``next_features[k]`` its
        enc_target(s'); each transition reads its held-out fold. One-step (LAPO):
        r + gamma * q_mix(s', pi(s')) - V(s); "return": G - V_b(s) with the recorded
        return-to-go G and the behaviour value V_b (``return_baseline`` "policy": G - V(s)),
        one-step where the episode timed out (G unknown). With
        ``advantage_scope`` "episode" the weight's sign is that of the episode's first-step
        advantage, which ``track`` records from this batch's first steps (off: diagnostics)."""
        folds = self._folds()
        with self._autocast():
            next_action = self._target_policy_action(next_features[0], noise=False)
            value = self._held_out_value(features, x.fold)
            next_q = self._held_out(
                [self._q_mix(critic_target, f, next_action).float()
                 for f, (*_, critic_target) in zip(next_features, folds, strict=True)],
                x.fold)
        advantage = x.reward + x.discount * next_q - value
        baseline = value  # what the advantage is taken against, kept for the episode scope
        if x.return_to_go is not None:
            if self.config.behaviour_baseline:
                with self._autocast():
                    baseline = self._held_out(
                        [critic.behaviour_v(f).float()
                         for f, (_, critic, *_) in zip(features, folds, strict=True)], x.fold)
            recorded = torch.isfinite(x.return_to_go)
            advantage = torch.where(recorded, x.return_to_go.nan_to_num() - baseline,
                                    advantage)
            baseline = torch.where(recorded, baseline, value)
        scored = advantage
        if x.episode is not None:
            tracker = self.episode_advantage
            if track:
                tracker.record(x.episode, x.step, advantage[:, 0], baseline[:, 0])
            scored = tracker.lookup(x.episode, advantage[:, 0],
                                    self.config.episode_baseline == "mean")[:, None]
        expectile = self.config.expectile
        weight = torch.where(scored > 0, expectile, 1.0 - expectile)
        return Advantages(advantage=advantage, scored=scored, weight=weight)

    def vae_step(self, feature: torch.Tensor, action: torch.Tensor,
                 weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Step 3: the advantage-weighted conditional VAE on detached features (live ones
        with ``vae_encoder_gradient``: its optimizer then steps the encoder too)."""
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

    def actor_step(self, critic: CriticStep, fold: torch.Tensor | None
                   ) -> dict[str, torch.Tensor]:
        """Step 4: the latent policy maximises Q1 through the target decoder, each
        transition's Q1 from its held-out critic fold."""
        feature = critic.feature
        with self._autocast():
            action = self.actor_vae_target.decode_latent(feature, self.actor(feature))
            q1 = self._held_out([fold_critic.q1(fold_feature, action).float()
                                 for fold_feature, (_, fold_critic, *_)
                                 in zip(critic.fold_features, self._folds(), strict=True)], fold)
            loss = -q1.mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.actor.parameters()))
        self.actor_optimizer.step()
        return {"actor_loss": loss.detach()}

    @torch.no_grad()
    def sync_targets(self) -> None:
        """Step 5: every target follows its network by tau, buffers included."""
        for online, target in self.modules.target_pairs():
            polyak_update(online, target, self.config.tau)

    def update(self, batch: TransitionBatch) -> UpdateRecord:
        """One LAPO update; the record holds every step's targets, weights and losses."""
        self.set_training(True)
        x = self._inputs(batch)
        critic = self.critic_step(x)
        advantages = self.advantages(x, critic.fold_features, critic.fold_next_features)
        vae_feature = critic.feature
        if self.config.vae_encoder_gradient:  # a live feature: the VAE step trains the encoder
            with self._autocast():
                vae_feature = self.obs_encoder(x.image, x.joint)
        vae = self.vae_step(vae_feature, x.action, advantages.weight)
        actor = self.actor_step(critic, x.fold)
        self.sync_targets()
        self.total_it += 1
        return UpdateRecord(critic, advantages, vae, actor)

    @torch.no_grad()
    def evaluate_advantages(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(advantage, V(s)) of each transition under the current networks, as step 2 sees
        them but in eval mode and without image shifts; updates nothing (diagnostics)."""
        self.set_training(False)
        x = self._inputs(batch, augment=False)
        features, next_features = self._encode(x)
        with self._autocast():
            value = self._held_out_value(features, x.fold)
        return self.advantages(x, features, next_features, track=False).advantage, value

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
            "positive_weight_share": (record.advantages.scored > 0).float().mean(),
            "encoder_grad_norm": critic.encoder_grad_norm,
        }

    # ------------------------------------------------------------------ checkpoints
    def _arguments(self) -> dict[str, Any]:
        return {
            "action_dim": self.action_dim,
            "latent_dim": self.latent_dim,
            "max_action": self.max_action,
            "min_v": self.min_v,
            "max_v": self.max_v,
        }

    def _restore_arguments(self, arguments: dict[str, Any]) -> None:
        self.min_v = float(arguments["min_v"])
        self.max_v = float(arguments["max_v"])


class EpisodeAdvantage(nn.Module):
    """Each episode's advantage at its first transition, and the baseline it was taken
    against, as last computed when a batch drew it: with the return estimate G_0 - V(s_0),
    how the whole demonstration did against the value of its start. Buffers grow with the
    largest episode index seen; checkpointed (one written before ``baseline`` existed loads
    with zero baselines, refreshed as batches draw the first steps again)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("first", torch.zeros(0))
        self.register_buffer("baseline", torch.zeros(0))
        self.register_buffer("seen", torch.zeros(0, dtype=torch.bool))

    def record(self, episode: torch.Tensor, step: torch.Tensor, advantage: torch.Tensor,
               baseline: torch.Tensor) -> None:
        """Keep the advantages and baselines ([B]) of the rows that are their episode's
        first step."""
        self._grow(int(episode.max()) + 1)
        starts = step == 0
        self.first[episode[starts]] = advantage[starts].float()
        self.baseline[episode[starts]] = baseline[starts].float()
        self.seen[episode[starts]] = True

    def lookup(self, episode: torch.Tensor, advantage: torch.Tensor, pooled: bool = False
               ) -> torch.Tensor:
        """Each row's episode first-step advantage (the row's own until that was drawn);
        ``pooled``: its first-step target against the mean of the recorded starts'
        baselines, at most the mean of their targets, instead of its own start's."""
        self._grow(int(episode.max()) + 1)
        first = self.first
        if pooled and bool(self.seen.any()):
            target = self.first + self.baseline
            threshold = torch.minimum(self.baseline[self.seen].mean(),
                                      target[self.seen].mean())
            first = target - threshold
        return torch.where(self.seen[episode], first[episode], advantage.float())

    def _grow(self, size: int) -> None:
        extra = size - self.first.numel()
        if extra > 0:
            self.first = torch.cat([self.first, self.first.new_zeros(extra)])
            self.baseline = torch.cat([self.baseline, self.baseline.new_zeros(extra)])
            self.seen = torch.cat([self.seen, self.seen.new_zeros(extra)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if prefix + "first" in state_dict and prefix + "baseline" not in state_dict:
            state_dict[prefix + "baseline"] = torch.zeros_like(state_dict[prefix + "first"])
        for name in ("first", "baseline", "seen"):  # the saved sizes before loading into them
            if prefix + name in state_dict:
                saved = state_dict[prefix + name]
                setattr(self, name, saved.new_empty(saved.shape).to(self.first.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _mse(prediction: torch.Tensor, target: torch.Tensor, keep: torch.Tensor | None
         ) -> torch.Tensor:
    """Mean squared error over the rows where ``keep`` (all rows when None)."""
    if keep is None:
        return F.mse_loss(prediction, target)
    squared = (prediction - target).pow(2) * keep
    return squared.sum() / (keep.sum() * prediction.shape[1]).clamp(min=1)


def chunk_backup(batch: TransitionBatch, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward, discount) of the critic's target ``reward + discount * V(s')``, [B, 1] each:
    (r, gamma * not_done) for single actions; for a chunk that covers n <= h transitions
    before its episode ends, (sum_{i<n} gamma^i r_{t+i}, gamma^n * not_done), the
    unbiased n-step backup from s_{t+n} (no bootstrap past a terminal)."""
    not_done = batch.not_done.float().reshape(-1, 1)
    if batch.chunk_steps is None:
        return batch.reward.float().reshape(-1, 1), gamma * not_done
    reward = batch.reward.float()
    powers = gamma ** torch.arange(reward.shape[1], device=reward.device, dtype=reward.dtype)
    return ((reward * powers).sum(dim=1, keepdim=True),
            gamma ** batch.chunk_steps.float().reshape(-1, 1) * not_done)


def check_folds(folds: int, num_episodes: int | None) -> None:
    """Refuse cross-fitted critics on a single episode: its fold's pair would fit nothing
    and score all of it."""
    if folds > 1 and num_episodes is not None and num_episodes < 2:
        raise ValueError(
            f"MultimodalLatent: critic_folds={folds} needs two episodes at least (each "
            f"critic pair fits the episodes outside its fold), the replay buffer has "
            f"{num_episodes}: add demonstrations or set critic_folds=1"
        )


def episode_fold(episode: torch.Tensor, folds: int) -> torch.Tensor:
    """The critic fold of each episode index: every block of ``folds`` consecutive episodes
    has one episode in each fold (balanced from the first two on), rotated by a fixed hash
    of the block (splitmix64), so folds follow neither the recording order nor turns."""
    episode = episode.to(torch.int64)
    x = (episode // folds + 1) * -7046029254386353131  # 0x9E3779B97F4A7C15, wrapping
    x = (x ^ (x >> 30)) * -4658895280553007687  # 0xBF58476D1CE4E5B9
    x = (x ^ (x >> 27)) * -7723592293110705685  # 0x94D049BB133111EB
    return (episode + (x ^ (x >> 31)).remainder(folds)).remainder(folds)
