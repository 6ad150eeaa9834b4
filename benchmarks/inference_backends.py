"""Inference latency of the exported policy on every backend, batch 1, p50/p99.

The policy is ``MultimodalLatent.deployable_policy()`` (random weights) exported by
``lapo_ros.lapo.export.export_policy`` to ``.onnx`` and ``.pt``. Each backend is timed as
the node calls it: numpy uint8 image [1,9,H,W] and float32 joint [1,J] in, numpy action
out (host-device copies included). Rows: eager torch (the baseline), TorchScript and
onnxruntime on the CPU through ``lapo_ros.robot.runtime`` (the node's runtime); with a
CUDA device also eager torch CUDA, TorchScript CUDA fp32 / fp16 / bf16, and through the
node's runtime onnxruntime's CUDA execution provider (``session.run``, and IOBinding as the
node uses it) and its TensorRT execution provider (fp32 / fp16, engine built before timing).
Rows that cannot run here are listed in the notes with the reason. Backends are timed
round-robin so load drift hits all alike.

    python benchmarks/inference_backends.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import copy
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    QUICK_NOTE,
    BenchmarkError,
    Table,
    add_repo_to_path,
    benchmark_parser,
    emit,
    gpu_description,
    milliseconds,
    quick_threads,
    speedup,
    time_interleaved,
)

add_repo_to_path()

JOINT_DIM = 16
ACTION_DIM = 16
BASELINE = "eager torch, CPU fp32"


@dataclass
class InferenceBenchmarkConfig:
    image_size: int = 224
    repeats: int = 200
    warmup: int = 10


FULL = InferenceBenchmarkConfig()
QUICK = InferenceBenchmarkConfig(image_size=32, repeats=5, warmup=1)

Runner = Callable[[object, object], object]  # (image ndarray, joint ndarray) -> action ndarray


def export_files(config: InferenceBenchmarkConfig, folder: Path):
    """(eager policy on CPU, metadata, {'onnx': path, 'torchscript': path})."""
    from training_step import synthetic_statistics

    from lapo_ros.common.policy_file import PolicyMetadata
    from lapo_ros.lapo.algorithms.lapo import MultimodalLatent
    from lapo_ros.lapo.export import export_policy

    agent = MultimodalLatent(
        action_dim=ACTION_DIM,
        device="cpu",
        statistics=synthetic_statistics(),
        image_size=config.image_size,
    )
    policy = agent.deployable_policy()
    metadata = PolicyMetadata(
        joint_names=[f"joint_{i}" for i in range(JOINT_DIM)],
        image_size=[config.image_size, config.image_size],
        action_dim=ACTION_DIM,
        joint_dim=JOINT_DIM,
    )
    paths = {
        "onnx": export_policy(policy, metadata, folder / "policy.onnx"),
        "torchscript": export_policy(policy, metadata, folder / "policy.pt"),
    }
    return policy, paths


def eager_runner(policy, device: str, dtype=None) -> Runner:
    import torch

    module = policy.to(device)
    if dtype is not None:
        module = module.to(dtype)

    def run(image, joint):
        with torch.inference_mode():
            action = module(torch.from_numpy(image).to(device), torch.from_numpy(joint).to(device))
        return action.float().cpu().numpy()

    return run


def traced_runner(policy, device: str, dtype, example) -> Runner:
    """TorchScript of the policy cast to ``dtype`` on ``device`` (traced and frozen here)."""
    import torch

    module = policy.to(device).to(dtype)
    image, joint = (torch.from_numpy(a).to(device) for a in example)
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(module, (image, joint), check_trace=False))
    return eager_runner(traced, device)


def runtime_runner(path: Path, backend: str, device: str, **onnx) -> tuple[Runner, str]:
    """The node's own runtime (``lapo_ros.robot.runtime``; ``onnx``: ``OnnxSettings``
    fields); returns what really runs."""
    from lapo_ros.robot.runtime import OnnxSettings, load_policy

    runtime = load_policy(path, backend=backend, device=device, onnx=OnnxSettings(**onnx))
    return (lambda image, joint: runtime.infer(image, joint)), runtime.device


def cpu_runners(policy, paths: dict) -> dict[str, Callable[[], tuple[Runner, str]]]:
    """{row name: factory} of the rows that run anywhere; a factory builds a Runner and says
    what runs it, or raises why it cannot."""
    return {
        BASELINE: lambda: (eager_runner(copy.deepcopy(policy), "cpu"), "torch.inference_mode"),
        "TorchScript, CPU fp32": lambda: runtime_runner(paths["torchscript"], "torchscript", "cpu"),
        "onnxruntime, CPU": lambda: runtime_runner(paths["onnx"], "onnxruntime", "cpu"),
    }


def cuda_runners(
    policy, paths: dict, example, folder: Path
) -> dict[str, Callable[[], tuple[Runner, str]]]:
    """{row name: factory} of the rows that need a CUDA device (see ``cpu_runners``)."""
    import torch

    def fresh():
        return copy.deepcopy(policy)

    def onnx(device: str, **settings) -> Callable[[], tuple[Runner, str]]:
        return lambda: runtime_runner(paths["onnx"], "onnxruntime", device, **settings)

    engines = str(folder / "tensorrt_cache")
    return {
        "eager torch, CUDA fp32": lambda: (eager_runner(fresh(), "cuda"), "cuda"),
        "TorchScript, CUDA fp32": lambda: runtime_runner(
            paths["torchscript"], "torchscript", "cuda"
        ),
        "TorchScript, CUDA fp16": lambda: (
            traced_runner(fresh(), "cuda", torch.float16, example), "traced here, .half()"
        ),
        "TorchScript, CUDA bf16": lambda: (
            traced_runner(fresh(), "cuda", torch.bfloat16, example), "traced here, bf16"
        ),
        "onnxruntime, CUDA": onnx("cuda", io_binding=False),
        "onnxruntime, CUDA + IOBinding": onnx("cuda"),
        "onnxruntime, TensorRT fp32": onnx("tensorrt", tensorrt_cache_path=engines),
        "onnxruntime, TensorRT fp16": onnx(
            "tensorrt", tensorrt_cache_path=engines, tensorrt_fp16=True
        ),
    }


def run(config: InferenceBenchmarkConfig) -> Table:
    import numpy as np
    import torch

    size = config.image_size
    gpu = gpu_description()
    table = Table(
        f"Exported policy inference ({size}x{size}, batch 1; GPU: {gpu or 'none'})",
        ["backend", "runs on", "p50 (ms)", "p99 (ms)", "vs eager CPU (p50)", "max |Δ action|"],
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 9, size, size), dtype=np.uint8)
    joint = rng.standard_normal((1, JOINT_DIM)).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="lapo_inference_bench_") as folder:
        torch.manual_seed(0)
        policy, paths = export_files(config, Path(folder))
        runners: dict[str, Runner] = {}
        where: dict[str, str] = {}
        unavailable: list[str] = []
        factories = cpu_runners(policy, paths)
        gpu_rows = cuda_runners(policy, paths, (image, joint), Path(folder))
        if torch.cuda.is_available():
            factories.update(gpu_rows)
        else:
            unavailable.append(f"no CUDA device: {'; '.join(gpu_rows)}")
        for name, factory in factories.items():
            try:
                runners[name], where[name] = factory()
                runners[name](image, joint)
            except Exception as error:  # noqa: BLE001 - a backend that cannot run is a row note
                runners.pop(name, None)
                unavailable.append(f"{name}: {str(error).splitlines()[0][:200]}")
        if BASELINE not in runners:
            raise BenchmarkError(f"the baseline cannot run: {unavailable[0]}")
        reference = runners[BASELINE](image, joint)
        synchronize = torch.cuda.synchronize if torch.cuda.is_available() else None
        timings = time_interleaved(
            {name: (lambda r=runner: r(image, joint)) for name, runner in runners.items()},
            repeats=config.repeats,
            warmup=config.warmup,
            synchronize=synchronize,
        )
        baseline = timings[BASELINE].p50
        for name, timing in timings.items():
            difference = float(np.max(np.abs(runners[name](image, joint) - reference)))
            table.add_row(
                name,
                where[name],
                milliseconds(timing.p50),
                milliseconds(timing.p99),
                f"{speedup(timing.p50, baseline)} faster",
                f"{difference:.1e}",
            )
    table.notes.append(
        f"{config.repeats} timed calls per backend after {config.warmup} warm-up calls, "
        "round-robin; numpy in and out as the node calls it (host<->device copies included)."
    )
    table.notes.append(
        "max |Δ action|: largest difference from the eager CPU fp32 action on the same input."
    )
    table.notes.extend(f"Not measured: {reason}" for reason in unavailable)
    return table


def main(argv: list[str] | None = None) -> int:
    args = benchmark_parser(__doc__.splitlines()[0]).parse_args(argv)
    quick_threads(args.quick)
    table = run(QUICK if args.quick else FULL)
    if args.quick:
        table.notes.append(QUICK_NOTE)
    emit([table], args.out, None if argv is None else [sys.argv[0], *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
