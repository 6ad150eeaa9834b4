"""One ``MultimodalLatent`` update, term by term, against a literal transcription of LAPO.

``lapo_reference.lapo_iteration`` transcribes ``Latent.train`` of the original code
(pcchenxi/LAPO-offlienRL ``algos/algos_vae.py``) on copies of the agent's networks and
optimizer states; every target, advantage, weight and loss of an update must equal it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from lapo_core_data import ArrayTransitions, random_transitions
from lapo_reference import LAPO_ORIGINAL, lapo_iteration, snapshot

from lapo_ros.lapo import MultimodalLatent
from lapo_ros.lapo.algorithms.lapo import EpisodeAdvantage, episode_fold

# The transcription computes in float32: compared to 1e-5, the update must too (bf16
# autocast, the default where the CPU or GPU has it, is a compute option with its own test)
TINY = {"hidden_dims": (32, 32), "feature_dim": 32, "image_feature_dim": 32,
        "joint_hidden_dim": 16, "autocast_dtype": "float32"}


def lapo(**changes) -> dict:
    """Tiny networks, the original LAPO's weighting, and the settings a test is about."""
    return {**TINY, **LAPO_ORIGINAL, **changes}


@pytest.mark.parametrize("doubleq_min", [1.0, 0.75])
def test_an_update_equals_the_transcribed_lapo_equations(doubleq_min):
    torch.manual_seed(0)
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=4)
    data.arrays["reward"] -= 0.5  # rewards of both signs: advantages of both signs
    agent = MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                             **lapo(doubleq_min=doubleq_min))
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
    agent = MultimodalLatent(16, replay_buffer=data, device="cpu", **lapo())
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


@pytest.mark.parametrize("baseline", ["behaviour", "policy"])
def test_the_return_estimate_takes_the_recorded_return_minus_a_baseline_where_it_is_known(
        baseline):
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=2)
    agents = {estimate: MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                                         **lapo(advantage_estimate=estimate,
                                                return_baseline=baseline))
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
    critic = agents["return"].critic
    with torch.no_grad():  # step 2 reads V after the critic step, on the features before it
        value = (critic.behaviour_v if baseline == "behaviour" else critic.v)(
            record.critic.feature)
    known = torch.isfinite(batch.return_to_go)
    if baseline == "behaviour":  # V_b was fitted to the recorded returns, only where known
        assert critic.v_net is not critic.behaviour_v_net
        assert "behaviour_v_loss" in record.critic.losses
    else:
        assert critic.behaviour_v_net is None
    expected = torch.where(known, batch.return_to_go.nan_to_num() - value, one_step)
    torch.testing.assert_close(record.advantages.advantage, expected, rtol=1e-5, atol=1e-6)
    expectile = agents["return"].config.expectile
    torch.testing.assert_close(record.advantages.weight,
                               torch.where(expected > 0, expectile, 1 - expectile))


def test_episode_folds_are_fixed_balanced_in_blocks_and_do_not_follow_the_recording_order():
    episodes = torch.arange(400)
    folds = episode_fold(episodes, 2)
    assert torch.equal(folds, episode_fold(episodes.flip(0), 2).flip(0))  # per episode only
    assert torch.equal(folds.reshape(-1, 2).sum(1), torch.ones(200, dtype=torch.int64))
    assert 80 < int(folds[::2].sum()) < 120  # demonstrators taking turns: both in both folds
    assert not torch.equal(folds, episodes % 2)
    three = episode_fold(episodes[:399], 3).reshape(-1, 3).sort(1).values
    assert torch.equal(three, torch.tensor([0, 1, 2]).expand(133, 3))


def test_each_critic_fold_fits_the_episodes_outside_it_and_scores_the_rest():
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=5)
    batch = data.sample(16)
    agents = [MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                               **lapo(critic_folds=2)) for _ in range(2)]
    batch.episode = None
    with pytest.raises(ValueError, match="episode"):
        agents[0].update(batch)
    batch.episode = torch.arange(16)
    held_out = episode_fold(batch.episode, 2) == 0  # fold 0: obs_encoder + critic
    assert 0 < int(held_out.sum()) < 16
    changed = copy.deepcopy(batch)
    changed.reward[held_out] += 5.0  # only fold 0's episodes earn more
    for agent, b in zip(agents, (batch, changed), strict=True):
        agent.update(b)

    # critic 0 and the deployed encoder never fitted fold 0's rewards; critic 1 did
    for name in ("critic", "obs_encoder"):
        for mine, theirs in zip(getattr(agents[0], name).parameters(),
                                getattr(agents[1], name).parameters(), strict=True):
            torch.testing.assert_close(mine, theirs)
    assert any(not torch.equal(mine, theirs) for mine, theirs in zip(
        agents[0].fold_critics.parameters(), agents[1].fold_critics.parameters(), strict=True))
    # each transition's advantage comes from the critic fold that did not fit its episode
    agent = agents[0]
    x = agent._inputs(batch)
    critic = agent.critic_step(x)
    advantage = agent.advantages(x, critic.fold_features, critic.fold_next_features).advantage
    with torch.no_grad():
        next_feature = critic.next_feature  # the policy reads fold 0's features
        next_action = agent.actor_vae_target.decode_latent(
            next_feature, agent.actor_target(next_feature))
        per_fold = [
            x.reward + x.discount * torch.min(*critic_target(next_f, next_action)) - net.v(f)
            for (_, net, _, critic_target), f, next_f in zip(
                agent._folds(), critic.fold_features, critic.fold_next_features, strict=True)
        ]
    torch.testing.assert_close(advantage, torch.where(held_out[:, None], *per_fold))
    assert not torch.allclose(per_fold[0], per_fold[1])


