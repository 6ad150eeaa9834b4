"""Behaviour-cloning baseline: same encoder and API as MultimodalLatent (issue 3)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from lapo_core_data import random_transitions

from lapo_ros.common.images import resize_rgb, stack_cameras
from lapo_ros.lapo.algorithms.bc import BehaviorCloning
from lapo_ros.lapo.algorithms.checkpoint import CheckpointError
from lapo_ros.lapo.models.networks import ImageJointEncoder

SMALL = {
    "hidden_dims": (32, 32),
    "feature_dim": 32,
    "image_feature_dim": 32,
    "joint_hidden_dim": 16,
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_bc(data=None, **overrides) -> BehaviorCloning:
    data = data if data is not None else random_transitions(n=24, image_size=32)
    return BehaviorCloning(16, 1.0, data, "cpu", **{**SMALL, **overrides})


def camera_images(height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8) for _ in range(3)]


def test_bc_uses_the_same_encoder_and_updates_it_by_the_bc_loss():
    bc = make_bc()
    assert isinstance(bc.obs_encoder, ImageJointEncoder)
    held = {id(p) for group in bc.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in bc.obs_encoder.parameters()} <= held
    before = [p.detach().clone() for p in bc.obs_encoder.parameters()]
    metrics = bc.train(iterations=1, batch_size=8)
    assert set(metrics) == {"bc_loss", "encoder_grad_norm", "step"}
    assert metrics["encoder_grad_norm"] > 0
    assert any(
        not torch.equal(a, b) for a, b in zip(before, bc.obs_encoder.parameters(), strict=True)
    )


def test_bc_loss_falls_on_a_fixed_batch():
    bc = make_bc()
    batch = bc.replay_buffer.sample(8)
    first = bc.train_step(batch)["bc_loss"]
    for _ in range(200):
        last = bc.train_step(batch)["bc_loss"]
    assert last < 0.5 * first


def test_bc_select_action_matches_its_deployable_policy_and_checkpoint(tmp_path):
    bc = make_bc()
    bc.train(iterations=2, batch_size=8)
    left, right, global_ = camera_images(50, 40, seed=1)
    joint = np.linspace(-2, 2, 16).astype(np.float32)
    action = bc.select_action(left, right, global_, joint)
    assert action.shape == (16,) and action.dtype == np.float32
    image = stack_cameras(*(resize_rgb(i, (32, 32)) for i in (left, right, global_)))
    with torch.no_grad():
        deployed = bc.deployable_policy()(
            torch.from_numpy(image)[None], torch.from_numpy(joint)[None]
        )
    np.testing.assert_allclose(deployed[0].numpy(), action, rtol=1e-5, atol=1e-5)
    example = (torch.from_numpy(image)[None], torch.from_numpy(joint)[None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still used
        traced = torch.jit.trace(bc.deployable_policy(), example)
    np.testing.assert_allclose(traced(*example)[0].numpy(), action, rtol=1e-5, atol=1e-5)

    path = tmp_path / "bc.pt"
    bc.save(path)
    restored = BehaviorCloning.from_checkpoint(path)
    assert restored.total_it == 2 and restored.replay_buffer is None
    np.testing.assert_array_equal(restored.select_action(left, right, global_, joint), action)
    batch = bc.replay_buffer.sample(8)
    assert bc.train_step(batch) == restored.train_step(batch)


def test_bc_same_seed_same_result_and_errors(tmp_path):
    def run(seed):
        bc = make_bc(random_transitions(n=24, image_size=32, seed=2), seed=seed)
        return bc.train(iterations=2, batch_size=6)

    assert run(1) == run(1)
    assert run(1) != run(2)
    with pytest.raises(ValueError, match="image_size=48.*32 px"):
        make_bc(image_size=48)
    from lapo_ros.lapo import MultimodalLatent

    path = tmp_path / "bc.pt"
    make_bc().save(path)
    with pytest.raises(CheckpointError, match="bc.pt.*'behavior_cloning'"):
        MultimodalLatent.from_checkpoint(path)
