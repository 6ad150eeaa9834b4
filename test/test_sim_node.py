"""The sim node over real DDS: its topics, and a closed loop with a controller in this process.

The controller sees only what a robot policy sees (the global camera image and
``joint_states``): it finds the red target in the image, back-projects it onto the table
and commands the arm on that side. Success proves images, joint names, command order and
timing line up between the node and a separate client process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from lapo_ros.common.images import image_msg_to_rgb  # noqa: E402
from lapo_ros.sim import JOINT_NAMES, SimConfig  # noqa: E402
from lapo_ros.sim.dual_arm import ArmGeometry, arm_slice, gripper_index, reach_ik  # noqa: E402
from lapo_ros.sim.env import DualArmReachEnv  # noqa: E402
from lapo_ros.sim.node import SimNode  # noqa: E402
from lapo_ros.sim.rendering import GLOBAL_CAMERA  # noqa: E402
from lapo_ros.sim.task import GOAL_COLOUR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def spin_until(executor, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert condition(), f"timed out after {timeout} s waiting for {what}"


def locate_goal(global_rgb: np.ndarray) -> np.ndarray | None:
    """Table position of the red disc seen by the global camera (None when not visible)."""
    red = np.all(np.abs(global_rgb.astype(int) - GOAL_COLOUR) < 50, axis=-1)
    if red.sum() < 2:
        return None
    rows, cols = np.nonzero(red)
    height, width = red.shape
    focal = 0.5 * width / np.tan(np.radians(GLOBAL_CAMERA.fov_deg) / 2)
    ray = GLOBAL_CAMERA.rotation @ np.array(
        [(cols.mean() + 0.5 - width / 2) / focal, (rows.mean() + 0.5 - height / 2) / focal, 1.0]
    )
    return GLOBAL_CAMERA.position + ray * (-GLOBAL_CAMERA.position[2] / ray[2])


class VisionReacher:
    """Reaches the red target using only the global image and the joint state."""

    def __init__(self, max_step: np.ndarray):
        self.max_step = max_step
        self.goal_joints: np.ndarray | None = None

    def act(self, global_rgb: np.ndarray, joints: np.ndarray) -> np.ndarray:
        if self.goal_joints is None:
            target = locate_goal(global_rgb)
            if target is None:
                return joints
            arm = "left" if target[0] < 0 else "right"
            self.goal_joints = joints.copy()
            self.goal_joints[arm_slice(arm)] = reach_ik(target + [0, 0, 0.015], arm, ArmGeometry())
            self.goal_joints[gripper_index(arm)] = 0.08
        delta = self.goal_joints - joints
        return joints + delta / max(1.0, float(np.max(np.abs(delta) / (0.9 * self.max_step))))


def test_vision_reacher_solves_the_task_in_process():
    env = DualArmReachEnv(SimConfig(image_size=(64, 64)))
    successes = 0
    for seed in range(6):
        obs, _ = env.reset(seed)
        reacher = VisionReacher(env.config.max_step())
        while True:
            obs, _, terminated, truncated, info = env.step(
                reacher.act(obs["global"], obs["joint"].astype(float))
            )
            if terminated or truncated:
                break
        successes += info["success"]
    assert successes == 6


def test_sim_node_publishes_the_robot_topics(ros_context):
    sim = SimNode(
        context=ros_context,
        parameter_overrides=[
            Parameter("rate_hz", value=50.0),
            Parameter("image_size", value=[24, 32]),
            Parameter("max_steps", value=5),
            Parameter("seed", value=11),
        ],
    )
    probe = rclpy.create_node("sim_probe", context=ros_context)
    images: dict[str, Image] = {}
    joint_states: list[JointState] = []
    rewards: list[float] = []
    results: list[dict] = []
    for camera in ("left", "right", "global"):
        probe.create_subscription(
            Image, f"{camera}/image_raw", lambda msg, c=camera: images.setdefault(c, msg), 10
        )
    probe.create_subscription(JointState, "joint_states", joint_states.append, 10)
    probe.create_subscription(Float64, "reward", lambda msg: rewards.append(msg.data), 10)
    probe.create_subscription(
        String, "sim_node/episode_result", lambda msg: results.append(json.loads(msg.data)), 10
    )
    reset = probe.create_client(Trigger, "sim_node/reset")
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    executor.add_node(probe)
    try:
        spin_until(
            executor,
            lambda: len(results) >= 2 and len(images) == 3,
            20.0,
            "two 5-step episodes and all camera topics",
        )
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
    assert len(joint_states[0].position) == 16
    # holding still: every episode times out after max_steps with zero reward
    assert [r["steps"] for r in results[:2]] == [5, 5]
    assert [r["seed"] for r in results[:2]] == [11, 12]
    assert not any(r["success"] for r in results) and np.allclose(rewards, 0.0)


def test_sim_node_rejects_bad_parameters(ros_context):
    with pytest.raises(ValueError, match="image_size"):
        SimNode(context=ros_context, parameter_overrides=[Parameter("image_size", value=[64])])


def test_closed_loop_over_dds_with_the_sim_in_another_process(ros_context):
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lapo_ros.sim.node",
            "--ros-args",
            "-p",
            "rate_hz:=20.0",
            "-p",
            "seed:=5",
            "-p",
            "auto_reset:=true",
            "-p",
            "max_steps:=80",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    node = rclpy.create_node("vision_controller", context=ros_context)
    latest: dict[str, object] = {}
    results: list[dict] = []
    commands = node.create_publisher(Float64MultiArray, "commands", 10)
    reacher = VisionReacher(SimConfig().max_step())

    def on_joints(msg: JointState) -> None:
        if "global" not in latest:
            return
        joints = np.array([dict(zip(msg.name, msg.position, strict=True))[n] for n in JOINT_NAMES])
        commands.publish(Float64MultiArray(data=reacher.act(latest["global"], joints).tolist()))

    def on_result(msg: String) -> None:
        results.append(json.loads(msg.data))
        reacher.goal_joints = None  # next episode: look again

    node.create_subscription(
        Image,
        "global/image_raw",
        lambda msg: latest.__setitem__("global", image_msg_to_rgb(msg)),
        10,
    )
    node.create_subscription(JointState, "joint_states", on_joints, 10)
    node.create_subscription(String, "sim_node/episode_result", on_result, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        spin_until(executor, lambda: len(results) >= 3, 60.0, "three closed-loop episodes")
    finally:
        child.terminate()
        child.wait(timeout=10)
        executor.shutdown()
        node.destroy_node()
    # the first episode may start before discovery completes; later ones are fully closed-loop
    finished = results[1:3]
    assert all(r["success"] for r in finished), results
    assert all(r["steps"] < 60 for r in finished), results