def test_critic_folds_round_trip_through_a_checkpoint_and_one_fold_reads_older_files(tmp_path):
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=6)
    batch = data.sample(8)
    batch.episode = torch.arange(8)
    agent = MultimodalLatent(3, replay_buffer=data, device="cpu", **lapo(critic_folds=3))
    agent.update(batch)
    agent.save(tmp_path / "folds.pt")
    restored = MultimodalLatent.from_checkpoint(tmp_path / "folds.pt", device="cpu")
    assert len(restored.fold_critics) == 2
    for mine, theirs in zip(agent.fold_encoders_target.state_dict().values(),
                            restored.fold_encoders_target.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, theirs)

    single = MultimodalLatent(3, replay_buffer=data, device="cpu", **lapo())
    single.save(tmp_path / "one.pt")
    payload = torch.load(tmp_path / "one.pt", weights_only=True)
    for name in ("fold_encoders", "fold_critics", "fold_encoders_target", "fold_critics_target",
                 "episode_advantage"):
        del payload["modules"][name]  # written before critic folds and episode scopes existed
    torch.save(payload, tmp_path / "older.pt")
    MultimodalLatent.from_checkpoint(tmp_path / "older.pt", device="cpu")


def test_array_transitions_carry_episodes_and_returns_like_the_replay_buffer():
    arrays = random_transitions(n=12, image_size=16, seed=7).arrays
    arrays["not_done"][:, 0] = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1]
    data = ArrayTransitions(**arrays)
    assert data.episode.tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4]
    returns = data.return_to_go(0.5)[:, 0]
    reward = data.arrays["reward"][:, 0]
    assert returns[0] == pytest.approx(reward[0] + 0.5 * reward[1] + 0.25 * reward[2])
    assert returns[5] == pytest.approx(reward[5])
    assert np.isnan(returns[10:]).all()  # the rows stop before episode 4 ends
    batch = data.batch(np.array([0, 5]), discount=0.5)
    assert batch.episode.tolist() == [0, 2] and batch.return_to_go.shape == (2, 1)


def test_with_vae_encoder_gradient_the_vae_step_also_trains_the_deployed_encoder():
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=9)
    batch = data.sample(16)
    agents = {flag: MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                                     **lapo(vae_encoder_gradient=flag))
              for flag in (False, True)}
    held = {id(p) for group in agents[True].actorvae_optimizer.param_groups
            for p in group["params"]}
    assert {id(p) for p in agents[True].obs_encoder.parameters()} <= held
    records = {flag: agent.update(batch) for flag, agent in agents.items()}
    # the same critic step, then the VAE's gradient moves the encoder of one agent only
    torch.testing.assert_close(records[True].critic.losses["critic_loss"],
                               records[False].critic.losses["critic_loss"])
    assert any(not torch.equal(mine, theirs) for mine, theirs in zip(
        agents[True].obs_encoder.parameters(), agents[False].obs_encoder.parameters(),
        strict=True))


