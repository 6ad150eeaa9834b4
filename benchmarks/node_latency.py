"""policy_node loop latency beside model-only inference of the same policy, same run.

A camera/joint publisher runs in its own process (3 x 480x640 rgb8 at the camera rate,
joint_states at 100 Hz) over loopback; policy_node runs enabled at ``--rate`` with a
224x224 policy. Per tick it records: tick time (timer callback start -> command
published), the model's inference time inside that tick, and input stamp -> publish.
Baseline: the same runtime called in a loop on the same inputs (model only).

Compared placements of image conversion (decode + resize to the model size):
``callback`` (what policy_node does: convert on arrival, the tick only stacks) and
``tick`` (store raw messages, convert all three in the tick); and the two triggers of
policy_node: ``timer`` (a tick every 1/rate, the default) and ``inputs`` (a run as soon as
every camera and joint_states has a new message, at most ``rate``), whose input->publish
latency is the point of comparison.

    python benchmarks/node_latency.py [--quick] [--out FILE.md] [--model policy.onnx]
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import REPO_ROOT, Table, add_repo_to_path, benchmark_parser, emit, ratio

add_repo_to_path()

JOINTS = [f"{side}_joint_{i}" for side in ("left", "right") for i in range(8)]

# Fast DDS sends messages larger than its shared-memory segment (default 0.5 MB) over UDP,
# where best-effort 0.9 MB camera frames are lost; the package ships a profile for that.
FASTDDS_LARGE_FRAMES = REPO_ROOT / "config" / "fastdds_large_frames.xml"


def write_conv_policy(path: Path, size: int, width: int) -> Path:
    """A 224x224 conv policy (ONNX, lapo_ros metadata) whose cost grows with ``width``."""
    import onnx
    from onnx import TensorProto, helper

    from lapo_ros.common.policy_file import METADATA_KEY, PolicyMetadata

    rng = np.random.default_rng(0)
    joints, actions = len(JOINTS), len(JOINTS)
    weights = {
        "w1": rng.normal(0, 0.05, (width, 9, 5, 5)),
        "w2": rng.normal(0, 0.05, (width, width, 3, 3)),
        "fc": rng.normal(0, 0.01, (width, actions)),
        "scale": np.full((1,), 1 / 255.0),
    }
    nodes = [
        helper.make_node("Cast", ["image"], ["x0"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x0", "scale"], ["x1"]),
        helper.make_node("Conv", ["x1", "w1"], ["x2"], strides=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["x2"], ["x3"]),
        helper.make_node("Conv", ["x3", "w2"], ["x4"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x4"], ["x5"]),
        helper.make_node("GlobalAveragePool", ["x5"], ["x6"]),
        helper.make_node("Flatten", ["x6"], ["x7"]),
        helper.make_node("MatMul", ["x7", "fc"], ["x8"]),
        helper.make_node("Add", ["x8", "joint"], ["action"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_policy",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, ["B", 9, size, size]),
            helper.make_tensor_value_info("joint", TensorProto.FLOAT, ["B", joints]),
        ],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", actions])],
        [
            helper.make_tensor(k, TensorProto.FLOAT, v.shape, v.astype(np.float32).ravel())
            for k, v in weights.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = PolicyMetadata(JOINTS, [size, size], actions, joints, rate_hz=30.0)
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.save(model, str(path))
    return path


def publish_inputs(
    camera_hz: float, duration_s: float, domain: str, ready, camera_size: tuple[int, int]
) -> None:
    """Child process: the robot's camera drivers and joint state broadcaster."""
    os.environ["ROS_DOMAIN_ID"] = domain
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState

    rclpy.init()
    node = rclpy.create_node("bench_robot")
    height, width = camera_size
    images = {}
    for index, camera in enumerate(("left", "right", "global")):
        pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), np.uint8)
        images[camera] = (
            node.create_publisher(Image, f"{camera}/image_raw", qos_profile_sensor_data),
            Image(
                height=height, width=width, encoding="rgb8", step=3 * width, data=pixels.tobytes()
            ),
        )
    joints = node.create_publisher(JointState, "joint_states", qos_profile_sensor_data)
    joint_msg = JointState(name=JOINTS, position=[0.0] * len(JOINTS))
    ready.set()
    # cameras are not synchronised: spread them over the frame period, as real drivers are
    start = time.monotonic()
    due = {name: start + i / (3 * camera_hz) for i, name in enumerate(images)}
    due["joint_states"] = start
    while time.monotonic() - start < duration_s:
        name = min(due, key=due.get)
        time.sleep(max(0.0, due[name] - time.monotonic()))
        stamp = node.get_clock().now().to_msg()
        if name == "joint_states":
            joint_msg.header.stamp = stamp
            joints.publish(joint_msg)
            due[name] += 0.01
        else:
            publisher, msg = images[name]
            msg.header.stamp = stamp
            publisher.publish(msg)
            due[name] += 1.0 / camera_hz
    node.destroy_node()
    rclpy.shutdown()


