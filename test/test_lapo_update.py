"""One ``MultimodalLatent`` update, term by term, against a literal transcription of LAPO.

``lapo_reference.lapo_iteration`` transcribes ``Latent.train`` of the original code
(pcchenxi/LAPO-offlienRL ``algos/algos_vae.py``) on copies of the agent's networks and
optimizer states; every target, advantage, weight and loss of an update must equal it.
"""

from __future__ import annotations

import pytest
import torch
from lapo_core_data import random_transitions
from lapo_reference import lapo_iteration, snapshot

from lapo_ros.lapo import MultimodalLatent

TINY = {"hidden_dims": (32, 32), "feature_dim": 32, "image_feature_dim": 32,
        "joint_hidden_dim": 16}


@pytest.mark.parametrize("doubleq_min", [1.0, 0.75])
def test_an_update_equals_the_transcribed_lapo_equations(doubleq_min):
    torch.manual_seed(0)
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=4)
    data.arrays["reward"] -= 0.5  # rewards of both signs: advantages of both signs
    agent = MultimodalLatent(3, replay_buffer=data, device="cpu", doubleq_min=doubleq_min,
                             seed=3, **TINY)
    agent.train(iterations=10, batch_size=8)  # mid-run: Adam's moments in use
    batch = data.sample(12)
    copies = snapshot(agent)
    record = agent.update(batch)
    ref = lapo_iteration(agent, copies, batch, agent.config.encoder_action_weight)

    close = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(record.critic.target_q, ref.target_Q, **close)
    torch.testing.assert_close(record.critic.target_v, ref.target_v, **close)
    torch.testing.assert_close(record.critic.losses["critic_loss"], ref.critic_loss, **close)
    torch.testing.assert_close(record.advantages.advantage, ref.adv, **close)
    torch.testing.assert_close(record.advantages.weight, ref.weights)
    torch.testing.assert_close(record.vae["vae_loss"], ref.actor_vae_loss, **close)
    torch.testing.assert_close(record.actor["actor_loss"], ref.actor_loss, **close)
    # the optimizers stepped the same parameters by the same amounts
    for name in ("critic", "obs_encoder", "actor_vae"):
        for mine, theirs in zip(getattr(agent, name).parameters(),
                                copies["nets"][name].parameters(), strict=True):
            torch.testing.assert_close(mine, theirs, **close)
    # the weights really discriminate: both signs occur on this batch
    assert 0 < int((ref.adv > 0).sum()) < len(batch)


def test_target_q_bootstraps_from_the_online_value_and_stops_at_terminals():
    data = random_transitions(n=32, image_size=16, seed=1)
    agent = MultimodalLatent(16, replay_buffer=data, device="cpu", **TINY)
    batch = data.sample(16)
    batch.not_done[::4] = 0.0
    with torch.no_grad():
        next_feature = agent.obs_encoder_target(
            batch.next_image, agent.joint_normalizer(batch.next_joint))
        online_v = agent.critic.v(next_feature)
    for net in agent.critic_target.parameters():  # a target V would now differ wildly
        net.data.add_(1.0)
    record = agent.update(batch)
    expected = batch.reward + agent.config.gamma * batch.not_done * online_v
    torch.testing.assert_close(record.critic.target_q, expected, rtol=1e-5, atol=1e-6)
    terminal = batch.not_done[:, 0] == 0
    torch.testing.assert_close(record.critic.target_q[terminal], batch.reward[terminal])


def test_the_return_estimate_takes_the_recorded_return_minus_v_where_it_is_known():
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=2)
    agents = {estimate: MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                                         advantage_estimate=estimate, **TINY)
              for estimate in ("return", "one_step")}
    assert agents["return"].return_discount == agents["return"].config.gamma
    assert agents["one_step"].return_discount is None
    batch = data.sample(12)
    with pytest.raises(ValueError, match="return_to_go"):
        agents["return"].update(batch)
    batch.return_to_go = torch.linspace(-1.0, 1.0, 12).reshape(-1, 1)
    batch.return_to_go[::3] = float("nan")  # timed-out episodes: no recorded return
    record = agents["return"].update(batch)
    one_step = agents["one_step"].update(batch).advantages.advantage
    with torch.no_grad():  # step 2 reads V after the critic step, on the features before it
        value = agents["return"].critic.v(record.critic.feature)
    known = torch.isfinite(batch.return_to_go)
    expected = torch.where(known, batch.return_to_go.nan_to_num() - value, one_step)
    torch.testing.assert_close(record.advantages.advantage, expected, rtol=1e-5, atol=1e-6)
    expectile = agents["return"].config.expectile
    torch.testing.assert_close(record.advantages.weight,
                               torch.where(expected > 0, expectile, 1 - expectile))
