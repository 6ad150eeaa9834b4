"""The ALOHA sim node over real rclpy pub/sub: its topics, its episode report, and the
scripted expert's plan played through ``commands`` from another node, scored by the sim.

Skipped only where the optional extra ``lapo_ros[aloha]`` is not installed.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

EXTRA = "the ALOHA sim needs the optional extra lapo_ros[aloha] (make setup installs it)"
for module in ("gym_aloha", "dm_control", "mujoco"):
    pytest.importorskip(module, reason=EXTRA)
rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lapo_ros.common.images import image_msg_to_rgb  # noqa: E402
from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv  # noqa: E402
from lapo_ros.sim.aloha.experts import TransferCubeExpert, TransferCubeExpertConfig  # noqa: E402
from lapo_ros.sim.aloha.node import AlohaSimNode  # noqa: E402
from lapo_ros.sim.aloha.scene import JOINT_NAMES  # noqa: E402


def spin_until(executor, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert condition(), f"timed out after {timeout} s waiting for {what}"


def aloha_node(context, **parameters) -> AlohaSimNode:
    return AlohaSimNode(context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in parameters.items()])


def test_node_publishes_the_robot_topics_and_reports_each_episode(ros_context):
    sim = aloha_node(ros_context, rate_hz=100.0, image_size=[24, 32], max_steps=5, seed=11)
    probe = rclpy.create_node("aloha_probe", context=ros_context)
    images: dict[str, Image] = {}
    joint_states: list[JointState] = []
    rewards: list[float] = []
    results: list[dict] = []
    for camera in ("left", "right", "global"):
        probe.create_subscription(
            Image, f"{camera}/image_raw", lambda msg, c=camera: images.setdefault(c, msg), 10)
    probe.create_subscription(JointState, "joint_states", joint_states.append, 10)
    probe.create_subscription(Float64, "reward", lambda msg: rewards.append(msg.data), 10)
    probe.create_subscription(String, "aloha_sim_node/episode_result",
                              lambda msg: results.append(json.loads(msg.data)), 10)
    commands = probe.create_publisher(Float64MultiArray, "commands", 10)
    reset = probe.create_client(Trigger, "aloha_sim_node/reset")
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    executor.add_node(probe)
    try:
        spin_until(executor, lambda: len(images) == 3 and len(joint_states) >= 10, 20.0,
                   "all camera topics and joint_states")
        assert sim.env.steps == 0 and not results, "the episode ran before any command"
        start = np.array(joint_states[-1].position)
        commands.publish(Float64MultiArray(data=[0.0] * 3))  # ignored: wrong size
        executor.spin_once(timeout_sec=0.2)
        assert sim.env.steps == 0
        hold = Float64MultiArray(data=start.tolist())
        spin_until(executor, lambda: (commands.publish(hold), len(results) >= 2)[1], 20.0,
                   "two 5-step episodes under commands")
        assert reset.wait_for_service(timeout_sec=5.0)
        future = reset.call_async(Trigger.Request())
        spin_until(executor, future.done, 10.0, "the ~/reset service")
    finally:
        executor.shutdown()
        probe.destroy_node()
        sim.destroy_node()
    assert future.result().success
    for camera, msg in images.items():
        assert (msg.height, msg.width, msg.encoding, msg.step) == (24, 32, "rgb8", 96)
        assert msg.header.frame_id == f"{camera}_camera"
        assert image_msg_to_rgb(msg).shape == (24, 32, 3)
    assert list(joint_states[0].name) == list(JOINT_NAMES)
    np.testing.assert_allclose(start[:6], [0.0, -0.96, 1.16, 0.0, -0.3, 0.0], atol=1e-6)
    for result, seed in zip(results[:2], (11, 12), strict=True):
        assert result["seed"] == seed and result["task"] == "transfer_cube"
        assert result["steps"] == 5 and sum(result["stage_steps"]) == 5
        assert not result["success"] and result["max_stage"] == result["final_stage"] == 0
    assert np.allclose(rewards, 0.0)


def test_node_rejects_bad_parameters_by_name(ros_context):
    with pytest.raises(ValueError, match="parameter 'task'"):
        aloha_node(ros_context, task="stack_cubes")
    with pytest.raises(ValueError, match="parameter 'image_size'"):
        aloha_node(ros_context, image_size=[64])
    with pytest.raises(ValueError, match="parameter 'rate_hz'"):
        aloha_node(ros_context, rate_hz=0.0)


def test_the_expert_plan_played_over_topics_transfers_the_cube(ros_context):
    seed = 2
    planner_env = AlohaSimEnv(AlohaSimConfig(image_size=None))
    planner_env.reset(seed)  # the same cube placement as the node's first episode
    plan = TransferCubeExpert(planner_env, TransferCubeExpertConfig(),
                              np.random.default_rng(seed)).reset()
    sim = aloha_node(ros_context, rate_hz=100.0, image_size=[16, 16], seed=seed,
                     auto_reset=False)
    controller = rclpy.create_node("aloha_controller", context=ros_context)
    commands = controller.create_publisher(Float64MultiArray, "commands", 10)
    results: list[dict] = []
    received = []

    def on_joints(msg: JointState) -> None:
        assert list(msg.name) == list(JOINT_NAMES)
        step = min(len(received), len(plan) - 1)  # the sim steps once per joint_states
        received.append(msg)
        commands.publish(Float64MultiArray(data=plan[step].tolist()))

    controller.create_subscription(JointState, "joint_states", on_joints, 10)
    controller.create_subscription(String, "aloha_sim_node/episode_result",
                                   lambda msg: results.append(json.loads(msg.data)), 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    executor.add_node(controller)
    try:
        spin_until(executor, lambda: bool(results), 60.0, "the episode's end")
    finally:
        executor.shutdown()
        controller.destroy_node()
        sim.destroy_node()
    assert results[0]["success"] and results[0]["max_stage"] == 4, results
    assert results[0]["stage_steps"][2] > 20  # carried in the air by the right gripper


def test_policy_node_with_the_aloha_config_drives_the_sim_over_dds(ros_context, tmp_path):
    """policy_node (a child process, config/aloha_policy.yaml) against the ALOHA sim node:
    a known ONNX policy (action = joint + offset on the left waist) moves that joint only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from synthetic_policy import write_onnx_policy

    from lapo_ros.common.policy_file import PolicyMetadata

    repo = Path(__file__).resolve().parents[1]
    waist = JOINT_NAMES.index("left_arm_waist")
    offset = np.zeros(14, np.float32)
    offset[waist] = 0.15  # above the waist's friction (frictionloss 50, kp 800)
    metadata = PolicyMetadata(joint_names=list(JOINT_NAMES), image_size=[24, 32],
                              action_dim=14, joint_dim=14, rate_hz=20.0)
    model = write_onnx_policy(tmp_path / "policy.onnx", metadata, offset)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "model_path": str(model), "rate_hz": 20.0, "enabled": True, "device": "cpu",
        "max_sensor_age": 0.5, "max_sensor_skew": 0.5}}}))
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    child = subprocess.Popen(
        [sys.executable, "-m", "lapo_ros.robot.node", "--ros-args",
         "--params-file", str(repo / "config" / "aloha_policy.yaml"),
         "--params-file", str(overrides)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sim = aloha_node(ros_context, rate_hz=20.0, image_size=[24, 32], max_steps=20, seed=5,
                     auto_reset=False)
    results: list[dict] = []
    probe = rclpy.create_node("aloha_result_probe", context=ros_context)
    probe.create_subscription(String, "aloha_sim_node/episode_result",
                              lambda msg: results.append(json.loads(msg.data)), 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    executor.add_node(probe)
    start = sim.env.joints.copy()
    try:
        spin_until(executor, lambda: bool(results) or child.poll() is not None, 90.0,
                   "a 20-step episode driven by policy_node")
        assert child.poll() is None, child.communicate()[0][-3000:]
        joints = sim.env.joints
    finally:
        child.terminate()
        child.wait(timeout=15)
        executor.shutdown()
        probe.destroy_node()
        sim.destroy_node()
    assert results[0]["steps"] == 20
    # the policy's command for step k is (measured waist + 0.15): the waist keeps turning,
    # past what one command reaches (how many of the 20 steps get a fresh command depends
    # on the machine's load)
    assert joints[waist] - start[waist] > 2 * offset[waist]
    others = np.delete(np.arange(14), waist)
    assert np.abs(joints[others] - start[others]).max() < 0.15  # held at the start pose


def test_the_closed_loop_harness_counts_episodes_and_reports_stages(tmp_path):
    from synthetic_policy import write_onnx_policy

    from lapo_ros.common.policy_file import PolicyMetadata
    from lapo_ros.sim.aloha.closed_loop import AlohaClosedLoopConfig, run_aloha_closed_loop

    metadata = PolicyMetadata(joint_names=list(JOINT_NAMES), image_size=[24, 32],
                              action_dim=14, joint_dim=14, rate_hz=50.0)
    model = write_onnx_policy(tmp_path / "policy.onnx", metadata, np.zeros(14, np.float32))
    seen = []
    result = run_aloha_closed_loop(AlohaClosedLoopConfig(
        model_path=model, episodes=2, seed=3, rate_hz=20.0, device="cpu",
        sim=AlohaSimConfig(image_size=(24, 32), max_steps=10)), progress=seen.append)
    assert [e.steps for e in result.episodes] == [10, 10] and seen == [False, False]
    assert [e.seed for e in result.episodes] == [3, 4]
    assert result.success_rate == 0.0 and result.stage_counts() == [2, 0, 0, 0, 0]
    assert result.latency_ms.size >= 10 and np.all(np.isfinite(result.latency_ms))
    with pytest.raises(ValueError, match="params_file"):
        AlohaClosedLoopConfig(model_path=model, params_file=tmp_path / "missing.yaml")
