"""MultimodalLatent: gradient flow, targets, checkpoints, determinism, acting (issue 3)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from lapo_core_data import ArrayTransitions, random_transitions
from lapo_reference import LAPO_ORIGINAL

from lapo_ros.common.images import ImageConversionError, resize_rgb, stack_cameras
from lapo_ros.lapo import MultimodalLatent
from lapo_ros.lapo.algorithms.checkpoint import CheckpointError
from lapo_ros.lapo.compute import autocast_dtype, polyak_update
from lapo_ros.lapo.models.networks import ImageJointEncoder

SMALL = {
    "hidden_dims": (32, 32),
    "feature_dim": 32,
    "image_feature_dim": 32,
    "joint_hidden_dim": 16,
}
METRICS = {
    "critic_loss",
    "q1_loss",
    "q2_loss",
    "v_loss",
    "vae_loss",
    "recon_loss",
    "kl_loss",
    "actor_loss",
    "q_mean",
    "v_mean",
    "target_q_mean",
    "advantage_mean",
    "positive_advantage_share",
    "positive_weight_share",
    "encoder_grad_norm",
    "encoder_action_loss",
    "step",
}


@pytest.fixture(autouse=True)
def one_thread():
    """The machine is shared: one intra-op thread per test process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def short_episodes(n: int = 24) -> ArrayTransitions:
    """Random transitions in episodes of three steps: both critic folds hold some."""
    arrays = random_transitions(n=n, image_size=32).arrays
    arrays["not_done"][:, 0] = np.arange(n) % 3 != 2
    return ArrayTransitions(**arrays)


