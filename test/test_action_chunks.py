"""Action chunks on the training side: the h-step backup, checkpoints, export, evaluation.

A chunk agent (``chunk_size`` h > 1) models a_t..a_{t+h-1}; its critic's target is the
n-step backup ``sum_{i<n} gamma^i r_{t+i} + gamma^n * not_done * V(s_{t+n})`` (n <= h, cut
at the episode's end); its policy file outputs [B, h, A] in robot units.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from lapo_reference import LAPO_ORIGINAL
from training_fixtures import JOINT_NAMES, write_dataset

from lapo_ros.lapo import BehaviorCloning, MultimodalLatent, MultimodalReplayBuffer
from lapo_ros.lapo.algorithms.lapo import chunk_backup

REPO = Path(__file__).resolve().parents[1]
# float32: the backup is compared to 1e-5 with values computed here in float32
TINY = {"hidden_dims": (32, 32), "feature_dim": 32, "image_feature_dim": 32,
        "joint_hidden_dim": 16, "autocast_dtype": "float32"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def buffer(tmp_path) -> MultimodalReplayBuffer:
    data = write_dataset(tmp_path / "data.hdf5", episodes=4, steps=5, image_size=16)
    buffer = MultimodalReplayBuffer(action_dim=4, joint_dim=4, image_size=16)
    buffer.load_from_hdf5(data)
    return buffer


def test_the_critic_backs_up_a_chunks_rewards_and_stops_at_its_episodes_end(buffer):
    agent = MultimodalLatent(4, replay_buffer=buffer, device="cpu", chunk_size=3,
                             **{**TINY, **LAPO_ORIGINAL})
    batch = buffer.sample(32, chunk_size=3)
    steps = batch.chunk_steps[:, 0]
    assert {1.0, 2.0, 3.0} <= set(steps.tolist())  # full chunks and chunks cut by the end
    gamma = agent.config.gamma
    reward, discount = chunk_backup(batch, gamma)
    for row in range(len(batch)):
        n = int(steps[row])
        expected = sum(gamma ** i * float(batch.reward[row, i]) for i in range(n))
        assert float(reward[row, 0]) == pytest.approx(expected, rel=1e-6)
        assert float(discount[row, 0]) == pytest.approx(
            gamma ** n * float(batch.not_done[row, 0]), rel=1e-6)
        assert (batch.reward[row, n:] == 0).all()
    with torch.no_grad():
        next_feature = agent.obs_encoder_target(
            batch.next_image, agent.joint_normalizer(batch.next_joint))
        online_v = agent.critic.v(next_feature)
    record = agent.update(batch)
    torch.testing.assert_close(record.critic.target_q, reward + discount * online_v,
                               rtol=1e-5, atol=1e-6)
    # the VAE and critic model the whole chunk: h * A values per row
    assert agent.actor_vae.decode_latent(next_feature, agent.actor(next_feature)).shape == (
        32, 12)


def test_a_batch_without_chunks_is_refused_by_a_chunk_agent(buffer):
    agent = MultimodalLatent(4, replay_buffer=buffer, device="cpu", chunk_size=3, **TINY)
    with pytest.raises(ValueError, match="chunk_size 3 needs batches with chunk_steps"):
        agent.train_step(buffer.sample(4, discount=agent.return_discount))
    other = buffer.sample(4, discount=agent.return_discount, chunk_size=2)
    with pytest.raises(ValueError, match=r"batch.action has shape \(4, 2, 4\)"):
        agent.train_step(other)


@pytest.mark.parametrize("agent_class", [MultimodalLatent, BehaviorCloning])
def test_a_chunk_agent_acts_in_chunks_and_round_trips_a_checkpoint(buffer, tmp_path,
                                                                   agent_class):
    agent = agent_class(4, replay_buffer=buffer, device="cpu", chunk_size=3, **TINY)
    agent.train(iterations=2, batch_size=4)
    rng = np.random.default_rng(0)
    cameras = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
    joint = rng.normal(size=4).astype(np.float32)
    chunk = agent.select_action(*cameras, joint)
    assert chunk.shape == (3, 4)
    stats = buffer.statistics  # every row within the recorded range of each joint
    assert np.all(chunk >= stats.action_min - 1e-6) and np.all(chunk <= stats.action_max + 1e-6)
    agent.save(tmp_path / "agent.pt")
    restored = agent_class.from_checkpoint(tmp_path / "agent.pt")
    assert restored.chunk_size == 3
    np.testing.assert_allclose(restored.select_action(*cameras, joint), chunk, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_a_trained_chunk_policy_exports_runs_in_the_node_runtime_and_evaluates(tmp_path,
                                                                               suffix):
    from lapo_ros.lapo.evaluation import evaluate_policy_file
    from lapo_ros.lapo.export import read_policy_metadata
    from lapo_ros.lapo.training.checkpoint import load_trained_agent
    from lapo_ros.lapo.training.config import load_train_config
    from lapo_ros.lapo.training.trainer import train
    from lapo_ros.robot.runtime import load_policy

    data = write_dataset(tmp_path / "data.hdf5", episodes=3, steps=6)
    config = load_train_config(None, {
        "data": [str(data)], "out": str(tmp_path / "run"), "steps": 2, "batch_size": 2,
        "image_size": 32, "device": "cpu", "num_workers": 0, "val_batches": 1,
        "agent": {"chunk_size": 4, **TINY},
    })
    result = train(config)
    out = tmp_path / f"policy{suffix}"
    spec = importlib.util.spec_from_file_location("export_cli", REPO / "training" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--checkpoint", str(result.last_checkpoint), "--out", str(out)]) == 0

    metadata = read_policy_metadata(out)
    assert metadata.chunk_size == 4 and metadata.action_shape == (4, 4)
    assert metadata.joint_names == JOINT_NAMES
    agent, _ = load_trained_agent(result.last_checkpoint)
    rng = np.random.default_rng(1)
    cameras = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    joint = rng.normal(size=4).astype(np.float32)
    from lapo_ros.lapo.models.policy import observation_arrays

    image, joint_array = observation_arrays(*cameras, joint, 32, 4)
    runtime = load_policy(out)
    np.testing.assert_allclose(runtime.infer_chunk(image[None], joint_array[None]),
                               agent.select_action(*cameras, joint), atol=1e-4)
    report = evaluate_policy_file(out, data, tmp_path / "eval", plots=0)
    assert [error.name for error in report.errors] == JOINT_NAMES
    assert all(np.isfinite(error.rmse) for error in report.errors)


