"""Closed loop over DDS: the sim node (this process) and ``policy_node`` (a child process).

The policy node gets the sim's cameras and ``joint_states`` over ROS 2 exactly as on the
robot and its ``commands`` move the simulated arm. Episodes start once commands flow;
success comes from the sim, latency and inference time from the node's ``~/status``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lapo_ros.sim import SimConfig
from lapo_ros.sim.dual_arm import joint_limits


class ClosedLoopError(RuntimeError):
    """The closed loop could not run (node did not start, no commands arrived)."""


@dataclass
class ClosedLoopConfig:
    """One closed-loop evaluation: which policy file, how many episodes, the sim and node."""

    model_path: Path
    episodes: int = 10
    seed: int = 10_000  # layout seed of the first episode; unseen by the demonstrations
    sim: SimConfig = field(default_factory=SimConfig)
    max_sensor_age: float = 0.5  # s; generous on a loaded 2-core machine
    startup_timeout_s: float = 120.0
    device: str = "auto"


@dataclass
class ClosedLoopResult:
    """Per-episode outcomes and the node's timing, as the sim and ``~/status`` saw them."""

    successes: list[bool]
    failures: list[bool]
    steps: list[int]
    latency_ms: np.ndarray  # node: newest sensor stamp -> command published
    inference_ms: np.ndarray  # of the ticks that ran the policy
    skipped_ticks: int
    wall_s: float

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0


def policy_node_parameters(config: ClosedLoopConfig) -> dict:
    """Parameters of the policy node for the sim: its rate and its controller's limits."""
    lower, upper = joint_limits()
    return {
        "model_path": str(config.model_path),
        "rate_hz": float(config.sim.rate_hz),
        "enabled": True,
        "device": config.device,
        "max_sensor_age": float(config.max_sensor_age),
        "max_sensor_skew": float(config.max_sensor_age),
        "joint_lower_limits": lower.tolist(),
        "joint_upper_limits": upper.tolist(),
        "max_step": config.sim.max_step().tolist(),
    }


@dataclass
class PolicyLoopRecord:
    """What one run of ``drive_sim_node`` saw: the sim node's episode results and the
    policy node's timing from ``~/status``."""

    results: list  # the sim node's episode results, the first ``episodes`` after start
    latency_ms: np.ndarray
    inference_ms: np.ndarray
    skipped_ticks: int
    wall_s: float


def _start_policy_node(parameters: dict, params_file: Path, base_params: Path | None,
                       log_file) -> subprocess.Popen:
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    files = [str(path) for path in (base_params, params_file) if path is not None]
    return subprocess.Popen(
        [sys.executable, "-m", "lapo_ros.robot.node", "--ros-args",
         *[arg for path in files for arg in ("--params-file", path)]],
        env=env, stdout=log_file, stderr=subprocess.STDOUT)


def drive_sim_node(make_sim_node: Callable, policy_parameters: dict, episodes: int,
                   startup_timeout_s: float, progress: Callable[[bool], None] | None = None,
                   base_params: Path | None = None) -> PolicyLoopRecord:
    """``policy_node`` (a child process, ``base_params`` then ``policy_parameters``) against
    the sim node ``make_sim_node(context)`` in this process, for ``episodes`` episodes.

    The sim node has ``results`` (episode results with ``success``) and ``start_episode()``;
    counting starts with a fresh episode once the first command arrived.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Float64MultiArray

    context = Context()
    rclpy.init(context=context)
    work = Path(tempfile.mkdtemp(prefix="lapo_closed_loop_"))
    log_path = work / "policy_node.log"
    with open(log_path, "w") as log_file:
        child = _start_policy_node(policy_parameters, work / "policy_node.yaml", base_params,
                                   log_file)
    latency, inference = [], []
    skipped = 0
    first_command = []
    executor = SingleThreadedExecutor(context=context)
    node = make_sim_node(context)

    def on_status(msg: DiagnosticArray) -> None:
        nonlocal skipped
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.message == "published":
                latency.append(float(values["latency_ms"]))
                if values.get("policy_ran", "true") == "true":  # chunk replays run none
                    inference.append(float(values["inference_ms"]))
            elif status.message.startswith("skipped"):
                skipped += 1

    def on_command(_: Float64MultiArray) -> None:
        first_command.append(time.monotonic())

    node.create_subscription(DiagnosticArray, "policy_node/status", on_status, 50)
    node.create_subscription(Float64MultiArray, "commands", on_command, 10)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not first_command:
            if child.poll() is not None:
                raise ClosedLoopError(
                    f"policy_node exited with status {child.returncode} before publishing "
                    f"commands; its log:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise ClosedLoopError(
                    f"no commands from policy_node within {startup_timeout_s} s; "
                    f"its log:\n{log_path.read_text()[-3000:]}")
            executor.spin_once(timeout_sec=0.05)
        # the loop is closed: restart the count with a fresh episode and fresh statistics
        node.results.clear()
        node.start_episode()
        latency.clear()
        inference.clear()
        skipped = 0
        start = time.monotonic()
        reported = 0
        while len(node.results) < episodes:
            executor.spin_once(timeout_sec=0.05)
            if child.poll() is not None:
                raise ClosedLoopError(f"policy_node exited with status {child.returncode}; "
                                      f"its log:\n{log_path.read_text()[-3000:]}")
            while progress is not None and reported < len(node.results):
                progress(node.results[reported].success)
                reported += 1
        wall_s = time.monotonic() - start
        results = node.results[:episodes]
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    return PolicyLoopRecord(results=results, latency_ms=np.array(latency),
                            inference_ms=np.array(inference), skipped_ticks=skipped,
                            wall_s=wall_s)


def run_closed_loop(config: ClosedLoopConfig,
                    progress: Callable[[bool], None] | None = None) -> ClosedLoopResult:
    """Run ``config.episodes`` episodes of the policy in ``config.model_path`` over DDS."""
    from rclpy.parameter import Parameter

    from lapo_ros.sim.node import SimNode

    sim = config.sim

    def make_sim_node(context):
        return SimNode(context=context, parameter_overrides=[
            Parameter("rate_hz", value=float(sim.rate_hz)),
            Parameter("image_size", value=list(sim.image_size)),
            Parameter("max_steps", value=int(sim.max_steps)),
            Parameter("seed", value=int(config.seed)), Parameter("auto_reset", value=True)])

    record = drive_sim_node(make_sim_node, policy_node_parameters(config), config.episodes,
                            config.startup_timeout_s, progress)
    results = record.results
    return ClosedLoopResult(
        successes=[r.success for r in results], failures=[r.failure for r in results],
        steps=[r.steps for r in results], latency_ms=record.latency_ms,
        inference_ms=record.inference_ms, skipped_ticks=record.skipped_ticks,
        wall_s=record.wall_s)
