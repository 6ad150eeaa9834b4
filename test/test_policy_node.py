"""policy_node over real rclpy on loopback, with policy files exported by the project."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from synthetic_policy import export_affine_policy, make_metadata, write_onnx_policy
from trajectory_msgs.msg import JointTrajectory

from lapo_ros.node_parameters import ParameterError
from lapo_ros.policy_node import PolicyNode
from lapo_ros.policy_runtime import PolicyRuntimeError

RATE_HZ = 20.0
JOINTS = ["joint_0", "joint_1", "joint_2", "joint_3"]
OFFSET = np.array([1.0, -1.0, 0.01, 0.0], np.float32)  # big moves on joints 0 and 1
LOWER = [-0.5, -0.5, -0.5, -0.5]
UPPER = [0.5, 0.5, 0.5, 0.04]
MAX_STEP = 0.05


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    """A 4-joint affine policy on 32x32 images, exported to ONNX by lapo_ros.lapo.export."""
    path = tmp_path_factory.mktemp("policy") / "affine.onnx"
    return export_affine_policy(path, make_metadata(4, 4, (32, 32)), OFFSET)


def parameters(policy_path, **overrides) -> list[Parameter]:
    values = {
        "model_path": str(policy_path),
        "rate_hz": RATE_HZ,
        "joint_lower_limits": LOWER,
        "joint_upper_limits": UPPER,
        "max_step": [MAX_STEP],
        "max_sensor_age": 0.2,
        "max_sensor_skew": 0.2,
        "warmup_iterations": 1,
        "skip_log_period": 0.5,
    }
    values.update(overrides)
    return [Parameter(name, value=value) for name, value in values.items()]


def image_msg(stamp, encoding="rgb8", height=48, width=64, value=120, padding=0) -> Image:
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "16UC1": 2}[encoding]
    step = width * channels + padding
    msg = Image(encoding=encoding, height=height, width=width, step=step)
    msg.header.stamp = stamp
    msg.data = bytes(np.full(step * height, value, np.uint8))
    return msg


def joint_msg(stamp, positions: dict[str, float]) -> JointState:
    msg = JointState(name=list(positions), position=[float(v) for v in positions.values()])
    msg.header.stamp = stamp
    return msg


class Robot:
    """A fake robot on loopback: publishes cameras and joint states, records the node's output."""

    def __init__(self, context, policy_file, **overrides):
        self.policy = PolicyNode(
            context=context, parameter_overrides=parameters(policy_file, **overrides)
        )
        compressed = overrides.get("image_transport") == "compressed"
        self.node = rclpy.create_node("fake_robot", context=context)
        suffix = "/image_raw/compressed" if compressed else "/image_raw"
        self.cameras = {
            camera: self.node.create_publisher(
                CompressedImage if compressed else Image, camera + suffix, qos_profile_sensor_data
            )
            for camera in ("left", "right", "global")
        }
        self.joints = self.node.create_publisher(
            JointState, "joint_states", qos_profile_sensor_data
        )
        self.commands: list[tuple[float, object]] = []
        self.statuses: list[DiagnosticArray] = []
        self.errors: list[str] = []
        trajectory = overrides.get("command_type") == "joint_trajectory"
        command_type = JointTrajectory if trajectory else Float64MultiArray
        self.node.create_subscription(command_type, "commands", self._on_command, 10)
        self.node.create_subscription(
            DiagnosticArray, "policy_node/status", self.statuses.append, 50
        )
        self.node.create_subscription(Log, "/rosout", self._on_log, 100)
        self.enable_client = self.node.create_client(SetBool, "policy_node/enable")
        self.executor = SingleThreadedExecutor(context=context)  # as main()
        self.executor.add_node(self.policy)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.joint_positions = {"extra_joint": 7.0, **dict.fromkeys(reversed(JOINTS), 0.0)}
        self.image_factory: Callable = lambda camera, stamp: image_msg(stamp)
        self.joint_factory: Callable = joint_msg
        self.silent: set[str] = set()
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None

    def _on_command(self, msg) -> None:
        self.commands.append((time.monotonic(), msg))

    def _on_log(self, msg: Log) -> None:
        if msg.name.endswith("policy_node") and msg.level >= Log.ERROR:
            self.errors.append(msg.msg)

    def publish_once(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        for camera, publisher in self.cameras.items():
            if camera not in self.silent:
                publisher.publish(self.image_factory(camera, stamp))
        if "joint_states" not in self.silent:
            self.joints.publish(self.joint_factory(stamp, self.joint_positions))

    def start_feeding(self, rate_hz: float = 40.0) -> None:
        def feed():
            while not self._stop.wait(1.0 / rate_hz):
                self.publish_once()

        self._feeder = threading.Thread(target=feed, daemon=True)
        self._feeder.start()

    def set_enabled(self, enabled: bool) -> SetBool.Response:
        assert self.enable_client.wait_for_service(timeout_sec=5.0)
        future = self.enable_client.call_async(SetBool.Request(data=enabled))
        assert wait_for(future.done, 5.0)
        return future.result()

    def status_values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.statuses[-1].status[0].values}

    def close(self) -> None:
        self._stop.set()
        if self._feeder:
            self._feeder.join(timeout=2.0)
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=2.0)
        self.policy.destroy_node()
        self.node.destroy_node()


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def robot_factory(ros_context):
    robots: list[Robot] = []

    def make(policy_file, **kwargs) -> Robot:
        robots.append(Robot(ros_context, policy_file, **kwargs))
        return robots[-1]

    yield make
    for robot in robots:
        robot.close()


