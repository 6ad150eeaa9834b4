"""A literal transcription of one LAPO iteration, independent of ``lapo_ros.lapo.algorithms.lapo``.

Transcribed from ``Latent.train`` in pcchenxi/LAPO-offlienRL ``algos/algos_vae.py`` (the
version with ``get_target_q``), line by line, with LAPO's ``state`` read through this
project's encoders: ``state = enc(s)`` for the online terms, ``next_state = enc_target(s')``,
and the VAE and actor on ``state.detach()``. The networks are the agent's own modules,
deep-copied before its update with the optimizers' states, so both sides start alike;
the noise comes from a generator in the agent's state, drawn in the same order
(target-policy noise, then the VAE's reparameterisation).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ``LAPOConfig`` fields whose defaults differ from the original in how the VAE's weights are
# made (config.py says why); the transcription below is of the original, with these values
LAPO_ORIGINAL = {"expectile": 0.9, "advantage_estimate": "one_step", "advantage_scope": "step",
                 "critic_folds": 1, "vae_encoder_gradient": False}


@dataclass
class Reference:
    target_Q: torch.Tensor  # noqa: N815 (LAPO's names)
    target_v: torch.Tensor
    critic_loss: torch.Tensor
    adv: torch.Tensor
    weights: torch.Tensor
    actor_vae_loss: torch.Tensor
    actor_loss: torch.Tensor


def snapshot(agent) -> dict:
    """Copies of every network, the optimizer states and the generator, before an update."""
    names = ("obs_encoder", "obs_encoder_target", "critic", "critic_target", "actor",
             "actor_target", "actor_vae", "actor_vae_target")
    nets = {name: copy.deepcopy(getattr(agent, name)) for name in names}
    optimizers = {name: copy.deepcopy(getattr(agent, name).state_dict())
                  for name in ("critic_optimizer", "actorvae_optimizer")}
    generator = torch.Generator().set_state(agent.generator.get_state())
    return {"nets": nets, "optimizers": optimizers, "generator": generator}


def lapo_iteration(agent, copies: dict, batch, action_head_weight: float) -> Reference:
    """One iteration of LAPO's ``train`` on ``batch`` with the copied networks."""
    n, g = copies["nets"], copies["generator"]
    cfg = agent.config
    discount, expectile, kl_beta, doubleq_min = cfg.gamma, cfg.expectile, cfg.kl_beta, \
        cfg.doubleq_min
    min_v, max_v = agent.min_v, agent.max_v
    mean, std = agent.action_scaler.mean, agent.action_scaler.std

    action = (batch.action.float() - mean) / std
    reward = batch.reward.float().reshape(-1, 1)
    not_done = batch.not_done.float().reshape(-1, 1)
    joint = agent.joint_normalizer(batch.joint.float())
    next_joint = agent.joint_normalizer(batch.next_joint.float())
    for module in (n["obs_encoder"], n["critic"], n["actor"], n["actor_vae"]):
        module.train()

    critic, critic_target = n["critic"], n["critic_target"]
    actor, actor_target = n["actor"], n["actor_target"]
    actor_vae, actor_vae_target = n["actor_vae"], n["actor_vae_target"]
    critic_optimizer = torch.optim.Adam(
        [{"params": critic.parameters()}, {"params": n["obs_encoder"].parameters()}],
        lr=cfg.critic_lr)
    actorvae_optimizer = torch.optim.Adam(actor_vae.parameters(), lr=cfg.actor_vae_lr)
    critic_optimizer.load_state_dict(copies["optimizers"]["critic_optimizer"])
    actorvae_optimizer.load_state_dict(copies["optimizers"]["actorvae_optimizer"])

    def get_target_q(state, actor_net, critic_net, use_noise=False):
        latent_action = actor_net(state)
        if use_noise:
            noise = torch.randn(latent_action.shape, generator=g)
            latent_action = latent_action + (noise * 0.1).clamp(-0.2, 0.2)
        actor_action = actor_vae_target.decode_latent(state, latent_action)
        target_q1, target_q2 = critic_net(state, actor_action)
        return (torch.min(target_q1, target_q2) * doubleq_min
                + torch.max(target_q1, target_q2) * (1 - doubleq_min))

    # Critic Training
    state_grad = n["obs_encoder"](batch.image, joint)
    state = state_grad.detach()
    with torch.no_grad():
        next_state = n["obs_encoder_target"](batch.next_image, next_joint)
        next_target_v = critic.v(next_state)
        target_Q = reward + not_done * discount * next_target_v  # noqa: N806
        target_v = get_target_q(state, actor_target, critic_target, use_noise=True)
    current_Q1, current_Q2 = critic(state_grad, action)  # noqa: N806
    current_v = critic.v(state_grad)
    v_loss = F.mse_loss(current_v, target_v.clamp(min_v, max_v))
    critic_loss_1 = F.mse_loss(current_Q1, target_Q)
    critic_loss_2 = F.mse_loss(current_Q2, target_Q)
    critic_loss = critic_loss_1 + critic_loss_2 + v_loss
    # ours: the critic's action head shapes the encoder through the same optimizer
    head_loss = F.mse_loss(critic.predict_action(state_grad), action)
    critic_optimizer.zero_grad()
    (critic_loss + action_head_weight * head_loss).backward()
    critic_optimizer.step()

    # compute adv and weight
    with torch.no_grad():
        current_v = critic.v(state)
        next_q = get_target_q(next_state, actor_target, critic_target)
        q_action = reward + not_done * discount * next_q
        adv = q_action - current_v
        weights = torch.where(adv > 0, expectile, 1 - expectile)

    # train weighted CVAE
    hidden = torch.relu(actor_vae.encoder(torch.cat([state, action], 1)))
    mu, log_var = actor_vae.mean(hidden), actor_vae.log_var(hidden)
    z = mu + torch.exp(log_var / 2) * torch.randn(mu.shape, generator=g)
    recons_action = actor_vae.decode_latent(state, z)
    recons_loss_ori = F.mse_loss(recons_action, action, reduction="none")
    recon_loss = torch.sum(recons_loss_ori, 1).view(-1, 1)
    KL_loss = -0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1).view(-1, 1)  # noqa: N806
    actor_vae_loss = ((recon_loss + KL_loss * kl_beta) * weights.detach()).mean()
    actorvae_optimizer.zero_grad()
    actor_vae_loss.backward()
    actorvae_optimizer.step()

    # train latent policy
    latent_actor_action = actor(state)
    actor_action = actor_vae_target.decode_latent(state, latent_actor_action)
    actor_loss = -critic.q1(state, actor_action).mean()
    return Reference(target_Q, target_v, critic_loss.detach(), adv, weights,
                     actor_vae_loss.detach(), actor_loss.detach())