def make_agent(data=None, **overrides) -> MultimodalLatent:
    data = data if data is not None else short_episodes()
    return MultimodalLatent(16, 32, 1.0, None, None, data, "cpu", **{**SMALL, **overrides})


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def differs(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def images(height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(3)]


def held(optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def ids(*modules: torch.nn.Module) -> set[int]:
    return {id(p) for module in modules for p in module.parameters()}


def test_optimizers_hold_the_seeds_parameter_groups():
    agent = make_agent(**LAPO_ORIGINAL)
    encoder = ids(agent.obs_encoder)
    assert held(agent.critic_optimizer) == encoder | ids(agent.critic)
    assert held(agent.actorvae_optimizer) == ids(agent.actor_vae)
    assert held(agent.actor_optimizer) == ids(agent.actor)
    assert not held(agent.actorvae_optimizer) & encoder
    assert not held(agent.actor_optimizer) & encoder


def test_by_default_the_critic_folds_and_the_vae_also_step_encoders():
    """critic_folds=2: the held-out pair is the critic optimizer's too; vae_encoder_gradient:
    the actor-VAE optimizer also holds the deployed encoder; the actor never does."""
    agent = make_agent()
    encoder = ids(agent.obs_encoder)
    assert held(agent.critic_optimizer) == encoder | ids(
        agent.critic, *agent.fold_encoders, *agent.fold_critics)
    assert held(agent.actorvae_optimizer) == ids(agent.actor_vae) | encoder
    assert held(agent.actor_optimizer) == ids(agent.actor)


@pytest.mark.parametrize("settings", [LAPO_ORIGINAL, {}], ids=["lapo", "default"])
def test_critic_step_changes_the_encoder_the_actor_step_does_not(settings):
    """The critic step (and, with vae_encoder_gradient, the VAE step) moves the encoder;
    the steps that do not own it leave it and its gradients as the last owner left them."""
    agent = make_agent(**settings)
    owners = ["critic", "vae"] if agent.config.vae_encoder_gradient else ["critic"]
    records: dict[str, tuple] = {}

    def watch(name, optimizer):
        def before(*_):
            grads = {
                n: p.grad.clone()
                for n, p in agent.obs_encoder.named_parameters()
                if p.grad is not None
            }
            records[name] = (snapshot(agent.obs_encoder), grads)

        def after(*_):
            records[name] = (*records[name], snapshot(agent.obs_encoder))

        optimizer.register_step_pre_hook(before)
        optimizer.register_step_post_hook(after)

    watch("critic", agent.critic_optimizer)
    watch("vae", agent.actorvae_optimizer)
    watch("actor", agent.actor_optimizer)
    metrics = agent.train(iterations=1, batch_size=8)

    assert metrics["encoder_grad_norm"] > 0
    for name in owners:
        before, grads, after = records[name]
        assert differs(before, after), f"the {name} step must update the encoder"
        assert grads and all(g.abs().sum() > 0 for g in grads.values())
    owner_grads = records[owners[-1]][1]
    for name in {"vae", "actor"} - set(owners):
        before, grads, after = records[name]
        assert not differs(before, after), f"the {name} step changed the encoder"
        # the encoder's gradients are still exactly its owner's: no gradient of this step
        assert grads.keys() == owner_grads.keys()
        assert all(torch.equal(grads[k], owner_grads[k]) for k in grads)


def test_train_reports_finite_diagnostics_and_counts_steps():
    agent = make_agent()
    metrics = agent.train(iterations=2, batch_size=4)
    assert set(metrics) == METRICS
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert metrics["step"] == 2.0 and agent.total_it == 2
    assert 0.0 <= metrics["positive_advantage_share"] <= 1.0
    assert 0.0 <= metrics["positive_weight_share"] <= 1.0
    step = agent.train_step(agent.replay_buffer.sample(4, agent.return_discount))
    assert set(step) == METRICS and step["step"] == 3.0
    behaviour = make_agent(return_baseline="behaviour").train(iterations=1, batch_size=4)
    assert set(behaviour) == METRICS | {"behaviour_v_loss"}
    assert np.isfinite(behaviour["behaviour_v_loss"])


def test_polyak_update_moves_parameters_and_buffers():
    torch.manual_seed(0)
    online = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    online(torch.randn(16, 3) * 5 + 2)  # moves online running statistics
    online[1].num_batches_tracked += 4
    with torch.no_grad():
        online[1].weight.add_(1.0)
    before, source = snapshot(target), snapshot(online)
    polyak_update(online, target, tau=0.25)
    after = target.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(after[key], 0.75 * before[key] + 0.25 * source[key])
        assert not torch.equal(after[key], before[key])
    assert after["1.num_batches_tracked"] == source["1.num_batches_tracked"]


def test_targets_follow_by_polyak_including_batchnorm_buffers_and_stay_in_eval():
    tau = 0.1
    agent = make_agent(tau=tau)
    pairs = {
        "obs_encoder": "obs_encoder_target",
        "critic": "critic_target",
        "actor": "actor_target",
        "actor_vae": "actor_vae_target",
    }
    initial = {name: snapshot(getattr(agent, name)) for name in pairs.values()}
    agent.train(iterations=1, batch_size=8)
    for online_name, target_name in pairs.items():
        online, target = getattr(agent, online_name), getattr(agent, target_name)
        assert not target.training and all(not m.training for m in target.modules())
        assert not any(p.requires_grad for p in target.parameters())
        now = target.state_dict()
        for key, value in online.state_dict().items():
            if value.is_floating_point():
                expected = (1 - tau) * initial[target_name][key] + tau * value
                torch.testing.assert_close(now[key], expected, msg=f"{target_name}.{key}")
    running = agent.obs_encoder_target.state_dict()["image_encoder.backbone.bn1.running_mean"]
    assert not torch.equal(
        running, initial["obs_encoder_target"]["image_encoder.backbone.bn1.running_mean"]
    )


def test_same_seed_same_result_other_seed_differs():
    def run(seed: int) -> tuple[dict, dict]:
        agent = make_agent(random_transitions(n=24, image_size=32, seed=3), seed=seed)
        metrics = agent.train(iterations=2, batch_size=6)
        return metrics, snapshot(agent.actor_vae)

    first, second, other = run(5), run(5), run(6)
    assert first[0] == second[0]
    assert not differs(first[1], second[1])
    assert first[0] != other[0]
    assert differs(first[1], other[1])


def test_select_action_takes_any_image_size_and_matches_the_deployable_policy():
    data = random_transitions(n=24, image_size=32)
    agent = make_agent(data)
    agent.train(iterations=1, batch_size=8)
    joint = np.random.default_rng(1).normal(size=16).astype(np.float32)
    left, right, global_ = images(48, 64, seed=2)
    action = agent.select_action(left, right, global_, joint)
    assert action.shape == (16,) and action.dtype == np.float32
    stats = data.statistics
    assert np.all(action >= stats.action_min - 1e-5) and np.all(action <= stats.action_max + 1e-5)

    policy = agent.deployable_policy()
    assert not policy.training and policy.image_size == (32, 32)
    stacked = stack_cameras(*(resize_rgb(i, (32, 32)) for i in (left, right, global_)))
    other = stack_cameras(*images(32, 32, seed=4))
    batch = torch.from_numpy(np.stack([stacked, other]))
    joints = torch.from_numpy(np.stack([joint, joint + 1]))
    with torch.no_grad():
        deployed = policy(batch, joints).numpy()
    np.testing.assert_allclose(deployed[0], action, rtol=1e-5, atol=1e-5)
    again = agent.select_action(*images(32, 32, seed=4), joint + 1)
    np.testing.assert_allclose(deployed[1], again, rtol=1e-5, atol=1e-5)
    # acting does not disturb training: the next update still runs in train mode
    agent.train(iterations=1, batch_size=8)
    assert agent.obs_encoder.training


def test_save_load_round_trip_restores_everything(tmp_path):
    agent = make_agent()
    agent.train(iterations=2, batch_size=6)
    path = tmp_path / "run" / "agent.pt"
    agent.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["agent.pt"]  # no temporary left over
    payload = torch.load(path, weights_only=True)
    assert payload["step"] == 2 and payload["config"]["hidden_dims"] == [32, 32]
    assert {"critic_optimizer", "actorvae_optimizer", "actor_optimizer"} == set(
        payload["optimizers"]
    )

    restored = MultimodalLatent.from_checkpoint(path, device="cpu")
    assert restored.replay_buffer is None and restored.total_it == 2
    assert (restored.min_v, restored.max_v) == (agent.min_v, agent.max_v)
    observation = (*images(40, 30, seed=9), np.linspace(-1, 1, 16))
    np.testing.assert_array_equal(
        agent.select_action(*observation), restored.select_action(*observation)
    )
    for name in ("obs_encoder_target", "critic_target", "actor_target", "actor_vae_target"):
        assert not differs(snapshot(getattr(agent, name)), snapshot(getattr(restored, name)))

    # training resumes exactly: optimizer moments and the noise generator came back too
    batch = agent.replay_buffer.sample(6, agent.return_discount)
    assert agent.train_step(batch) == restored.train_step(batch)
    assert not differs(snapshot(agent.obs_encoder), snapshot(restored.obs_encoder))

    reloaded = make_agent()
    reloaded.load(path)
    np.testing.assert_array_equal(
        reloaded.select_action(*observation),
        MultimodalLatent.from_checkpoint(path).select_action(*observation),
    )


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        MultimodalLatent.from_checkpoint(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not a lapo_ros checkpoint"):
        MultimodalLatent.from_checkpoint(foreign)
    agent = make_agent()
    path = tmp_path / "agent.pt"
    agent.save(path)
    wrong = MultimodalLatent(
        8, 16, 1.0, None, None, random_transitions(n=8, action_dim=8), "cpu", **SMALL
    )
    with pytest.raises(CheckpointError, match="agent.pt.*action_dim 16"):
        wrong.load(path)
    from lapo_ros.lapo.algorithms.bc import BehaviorCloning

    with pytest.raises(CheckpointError, match="agent.pt.*'multimodal_latent'"):
        BehaviorCloning.from_checkpoint(path)
    assert not os.path.exists(f"{path}.tmp{os.getpid()}")


def test_bad_inputs_are_named():
    data = random_transitions(n=8, image_size=32)
    with pytest.raises(ValueError, match="image_size=64.*32 px"):
        make_agent(data, image_size=64)
    with pytest.raises(TypeError, match="unknown option.*learning_rate"):
        make_agent(data, learning_rate=1.0)
    with pytest.raises(ValueError, match="expectile=1.5"):
        make_agent(data, expectile=1.5)
    agent = make_agent(data)
    batch = data.sample(4, agent.return_discount)
    batch.joint = batch.joint[:, :3]
    with pytest.raises(ValueError, match=r"batch.joint has shape \(4, 3\)"):
        agent.train_step(batch)
    batch = data.sample(4, agent.return_discount)
    batch.action = batch.action[:3]
    with pytest.raises(ValueError, match=r"batch.action has shape \(3, 16\), expected \[4, 16\]"):
        agent.train_step(batch)
    batch = data.sample(4, agent.return_discount)
    batch.reward, batch.not_done = batch.reward[:, 0], batch.not_done[:, 0]  # 1-D is accepted
    assert np.isfinite(agent.train_step(batch)["critic_loss"])
    left, right, global_ = images(32, 32, seed=0)
    with pytest.raises(ValueError, match="joint: expected 16 values, got 3"):
        agent.select_action(left, right, global_, np.zeros(3))
    with pytest.raises(ImageConversionError, match="right image: expected uint8"):
        agent.select_action(left, right.astype(np.float32), global_, np.zeros(16))
    with pytest.raises(ValueError, match="give a replay_buffer or dataset statistics"):
        MultimodalLatent(16, 32, 1.0, 0.0, 1.0, None, "cpu")


def test_value_bounds_default_to_the_dataset_rewards():
    data = random_transitions(n=8, image_size=32)
    data.statistics.reward_min, data.statistics.reward_max = 0.2, 1.0
    agent = make_agent(data, gamma=0.9)
    # a terminal step's value is its reward: 0.2, below LAPO's 0.2 / (1 - 0.9) = 2
    assert agent.min_v == pytest.approx(0.2) and agent.max_v == pytest.approx(10.0)
    data.statistics.reward_min, data.statistics.reward_max = -1.0, -0.5
    agent = make_agent(data, gamma=0.9)
    assert agent.min_v == pytest.approx(-10.0) and agent.max_v == pytest.approx(-0.5)
    assert agent.latent_dim == 32
    explicit = MultimodalLatent(16, None, 1.0, -1.0, 2.0, data, "cpu", **SMALL)
    assert (explicit.min_v, explicit.max_v, explicit.latent_dim) == (-1.0, 2.0, 32)


def episodes(count: int, length: int, image_size: int, seed: int) -> list:
    from lapo_ros.dataset.layout import Episode

    rng = np.random.default_rng(seed)

    def frames():
        return rng.integers(0, 256, size=(length, image_size, image_size, 3), dtype=np.uint8)

    return [
        Episode(
            left_image=frames(),
            right_image=frames(),
            global_image=frames(),
            joint=rng.normal(size=(length, 16)).astype(np.float32),
            action=rng.uniform(-1, 1, size=(length, 16)).astype(np.float32),
            reward=rng.uniform(0, 1, size=length).astype(np.float32),
            terminal=bool(index % 2),
        )
        for index in range(count)
    ]


def test_trains_from_an_hdf5_file_through_the_replay_buffer(tmp_path):
    from lapo_ros.dataset.layout import write_episodes
    from lapo_ros.lapo import MultimodalReplayBuffer

    path = tmp_path / "robot_data.hdf5"
    write_episodes(
        path, episodes(3, 5, 32, seed=0), joint_names=[f"j{i}" for i in range(16)], rate_hz=10.0
    )
    buffer = MultimodalReplayBuffer(action_dim=16, joint_dim=16, device="cpu", image_size=32)
    buffer.load_from_hdf5(str(path))
    memory = MultimodalReplayBuffer(action_dim=16, joint_dim=16, device="cpu", image_size=32)
    memory.add_episodes(episodes(2, 4, 32, seed=1))
    for source in (buffer, memory):
        policy = MultimodalLatent(
            action_dim=16,
            latent_dim=32,
            max_action=1.0,
            min_v=None,
            max_v=None,
            replay_buffer=source,
            device="cpu",
            **SMALL,
        )
        metrics = policy.train(iterations=2, batch_size=4)
        assert all(np.isfinite(v) for v in metrics.values())
        action = policy.select_action(*images(60, 80, seed=3), np.zeros(16))
        assert action.shape == (16,) and np.all(np.isfinite(action))
        stats = source.statistics
        assert np.all(action >= stats.action_min - 1e-5)
        assert np.all(action <= stats.action_max + 1e-5)


def test_pretrained_weights_come_from_a_local_file_and_are_not_needed_to_reload(tmp_path):
    from torchvision.models import resnet18

    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    kernel = torch.load(weights, weights_only=True)["conv1.weight"]
    agent = make_agent(pretrained_path=str(weights), conv1_scale=1 / 3)
    for encoder in (agent.obs_encoder, agent.obs_encoder_target):
        conv1 = encoder.image_encoder.backbone.conv1.weight
        torch.testing.assert_close(conv1[:, 6:9], kernel / 3)
    agent.save(tmp_path / "agent.pt")
    weights.unlink()  # the checkpoint holds the weights; the file is not read again
    restored = MultimodalLatent.from_checkpoint(tmp_path / "agent.pt")
    assert restored.config.pretrained_path == str(weights)
    torch.testing.assert_close(
        restored.obs_encoder.image_encoder.backbone.conv1.weight[:, :3], kernel / 3
    )


def test_cross_fitting_is_refused_when_one_fold_holds_every_episode():
    arrays = random_transitions(n=8, image_size=32).arrays
    arrays["not_done"][:] = 1.0  # one episode: fold 1's pair would fit nothing
    with pytest.raises(ValueError, match="critic_folds=2 needs two episodes at "
                                         "least.*has 1: .*critic_folds=1"):
        make_agent(ArrayTransitions(**arrays))
    assert make_agent(ArrayTransitions(**arrays), critic_folds=1).config.critic_folds == 1


def test_critic_action_head_belongs_to_the_critic_optimizer_and_can_be_off(tmp_path):
    """The action head is part of the critic: stepped with the critic and the encoder by
    the critic optimizer only; encoder_action_weight=0 is the seed's pure TD encoder."""
    agent = make_agent()
    head = ids(agent.critic.action_net)
    assert head <= held(agent.critic_optimizer)
    assert not head & (held(agent.actorvae_optimizer) | held(agent.actor_optimizer))
    head_before = snapshot(agent.critic.action_net)
    metrics = agent.train(iterations=2, batch_size=4)
    assert np.isfinite(metrics["encoder_action_loss"])
    assert differs(head_before, snapshot(agent.critic.action_net))

    pure = make_agent(encoder_action_weight=0.0)
    assert pure.critic.action_net is None
    assert set(pure.train(iterations=1, batch_size=4)) == METRICS - {"encoder_action_loss"}
    pure.save(tmp_path / "pure.pt")
    restored = MultimodalLatent.from_checkpoint(tmp_path / "pure.pt", device="cpu")
    assert restored.config.encoder_action_weight == 0.0 and restored.critic.action_net is None
    assert not differs(snapshot(pure.critic), snapshot(restored.critic))
    with pytest.raises(ValueError, match="encoder_action_weight"):
        make_agent(encoder_action_weight=-1.0)


def test_options_of_the_removed_short_run_preset_are_named_as_unknown():
    with pytest.raises(TypeError, match="unknown option.*return_mix"):
        make_agent(return_mix=1.0)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) == ("bfloat16" if native else None)
    assert make_agent(autocast_dtype="auto").autocast_dtype == ("bfloat16" if native else None)
    assert make_agent().autocast_dtype is None  # the default: float32
    assert autocast_dtype("float32", cpu) is None and autocast_dtype(None, cpu) is None
    assert autocast_dtype("bfloat16", cpu) == "bfloat16"
    with pytest.raises(ValueError, match="autocast_dtype must be one of"):
        make_agent(autocast_dtype="bf16")


def test_bf16_autocast_runs_the_update_in_bf16_on_the_cpu_and_acts_in_fp32():
    agent = make_agent(autocast_dtype="bfloat16")
    seen = []
    hook = agent.obs_encoder.image_encoder.backbone.conv1.register_forward_hook(
        lambda module, inputs, output: seen.append(output.dtype))
    try:
        metrics = agent.train(iterations=2, batch_size=4)
    finally:
        hook.remove()
    assert torch.bfloat16 in seen  # the convolutions ran in bf16
    assert all(np.isfinite(value) for value in metrics.values())
    assert all(p.dtype == torch.float32 for p in agent.obs_encoder.parameters())  # fp32 master
    action = agent.select_action(*images(32, 32, seed=1), np.zeros(16, np.float32))
    assert action.dtype == np.float32 and np.all(np.isfinite(action))


def test_compile_encoders_compiles_the_update_and_deploys_an_eager_policy():
    eager, compiled = make_agent(), make_agent(compile_encoders=True)
    encoders = [m for network in compiled.modules.networks().values()
                for m in network.modules() if isinstance(m, ImageJointEncoder)]
    assert len(encoders) == 4  # online and target, both critic folds
    assert all(encoder._compiled_call_impl is not None for encoder in encoders)
    initial = snapshot(compiled.obs_encoder)
    assert initial.keys() == snapshot(eager.obs_encoder).keys()  # checkpoints unchanged
    eager_metrics = eager.train(iterations=1, batch_size=4)  # the same weights and batch
    compiled_metrics = compiled.train(iterations=1, batch_size=4)
    for name, value in eager_metrics.items():
        assert compiled_metrics[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    assert differs(initial, snapshot(compiled.obs_encoder))
    policy = compiled.deployable_policy()
    assert policy.obs_encoder._compiled_call_impl is None  # deployed and exported eager
    observation = (*images(32, 32, seed=2), np.zeros(16, np.float32))
    np.testing.assert_allclose(compiled.select_action(*observation),
                               eager.select_action(*observation), atol=1e-3)
