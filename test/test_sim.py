"""The simulated dual arm: kinematics, controller limits, rendering, task and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from lapo_ros.sim import JOINT_NAMES, DualArmReachEnv, InvalidCommandError, SimConfig
from lapo_ros.sim.dual_arm import ArmGeometry, forward_kinematics, joint_limits, reach_ik
from lapo_ros.sim.experts import DemonstratorConfig, ScriptedDemonstrator
from lapo_ros.sim.task import GOAL_COLOUR


@pytest.fixture
def env():
    return DualArmReachEnv(SimConfig(image_size=(32, 40)))


def run_episode(env, kind, seed):
    obs, info = env.reset(seed)
    demonstrator = ScriptedDemonstrator(
        env, DemonstratorConfig(kind=kind), np.random.default_rng(seed)
    )
    demonstrator.reset()
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(demonstrator.act(env.joints))
        rewards.append(reward)
        if terminated or truncated:
            return info, np.array(rewards), terminated


@pytest.mark.parametrize("arm", ["left", "right"])
def test_reach_ik_puts_the_fingertip_on_the_target_pointing_down(arm):
    geometry = ArmGeometry()
    lower, upper = joint_limits()
    rng = np.random.default_rng(0)
    for _ in range(50):
        side = -1.0 if arm == "left" else 1.0  # anywhere in the arm's half of the table
        target = np.array(
            [side * rng.uniform(0.05, 0.45), rng.uniform(0.25, 0.6), rng.uniform(0.0, 0.3)]
        )
        joints = np.zeros(16)
        index = slice(0, 7) if arm == "left" else slice(7, 14)
        joints[index] = reach_ik(target, arm, geometry)
        pose = forward_kinematics(joints, arm, geometry)
        np.testing.assert_allclose(pose.tip, target, atol=1e-6)
        np.testing.assert_allclose(pose.hand_rotation[:, 2], [0, 0, -1], atol=1e-6)
        assert np.all(joints[index] >= lower[index]) and np.all(joints[index] <= upper[index])


def test_observation_shapes_and_joint_names(env):
    obs, info = env.reset(1)
    for camera in ("left", "right", "global"):
        assert obs[camera].shape == (32, 40, 3) and obs[camera].dtype == np.uint8
    assert obs["joint"].shape == (16,) and obs["joint"].dtype == np.float32
    assert len(JOINT_NAMES) == 16 and JOINT_NAMES[0] == "left_joint1"
    assert JOINT_NAMES[-2:] == ("left_gripper", "right_gripper")
    assert info["goal_arm"] in ("left", "right")


def test_same_seed_same_episode_and_goal_only_in_images(env):
    first = run_episode(env, "noisy", 7)
    second = run_episode(env, "noisy", 7)
    np.testing.assert_array_equal(first[1], second[1])
    obs_a, _ = env.reset(3)
    obs_b, _ = DualArmReachEnv(SimConfig(image_size=(32, 40))).reset(3)
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key])
    layouts, joints = set(), []
    for seed in range(12):
        obs, info = env.reset(seed)
        layouts.add(info["goal_arm"])
        joints.append(obs["joint"])
    assert layouts == {"left", "right"}
    # the joint state at reset says nothing about the goal; the global camera shows it
    assert np.ptp(np.stack(joints), axis=0).max() == 0.0
    red = np.all(np.abs(obs["global"].astype(int) - GOAL_COLOUR) < 40, axis=-1)
    assert red.sum() >= 2


def test_controller_limits_each_step_and_clamps_to_joint_limits(env):
    env.reset(0)
    start = env.joints.copy()
    far = np.full(16, 100.0)
    obs, *_ = env.step(far)
    step = np.abs(obs["joint"] - start)
    max_step = env.config.max_step()
    assert np.all(step <= max_step + 1e-6)
    for _ in range(200):
        obs, _, terminated, truncated, _ = env.step(far)
        if terminated or truncated:
            break
    assert np.all(env.joints <= env.upper + 1e-9)


def test_invalid_commands_name_the_problem(env):
    env.reset(0)
    with pytest.raises(InvalidCommandError, match="16 joint positions"):
        env.step(np.zeros(15))
    command = env.joints.copy()
    command[8] = np.nan
    with pytest.raises(InvalidCommandError, match="right_joint2"):
        env.step(command)


def test_step_after_episode_end_is_refused():
    env = DualArmReachEnv(SimConfig(image_size=(16, 16), max_steps=3))
    env.reset(0)
    for _ in range(3):
        *_, truncated, _ = env.step(env.joints)
    assert truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.joints)


def test_expert_succeeds_wrong_target_fails_and_rewards_separate_them(env):
    returns = {}
    for kind in ("expert", "noisy", "wrong_target"):
        outcomes = [run_episode(env, kind, seed) for seed in range(6)]
        successes = [info["success"] for info, _, _ in outcomes]
        returns[kind] = np.mean([rewards.sum() for _, rewards, _ in outcomes])
        if kind == "wrong_target":
            assert not any(successes)
            assert all(info["failure"] and terminated for info, _, terminated in outcomes)
        else:
            assert all(successes)
        assert all(len(rewards) < env.config.max_steps for _, rewards, _ in outcomes)
    # the outcome (+1 / -1) dominates; the progress term adds a few tenths
    assert returns["expert"] > 1.0 > 0.0 > -0.5 > returns["wrong_target"]
    assert returns["noisy"] > 1.0


def test_holding_still_times_out_without_reward(env):
    env.reset(5)
    rewards = []
    for _ in range(env.config.max_steps):
        _, reward, terminated, truncated, info = env.step(env.joints)
        rewards.append(reward)
    assert truncated and not terminated and not info["success"]
    assert np.allclose(rewards, 0.0)
