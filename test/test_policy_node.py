"""policy_node over real rclpy on loopback, with policy files exported by the project."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from oversize_images import black_png
from rcl_interfaces.msg import Log
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from synthetic_policy import (
    export_affine_policy,
    make_metadata,
    metadata_with,
    replace_metadata,
    write_onnx_policy,
)
from trajectory_msgs.msg import JointTrajectory

from lapo_ros.common.policy_file import PolicyMetadata
from lapo_ros.robot.chunk_execution import ChunkExecution
from lapo_ros.robot.node import (
    DIAGNOSTICS,
    LoopCounts,
    PolicyNode,
    describe_chunk_execution,
    loop_health,
)
from lapo_ros.robot.parameters import ParameterError
from lapo_ros.robot.runtime import PolicyRuntimeError

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


def compressed_msg(stamp, data: bytes, fmt: str = "png") -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp = stamp
    return msg


SMALL_PNG = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()


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
        self.status_times: list[float] = []
        self.diagnostics: list[tuple[float, DiagnosticArray]] = []
        self.errors: list[str] = []
        trajectory = overrides.get("command_type") == "joint_trajectory"
        command_type = JointTrajectory if trajectory else Float64MultiArray
        self.node.create_subscription(command_type, "commands", self._on_command, 10)
        self.node.create_subscription(DiagnosticArray, "policy_node/status", self._on_status, 50)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS, self._on_diagnostics, 10)
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

    def _on_status(self, msg: DiagnosticArray) -> None:
        self.status_times.append(time.monotonic())
        self.statuses.append(msg)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics.append((time.monotonic(), msg))

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

    def status_reasons(self) -> set[str]:
        return {s.status[0].message for s in self.statuses}

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


@pytest.mark.parametrize("trigger", ["timer", "inputs"])
def test_one_new_set_of_inputs_gives_one_command_with_the_inputs_trigger(
        robot_factory, policy_path, trigger):
    """The timer runs the policy every tick on the newest inputs, however old (within
    max_sensor_age); the inputs trigger runs it once per new complete set."""
    robot = robot_factory(policy_path, enabled=True, trigger=trigger, max_sensor_age=2.0,
                          max_sensor_skew=2.0)
    assert wait_for(lambda: len(robot.statuses) >= 1, 5.0)  # the node is up
    robot.publish_once()
    assert wait_for(lambda: len(robot.commands) >= 1, 2.0)
    time.sleep(10 / RATE_HZ)
    if trigger == "timer":
        assert len(robot.commands) >= 5
        return
    assert len(robot.commands) == 1
    assert robot.statuses[-1].status[0].message == "skipped: waiting_for_new_inputs"
    assert robot.status_values()["trigger"] == "inputs"
    robot.silent.add("left")  # three of four inputs new: still no command
    robot.publish_once()
    time.sleep(4 / RATE_HZ)
    assert len(robot.commands) == 1
    robot.silent.clear()
    robot.publish_once()
    assert wait_for(lambda: len(robot.commands) == 2, 2.0)


def test_the_inputs_trigger_is_capped_at_rate_hz(robot_factory, policy_path):
    robot = robot_factory(policy_path, enabled=True, trigger="inputs")
    robot.start_feeding(rate_hz=3 * RATE_HZ)  # complete sets three times per period
    assert wait_for(lambda: len(robot.commands) >= 2, 5.0)
    first = len(robot.commands)
    time.sleep(1.0)
    rate = len(robot.commands) - first
    assert 0.5 * RATE_HZ <= rate <= 1.1 * RATE_HZ, rate
    gaps = np.diff([t for t, _ in robot.commands[first:]])
    assert np.median(gaps) >= 0.8 / RATE_HZ


def test_missing_inputs_never_give_commands(robot_factory, policy_path):
    robot = robot_factory(policy_path, enabled=True)
    robot.silent.add("joint_states")
    robot.start_feeding()
    assert wait_for(lambda: len(robot.statuses) >= 5, 5.0)
    assert robot.commands == []
    assert sum(robot.policy.skip_counts.values()) >= 5
    assert robot.policy.skip_counts["missing_joint_states"] >= 1
    assert robot.statuses[-1].status[0].message == "skipped: missing_joint_states"


def status_of(array: DiagnosticArray) -> tuple[bytes, str, dict[str, str]]:
    (status,) = array.status
    return status.level, status.message, {kv.key: kv.value for kv in status.values}


def test_diagnostics_sum_up_each_second_for_the_operator(robot_factory, policy_path):
    robot = robot_factory(policy_path)
    robot.start_feeding()
    # start-up ticks may miss inputs; then a healthy, disabled node reports OK
    assert wait_for(lambda: robot.diagnostics and status_of(robot.diagnostics[-1][1])[0]
                    == DiagnosticStatus.OK, 5.0)
    reported = len(robot.diagnostics)
    statuses = len(robot.statuses)
    assert wait_for(lambda: len(robot.diagnostics) >= reported + 2, 3.0)
    times = [t for t, _ in robot.diagnostics[reported - 1 :]]
    assert all(0.7 < gap < 1.3 for gap in np.diff(times)), times  # about 1 Hz
    per_second = (len(robot.statuses) - statuses) / (times[-1] - times[0] + 1.0)
    assert per_second > 0.6 * RATE_HZ  # ~/status still every tick
    (status,) = robot.diagnostics[-1][1].status
    assert status.name == "/policy_node: control loop"
    assert "CPUExecutionProvider" in status.hardware_id  # what runs the policy
    level, message, values = status_of(robot.diagnostics[-1][1])
    assert (level, message) == (DiagnosticStatus.OK, "disabled: computing, not publishing")
    assert 0.6 * RATE_HZ <= int(values["ticks"]) <= 1.4 * RATE_HZ
    assert values["computed"] == values["ticks"] and values["published"] == "0"
    assert values["model_path"] == str(policy_path) and values["enabled"] == "false"

    robot.silent.add("joint_states")  # no command can be made: ERROR
    assert wait_for(lambda: status_of(robot.diagnostics[-1][1])[0] == DiagnosticStatus.ERROR, 4.0)
    level, message, values = status_of(robot.diagnostics[-1][1])
    assert message.startswith("no command in the last") and "stale_joint_states=" in message
    assert int(values["skipped.stale_joint_states"]) == int(values["ticks"])


def test_diagnostics_reach_the_absolute_topic_from_a_namespace(ros_context, policy_path):
    node = PolicyNode(
        context=ros_context, namespace="arm", parameter_overrides=parameters(policy_path)
    )
    listener = rclpy.create_node("aggregator", context=ros_context)
    received: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + 5.0
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        listener.destroy_node()
    assert received, "nothing on /diagnostics"
    level, message, _ = status_of(received[0])
    assert received[0].status[0].name == "/arm/policy_node: control loop"
    assert level == DiagnosticStatus.ERROR and "missing_left" in message  # no inputs at all


@pytest.mark.parametrize(
    ("counts", "enabled", "level", "message"),
    [
        (LoopCounts(30, 30, 30), True, DiagnosticStatus.OK, "publishing commands"),
        (LoopCounts(30, 30, 0), False, DiagnosticStatus.OK, "disabled: computing, not publishing"),
        (
            LoopCounts(30, 20, 20, Counter(stale_left=8, skew=2)),
            True,
            DiagnosticStatus.WARN,
            "publishing commands; skipped 10 of 30: stale_left=8, skew=2",
        ),
        (
            LoopCounts(30, 0, 0, Counter(missing_joint_states=30)),
            True,
            DiagnosticStatus.ERROR,
            "no command in the last 30 ticks: missing_joint_states=30",
        ),
        (LoopCounts(), True, DiagnosticStatus.WARN, "no control tick since the last report"),
    ],
)
def test_loop_health_levels(counts, enabled, level, message):
    assert loop_health(counts, enabled) == (level, message)


def test_loop_counts_window():
    earlier = LoopCounts(10, 8, 8, Counter(stale_left=2))
    now = LoopCounts(40, 30, 30, Counter(stale_left=5, skew=5))
    assert now.since(earlier) == LoopCounts(30, 22, 22, Counter(stale_left=3, skew=5))
    copy = now.copy()
    now.skipped["skew"] += 1
    assert copy.skipped["skew"] == 5


@pytest.mark.parametrize(
    ("fault", "reason", "logged"),
    [
        ("encoding", "bad_right_image", "unsupported encoding '16UC1'"),
        ("size", "bad_right_image", "expected step*height"),
        ("joint_names", "bad_joint_states", "lacks joint(s) ['joint_2']"),
        ("joint_size", "bad_joint_states", "4 positions for 5 names"),
        ("duplicate_joint", "bad_joint_states", "['joint_0'] occur more than once"),
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
    elif fault == "duplicate_joint":

        def repeated(stamp, positions):
            # a second joint_0, 6 max_step away from the first: no telling which is real
            msg = joint_msg(stamp, positions)
            msg.name.append("joint_0")
            msg.position.append(6 * MAX_STEP)
            return msg

        robot.joint_factory = repeated
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


@pytest.fixture(scope="module")
def png_bomb() -> bytes:
    """137 KiB of PNG that decodes to 12000x12000 (432 MB as BGR, seconds of CPU)."""
    return black_png(12000, 12000)


def max_status_gap(robot: Robot, seconds: float) -> float:
    """The longest pause between ``~/status`` messages over the next ``seconds``."""
    first = len(robot.status_times)
    time.sleep(seconds)
    times = robot.status_times[max(0, first - 1) :]
    assert len(times) >= 0.5 * seconds * RATE_HZ, times
    return float(np.diff(times).max())


@pytest.mark.parametrize("transport", ["raw", "compressed"])
def test_oversize_frames_are_refused_unread_and_status_keeps_coming(
    robot_factory, policy_path, png_bomb, transport
):
    if transport == "raw":  # 48x64 frames, a limit one pixel short
        robot = robot_factory(policy_path, enabled=True, max_image_pixels=48 * 64 - 1)
        robot.image_factory = lambda camera, stamp: image_msg(
            stamp, height=48 if camera == "left" else 32, width=64 if camera == "left" else 32
        )
        good_factory = lambda camera, stamp: image_msg(stamp, height=32, width=32)  # noqa: E731
    else:  # the default limit against a PNG bomb on the left camera
        robot = robot_factory(policy_path, enabled=True, image_transport="compressed")
        robot.image_factory = lambda camera, stamp: compressed_msg(
            stamp, png_bomb if camera == "left" else SMALL_PNG
        )
        good_factory = lambda camera, stamp: compressed_msg(stamp, SMALL_PNG)  # noqa: E731
    robot.start_feeding()
    assert wait_for(lambda: robot.policy.skip_counts.get("oversize_left_image", 0) >= 5, 10.0)
    assert max_status_gap(robot, 1.0) < 0.3
    assert robot.statuses[-1].status[0].message == "skipped: oversize_left_image"
    assert robot.commands == []
    size = "64x48 image has 3072" if transport == "raw" else "12000x12000 image has 144000000"
    assert wait_for(
        lambda: any(size in e and "max_image_pixels" in e for e in robot.errors), 3.0
    ), robot.errors
    robot.image_factory = good_factory
    assert wait_for(lambda: len(robot.commands) >= 2, 5.0)


def test_a_slow_frame_does_not_hold_up_the_control_loop(robot_factory, policy_path):
    """A 25 MP PNG (allowed here) takes about half a second to decode, over and over."""
    large = black_png(5000, 5000)
    robot = robot_factory(
        policy_path, enabled=True, image_transport="compressed", max_image_pixels=25_000_000
    )
    robot.image_factory = lambda camera, stamp: compressed_msg(
        stamp, large if camera == "left" else SMALL_PNG
    )
    robot.start_feeding()
    # a decoded large frame reaches the tick: as a command when it lands within
    # max_sensor_age, as a stale skip otherwise (which one depends on the CPU's speed)
    assert wait_for(
        lambda: robot.commands or robot.policy.skip_counts.get("stale_left", 0) >= 1, 10.0
    )
    assert max_status_gap(robot, 1.5) < 0.3  # one tick every 50 ms meanwhile


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
        ({"max_image_pixels": 0}, ParameterError, "'max_image_pixels' must be > 0"),
    ],
)
def test_refuses_to_start_on_bad_parameters(ros_context, policy_path, overrides, error, message):
    with pytest.raises(error, match=message):
        PolicyNode(context=ros_context, parameter_overrides=parameters(policy_path, **overrides))


def test_refuses_a_model_without_metadata(ros_context, tmp_path):
    bare = write_onnx_policy(tmp_path / "bare.onnx", make_metadata(), with_metadata=False)
    with pytest.raises(PolicyRuntimeError, match="no 'lapo_ros' metadata"):
        PolicyNode(context=ros_context, parameter_overrides=parameters(bare))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"joint_names": ["joint_0", "joint_1", "joint_2", "joint_0"]}, "metadata joint_names"),
        ({"action_names": ["joint_0", "joint_1", "joint_1", "joint_3"]}, "metadata action_names"),
    ],
)
def test_refuses_policy_metadata_with_repeated_joint_names(
    ros_context, tmp_path, changes, message
):
    metadata = make_metadata(4, 4, (32, 32))
    path = replace_metadata(
        write_onnx_policy(tmp_path / "p.onnx", metadata), metadata_with(metadata, **changes)
    )
    with pytest.raises(PolicyRuntimeError, match=f"p.onnx: {message}: .* occur more than once"):
        PolicyNode(context=ros_context, parameter_overrides=parameters(path))


def run_main(*arguments: str) -> subprocess.CompletedProcess:
    root = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [sys.executable, "-m", "lapo_ros.robot.node", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root},
    )


def test_main_exits_1_with_a_clear_error(tmp_path):
    result = run_main("--ros-args", "-p", "rate_hz:=30.0")
    assert result.returncode == 1
    assert "cannot start: parameter 'model_path' is required" in result.stderr


@pytest.mark.parametrize(
    ("graph", "changes", "message"),
    [
        # the graph outputs 14 actions, the metadata claims 16
        (
            PolicyMetadata([f"j{i}" for i in range(16)], [32, 32], 14, 16),
            {"action_dim": 16, "action_names": [f"j{i}" for i in range(16)]},
            r"graph 'action' is tensor\(float\) \['B', 14\], but the metadata's action_dim 16",
        ),
        (make_metadata(4, 4), {"joint_names": "joint_0"}, "metadata joint_names must be a list"),
        (
            make_metadata(4, 4),
            {"joint_names": ["joint_0", "joint_1", "joint_2", "joint_0"]},
            r"metadata joint_names: joint name\(s\) \['joint_0'\] occur more than once",
        ),
    ],
)
def test_main_refuses_a_bad_policy_file_in_one_line(tmp_path, graph, changes, message):
    path = replace_metadata(
        write_onnx_policy(tmp_path / "bad.onnx", graph), metadata_with(graph, **changes)
    )
    result = run_main(*ros_arguments(path))
    assert result.returncode == 1, result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "cannot start" in line]
    assert re.search(f"cannot start: {re.escape(str(path))}: {message}", line), line


def ros_arguments(policy_path) -> list[str]:
    """``--ros-args -p name:=value ...`` for the node's parameters."""
    arguments = ["--ros-args"]
    for parameter in parameters(policy_path):
        value = parameter.value
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        arguments += ["-p", f"{parameter.name}:={text}"]
    return arguments