def test_the_episode_scope_weighs_each_transition_by_its_episodes_first_step(tmp_path):
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=11)
    agent = MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                             **lapo(advantage_scope="episode", episode_baseline="state"))
    batch = data.sample(12)
    for missing in ("episode", "step"):
        broken = copy.deepcopy(batch)
        setattr(broken, missing, None)
        with pytest.raises(ValueError, match=f"advantage_scope 'episode' needs batches with "
                                             f"{missing}"):
            agent.update(broken)
    batch.episode = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4])
    batch.step = torch.tensor([0, 3, 5, 2, 0, 1, 4, 6, 0, 7, 1, 2])  # 2 and 4: no first step

    first = agent.update(batch).advantages
    own = first.advantage[:, 0]
    expected = torch.where(torch.isin(batch.episode, torch.tensor([2, 4])), own,
                           own[[0, 0, 0, 4, 4, 5, 6, 7, 8, 8, 10, 11]])
    torch.testing.assert_close(first.scored[:, 0], expected)
    expectile = agent.config.expectile
    torch.testing.assert_close(first.weight, torch.where(first.scored > 0, expectile,
                                                         1 - expectile))
    assert agent.episode_advantage.seen.tolist() == [True, True, False, True, False]

    # a later batch: the recorded first steps score rows that are not first steps
    again = copy.deepcopy(batch)
    again.episode, again.step = torch.tensor([0] * 6 + [2] * 6), torch.tensor([1] * 12)
    second = agent.update(again).advantages
    recorded = agent.episode_advantage.first[0]
    torch.testing.assert_close(second.scored[:6, 0], recorded.expand(6))
    torch.testing.assert_close(second.scored[6:, 0], second.advantage[6:, 0])
    torch.testing.assert_close(recorded, own[0])

    # diagnostics read the first steps without recording any; checkpoints keep them
    before = agent.episode_advantage.first.clone()
    agent.evaluate_advantages(batch)
    torch.testing.assert_close(agent.episode_advantage.first, before)
    agent.save(tmp_path / "episode.pt")
    restored = MultimodalLatent.from_checkpoint(tmp_path / "episode.pt", device="cpu")
    torch.testing.assert_close(restored.episode_advantage.first, before)
    assert torch.equal(restored.episode_advantage.seen, agent.episode_advantage.seen)


def test_the_mean_episode_baseline_scores_each_first_step_target_against_every_starts_mean(
        tmp_path):
    data = random_transitions(n=32, image_size=16, joint_dim=5, action_dim=3, seed=11)
    agent = MultimodalLatent(3, replay_buffer=data, device="cpu", seed=3,
                             **lapo(advantage_scope="episode", advantage_estimate="return",
                                    episode_baseline="mean"))
    batch = data.sample(8, agent.return_discount)
    batch.episode = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    batch.step = torch.tensor([0, 2, 0, 1, 0, 3, 1, 2])  # episode 3: no first step yet
    batch.return_to_go = torch.tensor([[1.0], [0.9], [-0.5], [-0.6], [0.2], [0.1], [3.0],
                                       [2.0]])
    record = agent.update(batch).advantages
    value = batch.return_to_go - record.advantage  # V(s) of every row (advantage: G - V(s))
    starts = torch.tensor([0, 2, 4])
    pooled = torch.minimum(value[starts].mean(), batch.return_to_go[starts].mean())
    first = batch.return_to_go[starts, 0] - pooled  # each episode's G_0 against the mean
    expected = torch.cat([first.repeat_interleave(2), record.advantage[6:, 0]])
    torch.testing.assert_close(record.scored[:, 0], expected)
    tracker = agent.episode_advantage
    torch.testing.assert_close(tracker.baseline[:3], value[starts, 0])
    # "state" compares with the episode's own start instead
    own = tracker.lookup(batch.episode, record.advantage[:, 0])
    torch.testing.assert_close(own[:6], record.advantage[starts, 0].repeat_interleave(2))
    # a checkpoint written before the baselines were kept loads them as zeros
    agent.save(tmp_path / "agent.pt")
    payload = torch.load(tmp_path / "agent.pt", weights_only=True)
    del payload["modules"]["episode_advantage"]["baseline"]
    torch.save(payload, tmp_path / "older.pt")
    restored = MultimodalLatent.from_checkpoint(tmp_path / "older.pt", device="cpu")
    torch.testing.assert_close(restored.episode_advantage.first, tracker.first)
    assert not restored.episode_advantage.baseline.any()


def test_the_mean_episode_baseline_is_at_most_the_mean_recorded_start_return():
    """A critic that rates the policy above every recorded start (V(s_0) 2.0 against returns
    of 1 and 0) still lets the demonstrations above the average one be imitated."""
    tracker = EpisodeAdvantage()
    returns, values = torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.full((4,), 2.0)
    tracker.record(torch.arange(4), torch.zeros(4, dtype=torch.long), returns - values, values)
    scored = tracker.lookup(torch.arange(4), torch.zeros(4), pooled=True)
    torch.testing.assert_close(scored, returns - 0.5)
    tracker.record(torch.arange(4), torch.zeros(4, dtype=torch.long), returns + 0.25,
                   torch.full((4,), -0.25))  # V(s_0) below the average: it is the threshold
    torch.testing.assert_close(tracker.lookup(torch.arange(4), torch.zeros(4), pooled=True),
                               returns + 0.25)