@dataclass
class TickLog:
    starts: list[float] = field(default_factory=list)
    tick_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def instrumented(base):
    """A subclass of ``base`` that records every tick's numbers (same work as the node)."""

    class Recorder(base):
        log = TickLog()

        def _publish_status(self, outcome, tick_s, inference_s, latency_s):
            super()._publish_status(outcome, tick_s, inference_s, latency_s)
            if outcome == "published":
                self.log.starts.append(time.perf_counter() - tick_s)
                self.log.tick_ms.append(tick_s * 1e3)
                self.log.inference_ms.append(inference_s * 1e3)
                self.log.latency_ms.append(latency_s * 1e3)
            else:
                self.log.skipped[outcome] = self.log.skipped.get(outcome, 0) + 1

    return Recorder


def convert_at_tick_node():
    """policy_node variant that keeps raw messages and converts them in the tick."""
    from lapo_ros.common.images import CAMERA_ORDER, resize_rgb, stack_cameras
    from lapo_ros.robot.node import PolicyNode, stamp_ns

    class ConvertAtTick(PolicyNode):
        def _on_image(self, camera, msg):
            self._cache.update(camera, stamp_ns(msg), msg)

        def _stack(self, snapshot):
            frames = [
                resize_rgb(self._decode(snapshot.samples[c].value), self._image_size)
                for c in CAMERA_ORDER
            ]
            return stack_cameras(*frames)[None]

    return ConvertAtTick


def run_node(
    node_class,
    model: Path,
    rate_hz: float,
    duration_s: float,
    domain: str,
    camera_size: tuple[int, int],
    threads: int = 1,
    trigger: str = "timer",
) -> TickLog:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.parameter import Parameter

    os.environ["ROS_DOMAIN_ID"] = domain
    context = Context()
    rclpy.init(context=context)
    spawn = multiprocessing.get_context("spawn")  # a fresh process: no inherited DDS state
    ready = spawn.Event()
    publisher = spawn.Process(
        target=publish_inputs, args=(30.0, duration_s + 3.0, domain, ready, camera_size)
    )
    publisher.start()
    ready.wait(30)
    count = len(JOINTS)
    parameters = {
        "model_path": str(model),
        "rate_hz": rate_hz,
        "enabled": True,
        "joint_lower_limits": [-1.0] * count,
        "joint_upper_limits": [1.0] * count,
        "max_step": [0.1],
        # generous: frames dropped by an overloaded loopback must not hide the loop's cost
        "max_sensor_age": 0.5,
        "max_sensor_skew": 0.5,
        "skip_log_period": 60.0,
        "trigger": trigger,
    }
    recorder = instrumented(node_class)
    recorder.log = TickLog()
    node = recorder(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]
    )
    if threads > 1:
        executor = MultiThreadedExecutor(num_threads=threads, context=context)
    else:
        executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    warmup_end = time.monotonic() + 1.5
    while time.monotonic() < warmup_end:
        executor.spin_once(timeout_sec=0.05)
    recorder.log = node.log = TickLog()
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    log = node.log
    executor.shutdown(timeout_sec=5.0)  # waits for callbacks still running in its threads
    node.destroy_node()
    rclpy.shutdown(context=context)
    publisher.join(timeout=10)
    return log