def positions(msg) -> np.ndarray:
    if isinstance(msg, JointTrajectory):
        return np.array(msg.points[0].positions)
    return np.array(msg.data)


def test_commands_at_rate_only_when_enabled(robot_factory, policy_path):
    robot = robot_factory(policy_path)
    robot.start_feeding()
    assert wait_for(lambda: len(robot.statuses) >= 5, 5.0)
    time.sleep(0.3)
    assert robot.commands == []
    assert robot.status_values()["enabled"] == "false"
    assert robot.statuses[-1].status[0].message == "computed, not enabled"

    response = robot.set_enabled(True)
    assert response.success and response.message == "enabled"
    assert robot.policy.get_parameter("enabled").value is True
    assert wait_for(lambda: len(robot.commands) >= 1, 2.0)
    first = len(robot.commands)
    time.sleep(1.0)
    rate = len(robot.commands) - first
    assert 0.6 * RATE_HZ <= rate <= 1.2 * RATE_HZ, rate
    status = robot.status_values()
    assert float(status["latency_ms"]) < 200 and float(status["inference_ms"]) > 0
    assert "onnxruntime" in status["runtime"]

    assert robot.set_enabled(False).message == "disabled"
    time.sleep(0.1)  # a command already in flight may still land
    stopped = len(robot.commands)
    time.sleep(0.4)
    assert len(robot.commands) == stopped


def test_commands_stay_in_limits_and_step_from_current_position(robot_factory, policy_path):
    robot = robot_factory(policy_path, enabled=True, command_type="joint_trajectory")
    # joint states carry an extra joint and a different order: matched by name
    robot.joint_positions.update({"joint_0": 0.2, "joint_1": -0.48, "joint_2": 0.1, "joint_3": 0.0})
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= 3, 5.0)
    msg = robot.commands[-1][1]
    assert msg.joint_names == JOINTS
    assert len(msg.points) == 1
    step = msg.points[0].time_from_start
    assert step.sec == 0 and step.nanosec == int(1e9 / RATE_HZ)
    # joint_0 wants +1.0: one max_step; joint_1 wants -1.0: stops at the lower limit;
    # joint_2 moves by its small offset; joint_3 is held under its upper limit 0.04
    np.testing.assert_allclose(positions(msg), [0.25, -0.5, 0.11, 0.0], atol=1e-6)
    for _, command in robot.commands:
        values = positions(command)
        assert np.all(values >= LOWER) and np.all(values <= UPPER)


