"""LAPO does what it claims on a tiny two-mode problem; plain BC averages the modes (issue 3).

Every observation was recorded with actions from two modes, and which mode is rewarded
depends on the observation (``lapo_core_data.two_mode_transitions``). Advantage-weighted
LAPO must put its greedy action on each observation's rewarded mode, which it can only do
by reading the images and joints; MSE behaviour cloning, blind to rewards, lands between.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lapo_core_data import two_mode_transitions

from lapo_ros.lapo import BehaviorCloning, MultimodalLatent

# small heads and a fast learning rate so the claim shows within a minute on a busy CPU
SMALL = {
    "hidden_dims": (64, 64),
    "feature_dim": 64,
    "image_feature_dim": 64,
    "joint_hidden_dim": 32,
}
LEARNING_RATE = 2e-3
BATCH_SIZE = 16


@pytest.fixture(scope="module")
def problem():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield two_mode_transitions(n=256, image_size=16, num_observations=4, seed=0)
    torch.set_num_threads(threads)


def greedy_actions(agent, observations) -> np.ndarray:
    with torch.no_grad():
        return agent.deployable_policy()(observations.image, observations.joint).numpy()


@pytest.mark.slow
def test_lapo_picks_each_observations_rewarded_mode_and_bc_averages(problem):
    data, observations, rewarded, unrewarded = problem
    lapo = MultimodalLatent(
        2,
        None,
        1.0,
        None,
        None,
        data,
        "cpu",
        **SMALL,
        critic_lr=LEARNING_RATE,
        actor_lr=LEARNING_RATE,
        actor_vae_lr=LEARNING_RATE,
        tau=0.05,
    )
    metrics = lapo.train(iterations=100, batch_size=BATCH_SIZE)
    bc = BehaviorCloning(2, 1.0, data, "cpu", **SMALL, actor_lr=LEARNING_RATE)
    bc.train(iterations=30, batch_size=BATCH_SIZE)

    lapo_actions = greedy_actions(lapo, observations)
    bc_actions = greedy_actions(bc, observations)
    assert lapo_actions.shape == bc_actions.shape == (4, 2)
    gap = np.abs(rewarded - unrewarded).max()  # 1.2
    lapo_error = np.abs(lapo_actions - rewarded).max(axis=1)
    assert np.all(lapo_error < 0.2 * gap), (lapo_actions, metrics)
    # BC predicts the average of the modes: far from both, near the middle
    middle = (rewarded + unrewarded) / 2
    assert np.all(np.abs(bc_actions - middle).max(axis=1) < 0.3 * gap), bc_actions
    assert np.all(np.abs(bc_actions - rewarded).min(axis=1) > 0.2 * gap), bc_actions
    assert np.all(np.abs(bc_actions - unrewarded).min(axis=1) > 0.2 * gap), bc_actions