@pytest.fixture
def signal_handlers_kept():
    """``main`` takes over SIGINT/SIGTERM for the whole process: give them back to pytest."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("shut_down", [True, False])
def test_main_treats_a_failure_after_ctrl_c_at_start_up_as_a_clean_stop(
        policy_path, monkeypatch, signal_handlers_kept, shut_down):
    import lapo_ros.robot.node as policy_node

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


def start_node_process(policy_path) -> subprocess.Popen:
    """``python -m lapo_ros.robot.node`` on ``policy_path``, returned once it spins."""
    root = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, "-m", "lapo_ros.robot.node", *ros_arguments(policy_path)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "disabled (computing" not in "".join(lines):
        lines.append(process.stdout.readline())
    if "disabled (computing" not in "".join(lines):
        process.kill()
        raise AssertionError("".join(lines) + process.communicate()[0])
    return process


SIGINT, SIGTERM = signal.SIGINT, signal.SIGTERM


def test_main_stops_cleanly_however_many_signals_come(policy_path):
    """A second signal during shutdown (ros2 launch forwards one, supervisors escalate) is a
    race with the cleanup: each case runs the node anew, signals sent right after start-up
    or while it spins, a few milliseconds apart."""
    cases = [
        # (wait before the first signal [s], signals, gap between them [s])
        (0.3, [SIGINT], 0.0),
        (0.3, [SIGTERM], 0.0),
        (0.0, [SIGINT, SIGINT], 0.0),
        (0.0, [SIGINT, SIGINT], 0.003),
        (0.3, [SIGINT, SIGINT], 0.0),
        (0.3, [SIGINT, SIGINT], 0.003),
        (0.3, [SIGINT, SIGINT], 0.02),
        (0.3, [SIGINT, SIGTERM, SIGINT], 0.005),
    ]
    for pause, signals, gap in cases:
        process = start_node_process(policy_path)
        try:
            time.sleep(pause)
            for signum in signals:
                process.send_signal(signum)
                time.sleep(gap)
            output = process.communicate(timeout=15)[0]
        finally:
            process.kill()
            process.wait()
        names = [signum.name for signum in signals]
        case = f"{names} after {pause} s, {gap} s apart: exit code {process.returncode}"
        assert process.returncode == 0, f"{case}\n{output}"
        for noise in ("Traceback", "KeyboardInterrupt", "Exception ignored"):
            assert noise not in output, f"{case}\n{output}"


# -- action chunks (chunk_size > 1) --------------------------------------------------------

CHUNK = 6
# row i = joint + CHUNK_OFFSET * (i + 1); the arm stays at 0: joint_0's command tells the row
# (0.005 ... 0.03, under max_step), joint_1's is clamped to max_step from row 2 on
CHUNK_OFFSET = np.array([0.005, 0.02, 0.0, 0.0], np.float32)


@pytest.fixture(scope="module")
def chunk_policy_path(tmp_path_factory):
    """A 4-joint affine chunk policy (chunks of CHUNK rows) on 32x32 images, in ONNX."""
    path = tmp_path_factory.mktemp("chunk_policy") / "chunks.onnx"
    return write_onnx_policy(path, make_metadata(4, 4, (32, 32), chunk_size=CHUNK), CHUNK_OFFSET)


def ticks(robot: Robot) -> list[tuple[str, dict[str, str]]]:
    """(outcome, status values) of every tick heard on ~/status."""
    return [
        (array.status[0].message, {kv.key: kv.value for kv in array.status[0].values})
        for array in list(robot.statuses)
    ]


def check_chunk_ticks(robot: Robot, mode: str, replan_every: int = CHUNK) -> list[int]:
    """Every tick's chunk_index follows ``mode``, from a fresh chunk after each skipped tick
    (and each enable/disable); returns the chunk_index of the ticks that gave a command."""
    records = ticks(robot)
    first_skip = next(i for i, (outcome, _) in enumerate(records) if outcome.startswith("skip"))
    previous: tuple[str, int] | None = None  # outcome and chunk_index of the tick before
    indices = []
    for outcome, values in records[first_skip:]:
        assert values["chunk_execution"] == mode and values["chunk_size"] == str(CHUNK)
        index, ran = int(values["chunk_index"]), values["policy_ran"] == "true"
        assert ran == (values["inference_ms"] != "nan")
        if outcome.startswith("skipped"):
            assert index == (-1 if mode == "open_loop" else 0), (outcome, values)
            previous = None
            continue
        fresh = previous is None or previous[0] != outcome  # skip, or enabled/disabled
        if mode == "open_loop":
            expected = 0 if fresh else (previous[1] + 1) % replan_every
            assert ran == (index == 0), values
        else:
            expected = 1 if fresh else min(previous[1] + 1, CHUNK)
            assert ran, values
        assert index == expected, (outcome, values, previous)
        previous = (outcome, index)
        indices.append(index)
    return indices


def published_with_index(robot: Robot) -> list[tuple[np.ndarray, int]]:
    """Each published command with the chunk_index its tick reported."""
    published = [int(v["chunk_index"]) for outcome, v in ticks(robot) if outcome == "published"]
    commands = [positions(msg) for _, msg in list(robot.commands)]
    assert abs(len(published) - len(commands)) <= 1  # the last one may be in flight
    return list(zip(commands, published, strict=False))


def ensemble_rows(count: int, decay: float) -> np.ndarray:
    """ACT's average of ``count`` overlapping chunks at a steady observation (joint 0):
    the j-th oldest prediction gives its row count - 1 - j, weighted exp(-decay * j)."""
    weights = np.exp(-decay * np.arange(count))
    weights /= weights.sum()
    rows = CHUNK_OFFSET[None] * (count - np.arange(count))[:, None]  # row r: offset * (r + 1)
    return weights @ rows


def test_open_loop_plays_chunk_rows_in_order_within_max_step(robot_factory, chunk_policy_path):
    robot = robot_factory(chunk_policy_path, chunk_execution="open_loop", chunk_replan_every=4)
    assert wait_for(lambda: len(robot.statuses) >= 2, 5.0)  # ticks without inputs yet
    robot.start_feeding()
    assert wait_for(lambda: robot.status_values().get("chunk_index") == "1", 5.0)
    assert robot.commands == []  # disabled: the chunks play without commands
    robot.set_enabled(True)  # mid-chunk
    assert wait_for(lambda: len(robot.commands) >= 10, 5.0)
    indices = check_chunk_ticks(robot, "open_loop", replan_every=4)
    assert set(indices) == {0, 1, 2, 3}  # rows 4 and 5 are never played: replanned first
    commanded = published_with_index(robot)
    assert commanded[0][1] == 0  # enabling starts a new chunk
    for command, row in commanded:
        wanted = np.minimum(CHUNK_OFFSET * (row + 1), MAX_STEP)  # max_step from the arm at 0
        np.testing.assert_allclose(command, wanted, atol=1e-6)
    assert np.max(np.abs([command for command, _ in commanded])) == pytest.approx(MAX_STEP)
    assert robot.status_values()["chunk_execution"] == "open_loop"


def test_temporal_ensemble_publishes_acts_average(robot_factory, chunk_policy_path):
    decay = 0.5
    robot = robot_factory(chunk_policy_path, enabled=True, ensemble_decay=decay)
    assert wait_for(lambda: len(robot.statuses) >= 2, 5.0)
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= CHUNK + 4, 5.0)
    indices = check_chunk_ticks(robot, "temporal_ensemble")
    assert CHUNK in indices  # steady state: CHUNK predictions averaged
    commanded = published_with_index(robot)
    assert commanded[0][1] == 1
    for command, count in commanded:
        wanted = np.minimum(ensemble_rows(count, decay), MAX_STEP)
        np.testing.assert_allclose(command, wanted, atol=1e-6)
    status = robot.status_values()
    assert status["chunk_execution"] == "temporal_ensemble" and status["policy_ran"] == "true"
    assert float(status["inference_ms"]) > 0


@pytest.mark.parametrize("mode", ["open_loop", "temporal_ensemble"])
def test_a_stale_input_stops_the_chunk_at_once(robot_factory, chunk_policy_path, mode):
    max_age = 0.1
    robot = robot_factory(
        chunk_policy_path, enabled=True, chunk_execution=mode, max_sensor_age=max_age
    )
    assert wait_for(lambda: len(robot.statuses) >= 2, 5.0)
    robot.start_feeding()
    assert wait_for(lambda: len(robot.commands) >= 3, 5.0)
    robot.silent.add("left")
    went_stale = time.monotonic() + max_age
    time.sleep(max_age + 0.3)
    assert [t for t, _ in robot.commands if t > went_stale + 2.0 / RATE_HZ] == []
    assert robot.statuses[-1].status[0].message == "skipped: stale_left"
    robot.silent.clear()
    resumed = len(robot.commands)
    assert wait_for(lambda: len(robot.commands) >= resumed + 3, 2.0)
    check_chunk_ticks(robot, mode)  # each skip dropped the chunk; the next tick began anew
    (first, _), *_ = published_with_index(robot)[resumed:]
    start = CHUNK_OFFSET if mode == "open_loop" else ensemble_rows(1, 0.01)
    np.testing.assert_allclose(first, np.minimum(start, MAX_STEP), atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"chunk_replan_every": CHUNK + 1, "chunk_execution": "open_loop"},
         rf"'chunk_replan_every' is 7, more than the chunk_size {CHUNK} of .*chunks\.onnx"),
        ({"chunk_replan_every": 3},
         "'chunk_replan_every' is 3, but it applies to chunk_execution open_loop"),
        ({"trigger": "inputs"},
         rf"'trigger' is 'inputs', but .*chunks\.onnx has chunk_size {CHUNK}"),
        ({"chunk_execution": "ensemble"}, r"'chunk_execution' is 'ensemble'; use one of"),
        ({"chunk_replan_every": -1}, "'chunk_replan_every' must be >= 0"),
        ({"ensemble_decay": -0.5}, "'ensemble_decay' must be a finite number >= 0, got -0.5"),
    ],
)
def test_refuses_chunk_settings_that_do_not_fit(
    ros_context, chunk_policy_path, overrides, message
):
    with pytest.raises(ParameterError, match=message):
        PolicyNode(
            context=ros_context, parameter_overrides=parameters(chunk_policy_path, **overrides)
        )


def test_one_action_policy_refuses_replanning_and_reports_chunk_size_1(ros_context, policy_path):
    overrides = parameters(policy_path, chunk_execution="open_loop", chunk_replan_every=2)
    with pytest.raises(ParameterError, match=r"'chunk_replan_every' is 2, more than the "
                                             r"chunk_size 1 of .*affine\.onnx"):
        PolicyNode(context=ros_context, parameter_overrides=overrides)


@pytest.mark.parametrize(
    ("execution", "line"),
    [
        (ChunkExecution("open_loop", 1), "one action per policy pass, every tick (chunk_size 1)"),
        (ChunkExecution("open_loop", 8, 3),
         "open_loop over chunks of 8: the policy runs every 3 ticks"),
        (ChunkExecution("open_loop", 8),
         "open_loop over chunks of 8: the policy runs every 8 ticks"),
        (ChunkExecution("temporal_ensemble", 8),
         "temporal_ensemble over chunks of 8: the policy runs every tick, ensemble_decay 0.01"),
    ],
)
def test_start_up_log_says_how_chunks_are_played(execution, line):
    assert describe_chunk_execution(execution) == line