def model_only(model: Path, iterations: int) -> list[float]:
    from lapo_ros.robot.runtime import load_policy

    runtime = load_policy(model)
    runtime.warm_up(5)
    size = runtime.metadata.image_size
    image = np.random.default_rng(0).integers(0, 256, (1, 9, *size), np.uint8)
    joint = np.zeros((1, runtime.metadata.joint_dim), np.float32)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        runtime.infer(image, joint)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def missed_ticks(starts: list[float], period_s: float) -> int:
    gaps = np.diff(np.asarray(starts)) / period_s
    return int(np.sum(np.maximum(0, np.round(gaps) - 1)))


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a policy file (default: a 224x224 conv net)")
    parser.add_argument("--rate", type=float, default=30.0, help="control rate [Hz]")
    parser.add_argument("--width", type=int, default=8, help="conv width of the default model")
    parser.add_argument("--camera", default="480x640", help="camera frame HxW (rgb8)")
    args = parser.parse_args()
    duration = 4.0 if args.quick else 20.0
    camera_size = tuple(int(v) for v in args.camera.split("x"))
    domain = str(150 + os.getpid() % 80)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    with tempfile.TemporaryDirectory() as tmp:
        if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp":
            os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_LARGE_FRAMES))
        model = args.model or write_conv_policy(Path(tmp) / "bench.onnx", 224, args.width)
        from lapo_ros.robot.node import PolicyNode

        baseline = model_only(model, int(duration * args.rate))
        run = {"model": model, "rate_hz": args.rate, "duration_s": duration, "domain": domain}
        run["camera_size"] = camera_size
        logs = {
            "convert in callback, 1 thread (policy_node)": run_node(PolicyNode, **run),
            "convert in callback, 2 threads": run_node(PolicyNode, threads=2, **run),
            "convert at tick, 1 thread": run_node(convert_at_tick_node(), **run),
            "inputs trigger, convert in callback, 1 thread":
                run_node(PolicyNode, trigger="inputs", **run),
        }

    table = Table(
        f"policy_node loop at {args.rate:g} Hz, 224x224 policy, CPU",
        [
            "loop",
            "ticks published",
            "missed ticks",
            "p50 (ms)",
            "p99 (ms)",
            "overhead p50 (ms)",
            "input->publish p50 / p99 (ms)",
            "p50 vs model only",
        ],
    )
    inference_p50 = float(np.percentile(baseline, 50))
    table.add_row(
        "model only (baseline)",
        len(baseline),
        "-",
        f"{inference_p50:.2f}",
        f"{np.percentile(baseline, 99):.2f}",
        "-",
        "-",
        "1.00x",
    )
    for name, log in logs.items():
        if not log.tick_ms:
            table.add_row(name, 0, "-", "-", "-", "-", "-", "-")
            continue
        tick = np.asarray(log.tick_ms)
        overhead = tick - np.asarray(log.inference_ms)
        table.add_row(
            name,
            len(tick),
            "-" if name.startswith("inputs") else missed_ticks(log.starts, 1.0 / args.rate),
            f"{np.percentile(tick, 50):.2f}",
            f"{np.percentile(tick, 99):.2f}",
            f"{np.percentile(overhead, 50):.2f}",
            f"{np.percentile(log.latency_ms, 50):.1f} / {np.percentile(log.latency_ms, 99):.1f}",
            ratio(float(np.percentile(tick, 50)), inference_p50),
        )
    table.notes = [
        f"policy: {args.model.name if args.model else f'conv net, width {args.width}'}; "
        f"cameras 3 x {camera_size[1]}x{camera_size[0]} rgb8 at 30 Hz (staggered) and "
        "joint_states at 100 Hz from another process over loopback (Fast DDS shared memory)",
        "tick = timer callback start -> command published; overhead = tick - the inference "
        "time inside that tick; input->publish = newest input stamp -> publish (includes "
        "waiting for the next tick); missed = timer periods without a tick",
        *(f"{name}: skipped {log.skipped}" for name, log in logs.items() if log.skipped),
    ]
    emit([table], args.out)


if __name__ == "__main__":
    main()