def test_stale_inputs_stop_commands_within_two_ticks(robot_factory, policy_path):
    max_age = 0.1
    robot = robot_factory(policy_path, enabled=True, max_sensor_age=max_age)
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= 3, 5.0)
    robot.silent.add("left")
    went_stale = time.monotonic() + max_age
    time.sleep(max_age + 0.5)
    late = [t for t, _ in robot.commands if t > went_stale + 2.0 / RATE_HZ]
    assert late == []
    assert robot.statuses[-1].status[0].message == "skipped: stale_left"
    robot.silent.clear()
    count = len(robot.commands)
    assert wait_for(lambda: len(robot.commands) > count, 2.0)


def test_missing_inputs_never_give_commands(robot_factory, policy_path):
    robot = robot_factory(policy_path, enabled=True)
    robot.silent.add("joint_states")
    robot.start_feeding()
    assert wait_for(lambda: len(robot.statuses) >= 5, 5.0)
    assert robot.commands == []
    assert sum(robot.policy.skip_counts.values()) >= 5
    assert robot.policy.skip_counts["missing_joint_states"] >= 1
    assert robot.statuses[-1].status[0].message == "skipped: missing_joint_states"


@pytest.mark.parametrize(
    ("fault", "reason", "logged"),
    [
        ("encoding", "bad_right_image", "unsupported encoding '16UC1'"),
        ("size", "bad_right_image", "expected step*height"),
        ("joint_names", "bad_joint_states", "lacks joints ['joint_2']"),
        ("joint_size", "bad_joint_states", "4 positions for 5 names"),
        ("nan_joint", "nonfinite_joint_states", "not finite"),
    ],
)
def test_bad_input_is_logged_skipped_and_survived(
    robot_factory, policy_path, fault, reason, logged
):
    robot = robot_factory(policy_path, enabled=True)
    good_factory = robot.image_factory
    good_joints = dict(robot.joint_positions)
    if fault == "encoding":
        robot.image_factory = lambda camera, stamp: image_msg(
            stamp, encoding="16UC1" if camera == "right" else "rgb8"
        )
    elif fault == "size":

        def truncated(camera, stamp):
            msg = image_msg(stamp)
            if camera == "right":
                msg.data = msg.data[:100]
            return msg

        robot.image_factory = truncated
    elif fault == "joint_names":
        del robot.joint_positions["joint_2"]
    elif fault == "joint_size":

        def short(stamp, positions):
            msg = joint_msg(stamp, positions)
            msg.position = msg.position[:-1]
            return msg

        robot.joint_factory = short
    else:
        robot.joint_positions["joint_1"] = float("nan")
    robot.start_feeding()
    assert wait_for(lambda: robot.policy.skip_counts.get(reason, 0) >= 3, 5.0)
    assert robot.commands == []
    assert wait_for(lambda: any(logged in text for text in robot.errors), 3.0), robot.errors
    # the node keeps running: good input again -> commands again
    robot.image_factory = good_factory
    robot.joint_factory = joint_msg
    robot.joint_positions = good_joints
    assert wait_for(lambda: len(robot.commands) >= 2, 5.0)


def test_torchscript_policy_file(robot_factory, tmp_path):
    path = export_affine_policy(tmp_path / "affine.pt", make_metadata(4, 4, (32, 32)), OFFSET)
    robot = robot_factory(path, enabled=True, device="cpu")
    assert robot.policy.status_runtime == "torchscript [cpu]"
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= 2, 5.0)
    np.testing.assert_allclose(
        positions(robot.commands[-1][1]), [0.05, -0.05, 0.01, 0.0], atol=1e-6
    )


def test_compressed_transport(robot_factory, policy_path):
    robot = robot_factory(policy_path, enabled=True, image_transport="compressed")
    pixels = np.full((48, 64, 3), 90, np.uint8)

    def compressed(camera, stamp):
        ok, data = cv2.imencode(".png" if camera == "left" else ".jpg", pixels)
        msg = CompressedImage(format="png" if camera == "left" else "jpeg", data=data.tobytes())
        msg.header.stamp = stamp
        return msg

    robot.image_factory = compressed
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= 2, 5.0)


