"""``policy_node``: three cameras + joint states in, safe joint commands out.

Subscriptions convert each message as it arrives (decode + resize to the model's image
size, joints picked by name) into a ``SensorCache``; a timer at ``rate_hz`` takes the
newest inputs, checks their age and skew, runs the policy, makes the command safe and
publishes it only when enabled. Every tick is reported on ``~/status``.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lapo_ros.command_safety import CommandLimits, UnsafeCommand, safe_command
from lapo_ros.image_preprocessing import (
    CAMERA_ORDER,
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    resize_rgb,
    stack_cameras,
)
from lapo_ros.node_parameters import ParameterError, declare_parameters, resolve_against_metadata
from lapo_ros.policy_runtime import PolicyRuntimeError, load_policy
from lapo_ros.sensor_cache import InputNotReady, SensorCache, Snapshot

JOINT_STATES = "joint_states"
COMMANDS = "commands"
STATUS = "~/status"
ENABLE = "~/enable"
_ERROR_LOG_PERIOD_S = 2.0


def camera_topic(camera: str, image_transport: str) -> str:
    """Relative topic of one camera: ``left/image_raw`` or ``left/image_raw/compressed``."""
    topic = f"{camera}/image_raw"
    return f"{topic}/compressed" if image_transport == "compressed" else topic


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in nanoseconds."""
    stamp = msg.header.stamp
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class PolicyNode(Node):
    """The policy node; refuses to start (``ParameterError``/``PolicyRuntimeError``)."""

    def __init__(self, node_name: str = "policy_node", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        try:
            self._configure()
        except Exception:
            self.destroy_node()
            raise

    def _configure(self) -> None:
        parameters = declare_parameters(self)
        self._runtime = load_policy(parameters.model_path, parameters.backend, parameters.device)
        metadata = self._runtime.metadata
        self._settings = parameters = resolve_against_metadata(parameters, metadata)
        self._command_names = list(metadata.command_names)
        try:
            self._limits = CommandLimits.from_parameters(
                self._command_names,
                parameters.joint_lower_limits,
                parameters.joint_upper_limits,
                parameters.max_step,
            )
        except ValueError as error:
            raise ParameterError(str(error)) from error
        if (
            metadata.rate_hz
            and abs(metadata.rate_hz - parameters.rate_hz) > 0.01 * metadata.rate_hz
        ):
            self.get_logger().warning(
                f"rate_hz {parameters.rate_hz} differs from the training data's "
                f"{metadata.rate_hz} Hz"
            )
        warmup_s = self._runtime.warm_up(parameters.warmup_iterations)
        self.get_logger().info(
            f"policy {parameters.model_path}: {self._runtime.backend} on "
            f"[{self._runtime.device}], {warmup_s * 1e3:.2f} ms per pass after warm-up; "
            f"commands {self._command_names}"
        )

        self._image_size = (parameters.image_size[0], parameters.image_size[1])
        self._joint_names = list(metadata.joint_names)
        self._joint_layout: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None
        self._cache = SensorCache([*CAMERA_ORDER, JOINT_STATES])
        self._max_age_ns = int(parameters.max_sensor_age * 1e9)
        self._max_skew_ns = int(parameters.max_sensor_skew * 1e9)
        self._enabled = bool(parameters.enabled)
        self._ticks = 0
        self._published = 0
        self._skips: Counter[str] = Counter()
        self._skips_reported: Counter[str] = Counter()
        self._last_skip_log = time.monotonic()

        # inputs and the control loop in separate groups: in a multi-threaded executor a
        # tick may run while a camera frame is being converted
        inputs = MutuallyExclusiveCallbackGroup()
        compressed = parameters.image_transport == "compressed"
        image_type = CompressedImage if compressed else Image
        self._decode = compressed_msg_to_rgb if compressed else image_msg_to_rgb
        self._subscriptions_by_camera = {
            camera: self.create_subscription(
                image_type,
                camera_topic(camera, parameters.image_transport),
                lambda msg, camera=camera: self._on_image(camera, msg),
                qos_profile_sensor_data,
                callback_group=inputs,
            )
            for camera in CAMERA_ORDER
        }
        self.create_subscription(
            JointState,
            JOINT_STATES,
            self._on_joint_states,
            qos_profile_sensor_data,
            callback_group=inputs,
        )
        period_ns = round(1e9 / parameters.rate_hz)
        self._trajectory_step = Duration(nanoseconds=period_ns).to_msg()
        if parameters.command_type == "joint_trajectory":
            self._command_publisher = self.create_publisher(JointTrajectory, COMMANDS, 10)
            self._make_command = self._joint_trajectory
        else:
            self._command_publisher = self.create_publisher(Float64MultiArray, COMMANDS, 10)
            self._make_command = self._float64_multi_array
        self._status_publisher = self.create_publisher(DiagnosticArray, STATUS, 10)
        self.create_service(SetBool, ENABLE, self._on_enable)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0 / parameters.rate_hz, self._on_tick, MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"{'ENABLED' if self._enabled else 'disabled (computing, not publishing)'} at "
            f"{parameters.rate_hz} Hz; enable with: ros2 service call "
            f"{self.resolve_service_name(ENABLE)} std_srvs/srv/SetBool '{{data: true}}'"
        )

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def status_runtime(self) -> str:
        """Backend and what really runs it, e.g. ``onnxruntime [CPUExecutionProvider]``."""
        return f"{self._runtime.backend} [{self._runtime.device}]"

    @property
    def skip_counts(self) -> dict[str, int]:
        """Skipped ticks so far, by reason."""
        return dict(self._skips)

    # -- inputs ---------------------------------------------------------------------------

    def _on_image(self, camera: str, msg: Any) -> None:
        topic = self._subscriptions_by_camera[camera].topic_name
        try:
            frame = resize_rgb(self._decode(msg, source=topic), self._image_size)
        except ImageConversionError as error:
            self._cache.invalidate(camera, f"bad_{camera}_image")
            self.get_logger().error(str(error), throttle_duration_sec=_ERROR_LOG_PERIOD_S)
            return
        self._cache.update(camera, stamp_ns(msg), frame)

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            joint, current = self._pick_joints(msg)
        except InputNotReady as error:
            self._cache.invalidate(JOINT_STATES, error.reason)
            self.get_logger().error(str(error), throttle_duration_sec=_ERROR_LOG_PERIOD_S)
            return
        self._cache.update(JOINT_STATES, stamp_ns(msg), (joint, current))

    def _pick_joints(self, msg: JointState) -> tuple[np.ndarray, np.ndarray]:
        """Policy input [1,J] float32 and current commanded-joint positions, matched by name."""
        names = tuple(msg.name)
        if self._joint_layout is None or self._joint_layout[0] != names:
            index = {name: i for i, name in enumerate(names)}
            missing = [n for n in {*self._joint_names, *self._command_names} if n not in index]
            if missing:
                raise InputNotReady(
                    "bad_joint_states",
                    f"{JOINT_STATES}: lacks joints {sorted(missing)} that the policy needs",
                )
            self._joint_layout = (
                names,
                np.array([index[n] for n in self._joint_names]),
                np.array([index[n] for n in self._command_names]),
            )
        _, joint_index, command_index = self._joint_layout
        positions = np.asarray(msg.position, dtype=np.float64)
        if positions.shape != (len(names),):
            raise InputNotReady(
                "bad_joint_states",
                f"{JOINT_STATES}: {positions.size} positions for {len(names)} names",
            )
        needed = positions[np.concatenate([joint_index, command_index])]
        if not np.all(np.isfinite(needed)):
            raise InputNotReady(
                "nonfinite_joint_states", f"{JOINT_STATES}: positions not finite: {needed.tolist()}"
            )
        return positions[joint_index].astype(np.float32)[None], positions[command_index]

    # -- control loop -------------------------------------------------------------------

    def _stack(self, snapshot: Snapshot) -> np.ndarray:
        """The policy image input uint8 [1,9,H,W] from the cached camera frames."""
        frames = [snapshot.samples[camera].value for camera in CAMERA_ORDER]
        return stack_cameras(*frames)[None]

    def _on_tick(self) -> None:
        start = time.perf_counter()
        self._ticks += 1
        inference_s = float("nan")
        latency_s = float("nan")
        try:
            snapshot = self._cache.snapshot(
                self.get_clock().now().nanoseconds, self._max_age_ns, self._max_skew_ns
            )
            joint, current = snapshot.samples[JOINT_STATES].value
            image = self._stack(snapshot)
            inference_start = time.perf_counter()
            try:
                action = self._runtime.infer(image, joint)
            except Exception as error:  # a runtime failure must not stop the loop
                self.get_logger().error(
                    f"policy inference failed: {error}", throttle_duration_sec=_ERROR_LOG_PERIOD_S
                )
                raise InputNotReady("inference_error") from error
            inference_s = time.perf_counter() - inference_start
            command = safe_command(action, current, self._limits)
        except (InputNotReady, UnsafeCommand) as skip:
            self._skips[skip.reason] += 1
            outcome = f"skipped: {skip.reason}"
        else:
            if self._enabled:
                self._command_publisher.publish(self._make_command(command))
                self._published += 1
                outcome = "published"
            else:
                outcome = "computed, not enabled"
            latency_s = (self.get_clock().now().nanoseconds - snapshot.newest_stamp_ns) * 1e-9
        self._publish_status(outcome, time.perf_counter() - start, inference_s, latency_s)
        self._log_skips()

    def _float64_multi_array(self, command: np.ndarray) -> Float64MultiArray:
        msg = Float64MultiArray()
        msg.data = command.tolist()
        return msg

    def _joint_trajectory(self, command: np.ndarray) -> JointTrajectory:
        point = JointTrajectoryPoint(
            positions=command.tolist(), time_from_start=self._trajectory_step
        )
        # a zero header stamp means "start now" to joint_trajectory_controller
        return JointTrajectory(joint_names=self._command_names, points=[point])

    def _publish_status(self, outcome: str, tick_s: float, inference_s: float, latency_s: float):
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK
            if not outcome.startswith("skipped")
            else DiagnosticStatus.WARN,
            name=f"{self.get_fully_qualified_name()}: control loop",
            message=outcome,
            hardware_id=self._settings.model_path,
        )
        values = {
            "enabled": str(self._enabled).lower(),
            "tick": str(self._ticks),
            "published": str(self._published),
            "latency_ms": f"{latency_s * 1e3:.3f}",
            "tick_ms": f"{tick_s * 1e3:.3f}",
            "inference_ms": f"{inference_s * 1e3:.3f}",
            "runtime": self.status_runtime,
        }
        values.update({f"skipped.{reason}": str(n) for reason, n in sorted(self._skips.items())})
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._status_publisher.publish(array)

    def _log_skips(self) -> None:
        now = time.monotonic()
        if now - self._last_skip_log < self._settings.skip_log_period:
            return
        new = self._skips - self._skips_reported
        if new:
            summary = ", ".join(f"{reason}={n}" for reason, n in new.most_common())
            self.get_logger().warning(
                f"skipped {sum(new.values())} ticks in the last {now - self._last_skip_log:.1f} s: "
                f"{summary}"
            )
        self._skips_reported = Counter(self._skips)
        self._last_skip_log = now

    # -- enable ------------------------------------------------------------------------

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        result = self.set_parameters([Parameter("enabled", value=bool(request.data))])[0]
        response.success = result.successful
        response.message = "enabled" if self._enabled else "disabled"
        return response

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == "enabled":
                if parameter.type_ != Parameter.Type.BOOL:
                    return SetParametersResult(successful=False, reason="enabled must be a bool")
                if parameter.value != self._enabled:
                    self.get_logger().warning(
                        "commands ENABLED" if parameter.value else "commands disabled"
                    )
                self._enabled = parameter.value
        return SetParametersResult(successful=True)


def main(args: list[str] | None = None) -> None:
    """``ros2 run lapo_ros policy_node``: spin until Ctrl-C; exit 1 when it cannot start."""
    rclpy.init(args=args)
    node = executor = None
    try:
        try:
            node = PolicyNode()
        except (ParameterError, PolicyRuntimeError) as error:
            rclpy.logging.get_logger("policy_node").fatal(f"cannot start: {error}")
            sys.exit(1)
        # one thread: on a loaded 2-core machine rclpy's MultiThreadedExecutor(2) missed
        # more ticks at 30 Hz (benchmarks/node_latency.py compares both)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # Ctrl-C during start-up: rclpy's signal handler shut the context down, so creating
        # the executor (or an entity) fails; that is a clean stop, anything else is not
        if rclpy.ok():
            raise
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
