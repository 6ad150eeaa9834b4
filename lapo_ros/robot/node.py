"""``policy_node``: three cameras + joint states in, safe joint commands out.

Joint states are picked by name as they arrive; camera frames are decoded and resized to
the model's image size on a background thread (``ConversionWorker``), so a slow frame
never holds up the control loop. Both land in a ``SensorCache``; a tick takes the newest
inputs, checks their age and skew, runs the policy when its ``ChunkExecution`` needs a new
chunk (every tick for one-action policies), makes that tick's action safe and publishes it
only when enabled. A skipped tick, and enabling or disabling, drops the chunks in play, so
the next command comes from a new prediction. Ticks come from a timer at ``rate_hz``
(``trigger: timer``) or, with ``trigger: inputs`` (one-action policies only), as soon as
every input has a new message (at most ``rate_hz``). Every tick is reported on ``~/status``,
and a summary of the last second on ``/diagnostics`` (for diagnostic aggregators and
rqt_robot_monitor).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lapo_ros.common.images import (
    CAMERA_ORDER,
    ImageConversionError,
    ImageTooLarge,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    resize_rgb,
    stack_cameras,
)
from lapo_ros.common.joints import JointNameError, joint_index
from lapo_ros.robot.chunk_execution import ChunkExecution
from lapo_ros.robot.command_safety import CommandLimits, UnsafeCommand, safe_command
from lapo_ros.robot.parameters import ParameterError, declare_parameters, resolve_against_metadata
from lapo_ros.robot.runtime import OnnxSettings, PolicyRuntimeError, load_policy
from lapo_ros.robot.sensor_cache import (
    ConversionWorker,
    InputNotReady,
    SensorCache,
    Snapshot,
    all_newer,
)

JOINT_STATES = "joint_states"
COMMANDS = "commands"
STATUS = "~/status"
DIAGNOSTICS = "/diagnostics"
"""Absolute, as diagnostic_updater's: aggregators listen there whatever the node's namespace."""
ENABLE = "~/enable"
DIAGNOSTICS_PERIOD_S = 1.0
_ERROR_LOG_PERIOD_S = 2.0


def camera_topic(camera: str, image_transport: str) -> str:
    """Relative topic of one camera: ``left/image_raw`` or ``left/image_raw/compressed``."""
    topic = f"{camera}/image_raw"
    return f"{topic}/compressed" if image_transport == "compressed" else topic


def stamp_ns(msg: Any) -> int:
    """Header stamp of a message in nanoseconds."""
    stamp = msg.header.stamp
    return stamp.sec * 1_000_000_000 + stamp.nanosec


@dataclass
class LoopCounts:
    """Control ticks: all, those that gave a safe command, published, skipped by reason."""

    ticks: int = 0
    computed: int = 0
    published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def copy(self) -> LoopCounts:
        return LoopCounts(self.ticks, self.computed, self.published, Counter(self.skipped))

    def since(self, earlier: LoopCounts) -> LoopCounts:
        """The ticks after ``earlier`` (a ``copy`` taken then)."""
        return LoopCounts(
            self.ticks - earlier.ticks,
            self.computed - earlier.computed,
            self.published - earlier.published,
            self.skipped - earlier.skipped,
        )


def loop_health(window: LoopCounts, enabled: bool) -> tuple[bytes, str]:
    """Diagnostic level and message for the ticks of one report period.

    OK: every tick gave a safe command; WARN: some ticks were skipped (or no tick ran);
    ERROR: no tick gave a command, the node cannot drive the arm.
    """
    reasons = ", ".join(f"{reason}={n}" for reason, n in window.skipped.most_common())
    if window.ticks == 0:
        return DiagnosticStatus.WARN, "no control tick since the last report"
    if window.computed == 0:
        return DiagnosticStatus.ERROR, f"no command in the last {window.ticks} ticks: {reasons}"
    state = "publishing commands" if enabled else "disabled: computing, not publishing"
    if window.skipped:
        skipped = window.ticks - window.computed
        return DiagnosticStatus.WARN, f"{state}; skipped {skipped} of {window.ticks}: {reasons}"
    return DiagnosticStatus.OK, state


class PolicyNode(Node):
    """The policy node; refuses to start (``ParameterError``/``PolicyRuntimeError``)."""

    def __init__(self, node_name: str = "policy_node", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self._conversions = ConversionWorker(self._on_conversion_error, f"{node_name} frames")
        try:
            self._configure()
        except Exception:
            self.destroy_node()
            raise

    def _configure(self) -> None:
        parameters = declare_parameters(self)
        self._runtime = load_policy(
            parameters.model_path,
            parameters.backend,
            parameters.device,
            OnnxSettings(
                tensorrt_cache_path=parameters.tensorrt_cache_path,
                tensorrt_fp16=parameters.tensorrt_fp16,
            ),
        )
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
        self._chunks = ChunkExecution(
            parameters.chunk_execution,
            metadata.chunk_size,
            parameters.chunk_replan_every,
            parameters.ensemble_decay,
        )
        self.get_logger().info(f"actions: {describe_chunk_execution(self._chunks)}")

        self._image_size = (parameters.image_size[0], parameters.image_size[1])
        self._joint_names = list(metadata.joint_names)
        self._joint_layout: tuple[tuple[str, ...], np.ndarray] | None = None
        self._cache = SensorCache([*CAMERA_ORDER, JOINT_STATES])
        self._max_age_ns = int(parameters.max_sensor_age * 1e9)
        self._max_skew_ns = int(parameters.max_sensor_skew * 1e9)
        self._enabled = bool(parameters.enabled)
        self._counts = LoopCounts()
        self._counts_logged = LoopCounts()
        self._counts_diagnosed = LoopCounts()
        self._last_skip_log = time.monotonic()
        self._error_logged: dict[str, float] = {}  # input -> when its last error was logged
        self._last_latency_s = self._last_inference_s = float("nan")

        compressed = parameters.image_transport == "compressed"
        image_type = CompressedImage if compressed else Image
        decode = compressed_msg_to_rgb if compressed else image_msg_to_rgb
        self._decode = partial(decode, max_pixels=parameters.max_image_pixels)
        self._camera_topics = {
            camera: self.create_subscription(
                image_type,
                camera_topic(camera, parameters.image_transport),
                lambda msg, camera=camera: self._on_image(camera, msg),
                qos_profile_sensor_data,
            ).topic_name
            for camera in CAMERA_ORDER
        }
        self._joint_topic = self.create_subscription(
            JointState, JOINT_STATES, self._on_joint_states, qos_profile_sensor_data
        ).topic_name
        period_ns = round(1e9 / parameters.rate_hz)
        self._trajectory_step = Duration(nanoseconds=period_ns).to_msg()
        if parameters.command_type == "joint_trajectory":
            self._command_publisher = self.create_publisher(JointTrajectory, COMMANDS, 10)
            self._make_command = self._joint_trajectory
        else:
            self._command_publisher = self.create_publisher(Float64MultiArray, COMMANDS, 10)
            self._make_command = self._float64_multi_array
        self._status_publisher = self.create_publisher(DiagnosticArray, STATUS, 10)
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self.create_service(SetBool, ENABLE, self._on_enable)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._period_s = 1.0 / parameters.rate_hz
        self._trigger = parameters.trigger
        self._used: dict[str, int] = {}  # input -> sequence of the sample the policy last used
        self._last_run_s = self._last_tick_s = -math.inf  # time.monotonic()
        self._deferred: Any = None  # the one-shot timer of a run held back by the rate cap
        if self._trigger == "inputs":
            self._fresh_inputs = self.create_guard_condition(self._on_fresh_inputs)
            self.create_timer(self._period_s, self._on_watchdog)
        else:
            self.create_timer(self._period_s, self._on_tick)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self.get_logger().info(
            f"{'ENABLED' if self._enabled else 'disabled (computing, not publishing)'} at "
            f"{parameters.rate_hz} Hz ({self._trigger} trigger); enable with: ros2 service call "
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
        return dict(self._counts.skipped)

    def destroy_node(self) -> None:
        self._conversions.stop()
        super().destroy_node()

    # -- inputs ---------------------------------------------------------------------------

    def _on_image(self, camera: str, msg: Any) -> None:
        self._conversions.submit(camera, lambda: self._convert_image(camera, msg))

    def _convert_image(self, camera: str, msg: Any) -> None:
        """Decode and resize one frame into the cache (on the conversion thread)."""
        try:
            rgb = self._decode(msg, source=self._camera_topics[camera])
        except ImageTooLarge as error:
            self._reject(camera, f"oversize_{camera}_image", f"{error} (max_image_pixels)")
            return
        except ImageConversionError as error:
            self._reject(camera, f"bad_{camera}_image", str(error))
            return
        self._cache.update(camera, stamp_ns(msg), resize_rgb(rgb, self._image_size))
        self._notify_if_fresh()

    def _on_conversion_error(self, camera: str, error: Exception) -> None:
        self._reject(camera, f"bad_{camera}_image", f"converting a {camera} frame: {error!r}")

    def _reject(self, name: str, reason: str, detail: str) -> None:
        """Mark input ``name`` unusable until its next good message, and say why (at most
        every few seconds per input, so one bad camera does not hide another)."""
        self._cache.invalidate(name, reason)
        now = time.monotonic()
        if now - self._error_logged.get(name, -_ERROR_LOG_PERIOD_S) >= _ERROR_LOG_PERIOD_S:
            self._error_logged[name] = now
            self.get_logger().error(detail)

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            joint, current = self._pick_joints(msg)
        except InputNotReady as error:
            self._reject(JOINT_STATES, error.reason, str(error))
            return
        self._cache.update(JOINT_STATES, stamp_ns(msg), (joint, current))
        self._notify_if_fresh()

    def _pick_joints(self, msg: JointState) -> tuple[np.ndarray, np.ndarray]:
        """Policy input [1,J] float32 and current commanded-joint positions, matched by name."""
        names = tuple(msg.name)
        positions = np.asarray(msg.position, dtype=np.float64)
        if positions.shape != (len(names),):
            raise InputNotReady(
                "bad_joint_states",
                f"{self._joint_topic}: {positions.size} positions for {len(names)} names",
            )
        needed = positions[self._joint_positions_index(names)]
        if not np.all(np.isfinite(needed)):
            raise InputNotReady(
                "nonfinite_joint_states",
                f"{self._joint_topic}: positions not finite: {needed.tolist()}",
            )
        joints = len(self._joint_names)
        return needed[:joints].astype(np.float32)[None], needed[joints:]

    def _joint_positions_index(self, names: tuple[str, ...]) -> np.ndarray:
        """Where the policy's joints, then the commanded joints, are in a message with
        ``names``; kept while the names stay the same. Repeated or missing names raise."""
        if self._joint_layout is None or self._joint_layout[0] != names:
            try:
                index = np.concatenate(
                    [
                        joint_index(names, self._joint_names, self._joint_topic),
                        joint_index(names, self._command_names, self._joint_topic),
                    ]
                )
            except JointNameError as error:
                raise InputNotReady("bad_joint_states", str(error)) from error
            self._joint_layout = (names, index)
        return self._joint_layout[1]

    # -- control loop -------------------------------------------------------------------

    def _stack(self, snapshot: Snapshot) -> np.ndarray:
        """The policy image input uint8 [1,9,H,W] from the cached camera frames."""
        frames = [snapshot.samples[camera].value for camera in CAMERA_ORDER]
        return stack_cameras(*frames)[None]

    def _notify_if_fresh(self) -> None:
        """``inputs`` trigger: wake the executor once every input has a new message (called
        from the subscription callbacks and the conversion thread)."""
        if self._trigger == "inputs" and self._cache.fresh_since(self._used):
            self._fresh_inputs.trigger()

    def _on_fresh_inputs(self) -> None:
        """Run now, or when the rate cap allows (one pending run at most)."""
        if self._deferred is not None or not self._cache.fresh_since(self._used):
            return
        wait_s = self._last_run_s + self._period_s - time.monotonic()
        if wait_s > 0:
            self._deferred = self.create_timer(wait_s, self._on_deferred)
        else:
            self._on_tick()

    def _on_deferred(self) -> None:
        self.destroy_timer(self._deferred)
        self._deferred = None
        self._on_tick()

    def _on_watchdog(self) -> None:
        """``inputs`` trigger: a tick when none came for two periods, so that missing,
        stale or repeated inputs are still reported (and never drive a command)."""
        if time.monotonic() - self._last_tick_s >= 2 * self._period_s:
            self._on_tick()

    def _on_tick(self) -> None:
        start = time.perf_counter()
        self._last_tick_s = time.monotonic()
        self._counts.ticks += 1
        inference_s = float("nan")  # stays NaN on ticks that play a chunk without the policy
        latency_s = float("nan")
        try:
            snapshot = self._cache.snapshot(
                self.get_clock().now().nanoseconds, self._max_age_ns, self._max_skew_ns
            )
            if self._trigger == "inputs" and not all_newer(snapshot.samples, self._used):
                raise InputNotReady("waiting_for_new_inputs")
            self._used = {name: s.sequence for name, s in snapshot.samples.items()}
            self._last_run_s = self._last_tick_s
            joint, current = snapshot.samples[JOINT_STATES].value
            if self._chunks.needs_policy():
                image = self._stack(snapshot)
                inference_start = time.perf_counter()
                self._chunks.add(self._predict(image, joint))
                inference_s = time.perf_counter() - inference_start
                self._last_inference_s = inference_s
            command = safe_command(self._chunks.next_action(), current, self._limits)
        except (InputNotReady, UnsafeCommand) as skip:
            self._chunks.reset()  # never resume an old chunk after a skip
            self._counts.skipped[skip.reason] += 1
            outcome = f"skipped: {skip.reason}"
        else:
            self._counts.computed += 1
            if self._enabled:
                self._command_publisher.publish(self._make_command(command))
                self._counts.published += 1
                outcome = "published"
            else:
                outcome = "computed, not enabled"
            latency_s = (self.get_clock().now().nanoseconds - snapshot.newest_stamp_ns) * 1e-9
            self._last_latency_s = latency_s
        self._publish_status(outcome, time.perf_counter() - start, inference_s, latency_s)
        self._log_skips()

    def _predict(self, image: np.ndarray, joint: np.ndarray) -> np.ndarray:
        """The policy's action chunk [h,A]; a failure or a non-finite value in any row skips
        the tick (no row of a broken chunk is played)."""
        try:
            chunk = self._runtime.infer_chunk(image, joint)
        except Exception as error:  # a runtime failure must not stop the loop
            self.get_logger().error(
                f"policy inference failed: {error}", throttle_duration_sec=_ERROR_LOG_PERIOD_S
            )
            raise InputNotReady("inference_error") from error
        if not np.all(np.isfinite(chunk)):
            raise UnsafeCommand("nonfinite_action", f"policy output {chunk.tolist()}")
        return chunk

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
        """This tick on ``~/status``."""
        level = DiagnosticStatus.WARN if outcome.startswith("skipped") else DiagnosticStatus.OK
        counts = self._counts
        values = {
            "enabled": str(self._enabled).lower(),
            "trigger": self._trigger,
            "tick": str(counts.ticks),
            "published": str(counts.published),
            "latency_ms": f"{latency_s * 1e3:.3f}",
            "tick_ms": f"{tick_s * 1e3:.3f}",
            "inference_ms": f"{inference_s * 1e3:.3f}",
            "policy_ran": str(not math.isnan(inference_s)).lower(),
            "chunk_execution": self._chunks.mode,
            "chunk_size": str(self._chunks.chunk_size),
            "chunk_index": str(self._chunks.chunk_index),
            "runtime": self.status_runtime,
        }
        values.update(_skip_values(counts.skipped))
        self._status_publisher.publish(self._diagnostic_array(level, outcome, values))

    def _publish_diagnostics(self) -> None:
        """The ticks since the last report on ``/diagnostics``, about once a second."""
        window = self._counts.since(self._counts_diagnosed)
        self._counts_diagnosed = self._counts.copy()
        level, message = loop_health(window, self._enabled)
        values = {
            "enabled": str(self._enabled).lower(),
            "rate_hz": f"{self._settings.rate_hz:g}",
            "ticks": str(window.ticks),
            "computed": str(window.computed),
            "published": str(window.published),
            "last_latency_ms": f"{self._last_latency_s * 1e3:.3f}",
            "last_inference_ms": f"{self._last_inference_s * 1e3:.3f}",
            "chunk_execution": self._chunks.mode,
            "chunk_size": str(self._chunks.chunk_size),
            "runtime": self.status_runtime,
            "model_path": self._settings.model_path,
        }
        values.update(_skip_values(window.skipped))
        self._diagnostics_publisher.publish(self._diagnostic_array(level, message, values))

    def _diagnostic_array(
        self, level: bytes, message: str, values: dict[str, str]
    ) -> DiagnosticArray:
        """One DiagnosticStatus of this node's control loop, stamped now."""
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: control loop",
            message=message,
            hardware_id=self._runtime.device,
            values=[KeyValue(key=key, value=value) for key, value in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        return array

    def _log_skips(self) -> None:
        now = time.monotonic()
        if now - self._last_skip_log < self._settings.skip_log_period:
            return
        new = self._counts.since(self._counts_logged).skipped
        if new:
            summary = ", ".join(f"{reason}={n}" for reason, n in new.most_common())
            self.get_logger().warning(
                f"skipped {sum(new.values())} ticks in the last {now - self._last_skip_log:.1f} s: "
                f"{summary}"
            )
        self._counts_logged = self._counts.copy()
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
                    self._chunks.reset()  # the first command after a switch is predicted anew
                self._enabled = parameter.value
        return SetParametersResult(successful=True)


def describe_chunk_execution(execution: ChunkExecution) -> str:
    """One line for the start-up log: how the policy's outputs become commands."""
    if execution.chunk_size == 1:
        return "one action per policy pass, every tick (chunk_size 1)"
    if execution.mode == "open_loop":
        return (
            f"open_loop over chunks of {execution.chunk_size}: the policy runs every "
            f"{execution.replan_every} ticks"
        )
    return (
        f"temporal_ensemble over chunks of {execution.chunk_size}: the policy runs every tick, "
        f"ensemble_decay {execution.ensemble_decay:g}"
    )


def _skip_values(skipped: Counter[str]) -> dict[str, str]:
    """Diagnostic key-values ``skipped.<reason>``."""
    return {f"skipped.{reason}": str(n) for reason, n in sorted(skipped.items())}


class StopSignals:
    """SIGINT and SIGTERM in ``main``: rclpy's own handlers (which chain to this one) shut
    the context down, and that ends ``spin``; nothing may break into shutdown after that.

    While the node starts, the first signal raises ``KeyboardInterrupt`` so a slow start-up
    (model loading, warm-up) stops at once; while it spins, Python ignores them (rclpy
    acts); once shutdown begins the process ignores them, so a second signal from
    ``ros2 launch``, a terminal or a supervisor cannot interrupt the cleanup or the
    interpreter's exit.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._starting = True
        for signum in self._SIGNALS:
            signal.signal(signum, self._on_signal)

    def started(self) -> None:
        """From now on, signals stop the node only through rclpy."""
        self._starting = False

    def stopping(self) -> None:
        """Ignore every further signal (kept so through the interpreter's exit)."""
        for signum in self._SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._starting:
            self._starting = False
            raise KeyboardInterrupt


def main(args: list[str] | None = None) -> None:
    """``ros2 run lapo_ros policy_node``: spin until SIGINT/SIGTERM, then exit 0 (however
    many signals come); exit 1 when it cannot start."""
    signals = StopSignals()  # before rclpy.init: rclpy's signal handlers chain to it
    rclpy.init(args=args)
    node = executor = None
    try:
        # one thread for callbacks (frames convert on the node's own thread): on a loaded
        # 2-core machine rclpy's MultiThreadedExecutor(2) missed more ticks at 30 Hz
        # (benchmarks/node_latency.py compares both)
        executor = SingleThreadedExecutor()
        try:
            node = PolicyNode()
        except (ParameterError, PolicyRuntimeError) as error:
            rclpy.logging.get_logger("policy_node").fatal(f"cannot start: {error}")
            sys.exit(1)
        executor.add_node(node)
        signals.started()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # a signal during start-up: rclpy's handler shut the context down, so creating the
        # executor (or an entity) fails; that is a clean stop, anything else is not
        if rclpy.ok():
            raise
    finally:
        signals.stopping()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