@pytest.mark.slow
def test_real_lapo_policy_runs_in_the_node(robot_factory, tmp_path):
    """A MultimodalLatent's greedy policy, exported to ONNX, drives the node."""
    from lapo_ros.lapo import DatasetStatistics, MultimodalLatent
    from lapo_ros.lapo.export import export_policy

    zeros, ones = np.zeros(4, np.float32), np.ones(4, np.float32)
    statistics = DatasetStatistics(zeros, ones, zeros, ones, -ones, ones, 0.0, 1.0, 10)
    agent = MultimodalLatent(action_dim=4, statistics=statistics, device="cpu", image_size=32)
    path = export_policy(
        agent.deployable_policy(), make_metadata(4, 4, (32, 32)), tmp_path / "p.onnx"
    )
    robot = robot_factory(path, enabled=True, max_step=[0.01])
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= 3, 10.0)
    for _, msg in robot.commands:
        assert np.all(np.abs(positions(msg)) <= 0.01 + 1e-12)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"joint_names": ["a", "b", "c", "d"]}, ParameterError, "'joint_names'.*differs"),
        ({"image_size": [64, 64]}, ParameterError, r"'image_size' \[64, 64\] differs"),
        ({"joint_lower_limits": [0.0]}, ParameterError, "'joint_lower_limits' has 1 values"),
        ({"model_path": ""}, ParameterError, "'model_path' is required"),
        ({"model_path": "/nonexistent/p.onnx"}, PolicyRuntimeError, "not found"),
        ({"backend": "tensorrt"}, ParameterError, "'backend' is 'tensorrt'"),
        ({"rate_hz": 0.0}, ParameterError, "'rate_hz' must be > 0"),
        ({"image_transport": "theora"}, ParameterError, "'image_transport'"),
        ({"joint_names": [1, 2, 3, 4]}, ParameterError, "'joint_names' must be a list of str"),
    ],
)
def test_refuses_to_start_on_bad_parameters(ros_context, policy_path, overrides, error, message):
    with pytest.raises(error, match=message):
        PolicyNode(context=ros_context, parameter_overrides=parameters(policy_path, **overrides))


def test_refuses_a_model_without_metadata(ros_context, tmp_path):
    bare = write_onnx_policy(tmp_path / "bare.onnx", make_metadata(), with_metadata=False)
    with pytest.raises(PolicyRuntimeError, match="no 'lapo_ros' metadata"):
        PolicyNode(context=ros_context, parameter_overrides=parameters(bare))


def test_main_exits_1_with_a_clear_error(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-m", "lapo_ros.policy_node", "--ros-args", "-p", "rate_hz:=30.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert result.returncode == 1
    assert "cannot start: parameter 'model_path' is required" in result.stderr


def ros_arguments(policy_path) -> list[str]:
    """``--ros-args -p name:=value ...`` for the node's parameters."""
    arguments = ["--ros-args"]
    for parameter in parameters(policy_path):
        value = parameter.value
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        arguments += ["-p", f"{parameter.name}:={text}"]
    return arguments


@pytest.mark.parametrize("shut_down", [True, False])
def test_main_treats_a_failure_after_ctrl_c_at_start_up_as_a_clean_stop(
        policy_path, monkeypatch, shut_down):
    import lapo_ros.policy_node as policy_node

    def executor_after_signal():
        if shut_down:  # what rclpy's SIGINT handler does while the node is being built
            rclpy.shutdown()
        raise RuntimeError("failed to create guard_condition: the given context is not valid")

    monkeypatch.setattr(policy_node, "SingleThreadedExecutor", executor_after_signal)
    if shut_down:
        policy_node.main(["policy_node", *ros_arguments(policy_path)])
    else:
        with pytest.raises(RuntimeError, match="guard_condition"):
            policy_node.main(["policy_node", *ros_arguments(policy_path)])
    assert not rclpy.ok()


def test_main_spins_and_stops_cleanly_on_ctrl_c(policy_path):
    root = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, "-m", "lapo_ros.policy_node", *ros_arguments(policy_path)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "disabled (computing" not in "".join(lines):
            lines.append(process.stdout.readline())
        assert "disabled (computing" in "".join(lines), lines
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=15)
        assert returncode == 0, "".join(lines) + process.stdout.read()
    finally:
        process.kill()
        process.wait()
