"""One 9-channel ResNet18 vs three ResNet18s (one per camera), side by side in one run.

The seed claims that stacking the three RGB cameras into one 9-channel ResNet18 gives 67%
fewer parameters, 1.6-2.2x faster batches and about 60% less GPU memory than one ResNet18
per camera. This measures, for both encoders on the same device in the same run:
parameters, batch-1 inference latency, the time of a training step (encoder + action head,
MSE, backward, Adam) at two batch sizes, and peak training memory (CUDA
``max_memory_allocated`` when a GPU is used, else the peak RSS of a fresh process).

    python benchmarks/encoders.py [--quick] [--out FILE.md] [--device auto|cpu|cuda]

Weights are random: speed and memory do not depend on their values.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from common import (
    QUICK_NOTE,
    Table,
    add_repo_to_path,
    benchmark_parser,
    emit,
    mebibytes,
    millions,
    milliseconds,
    peak_rss_bytes,
    quick_threads,
    ratio,
    resolve_device,
    rss_bytes,
    run_json_subprocesses,
    speedup,
    synchronizer,
    time_interleaved,
)

add_repo_to_path()

NINE_CHANNEL = "nine_channel"
THREE_CAMERAS = "three_cameras"
VARIANTS = (THREE_CAMERAS, NINE_CHANNEL)  # baseline first
ACTION_DIM = 16


@dataclass
class EncoderBenchmarkConfig:
    image_size: int = 224
    batch_sizes: tuple[int, ...] = (32, 64)
    output_dim: int = 256  # image feature size, as ImageJointEncoder uses it
    inference_repeats: int = 30
    train_repeats: int = 3
    cuda_repeat_factor: int = 5  # a GPU step is fast: time more of them
    memory_steps: int = 2  # steps per fresh memory process: the 2nd holds Adam state too

    def repeats(self, device) -> tuple[int, int]:
        """(inference, training) timed repeats on ``device``."""
        factor = self.cuda_repeat_factor if device.type == "cuda" else 1
        return self.inference_repeats * factor, self.train_repeats * factor


FULL = EncoderBenchmarkConfig()
QUICK = EncoderBenchmarkConfig(
    image_size=32, batch_sizes=(2, 4), inference_repeats=3, train_repeats=1,
    cuda_repeat_factor=1, memory_steps=1,
)


# ---------------------------------------------------------------- the two encoders


def three_camera_encoder(output_dim: int):
    """The baseline: one ResNet18 per camera, 3x512 features concatenated, one fc layer.

    Input contract, normalisation and head match the project's ``ResNet18Encoder``
    (uint8 in, ImageNet mean/std inside, a single ``Linear`` to ``output_dim``).
    """
    import torch
    import torchvision
    from torch import nn

    from lapo_ros.lapo.models.networks import IMAGENET_MEAN, IMAGENET_STD, RESNET18_FEATURES

    class ThreeCameraResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunks = nn.ModuleList(torchvision.models.resnet18(weights=None) for _ in range(3))
            for trunk in self.trunks:
                trunk.fc = nn.Identity()
            self.fc = nn.Linear(3 * RESNET18_FEATURES, output_dim)
            mean = torch.tensor(IMAGENET_MEAN * 3).view(1, 9, 1, 1)
            std = torch.tensor(IMAGENET_STD * 3).view(1, 9, 1, 1)
            self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
            self.register_buffer("shift", -mean / std, persistent=False)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            cameras = (image.to(self.scale.dtype) * self.scale + self.shift).split(3, dim=1)
            features = [trunk(camera) for trunk, camera in zip(self.trunks, cameras, strict=True)]
            return self.fc(torch.cat(features, dim=1))

    return ThreeCameraResNet18()


def build_encoder(variant: str, output_dim: int):
    """(module, label) of one variant: the baseline or the project's ``ResNet18Encoder``."""
    if variant == THREE_CAMERAS:
        return three_camera_encoder(output_dim), "3x ResNet18 (one per camera)"
    if variant == NINE_CHANNEL:
        from lapo_ros.lapo.models.networks import ResNet18Encoder

        return ResNet18Encoder(output_dim=output_dim, in_channels=9), "9-ch ResNet18Encoder"
    raise ValueError(f"unknown encoder variant {variant!r}, use one of {', '.join(VARIANTS)}")


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- what is timed


class TrainingStep:
    """One supervised step of encoder + action head: forward, MSE, backward, Adam."""

    def __init__(self, encoder, output_dim: int, batch_size: int, image_size: int, device):
        import torch
        from torch import nn

        generator = torch.Generator().manual_seed(0)
        self.model = nn.Sequential(encoder, nn.Linear(output_dim, ACTION_DIM)).to(device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-4)
        shape = (batch_size, 9, image_size, image_size)
        self.image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device)
        self.target = torch.randn(batch_size, ACTION_DIM, generator=generator).to(device)

    def __call__(self) -> None:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(self.model(self.image), self.target)
        loss.backward()
        self.optimizer.step()


def inference_call(encoder, image_size: int, device):
    import torch

    encoder = encoder.to(device).eval()
    image = torch.randint(0, 256, (1, 9, image_size, image_size), dtype=torch.uint8).to(device)

    def infer() -> None:
        with torch.inference_mode():
            encoder(image)

    return infer


# ---------------------------------------------------------------- peak memory (fresh process)


def measure_memory(variant: str, batch_size: int, image_size: int, steps: int, device_name: str):
    """Peak memory of ``steps`` training steps of one variant; run in a fresh process."""
    import torch

    idle_rss = rss_bytes()
    device = resolve_device(device_name)
    encoder, _ = build_encoder(variant, FULL.output_dim)
    step = TrainingStep(encoder, FULL.output_dim, batch_size, image_size, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        step()
    result = {"peak_rss": peak_rss_bytes(), "idle_rss": idle_rss}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result["cuda_peak"] = torch.cuda.max_memory_allocated(device)
    return result


def memory_in_fresh_processes(batch_size: int, image_size: int, steps: int, device) -> dict:
    """Peak memory of every variant, each in its own fresh process (run side by side)."""
    jobs = {
        f"peak memory of {variant}": [
            str(Path(__file__).resolve()),
            "--measure-memory", variant,
            "--batch-size", str(batch_size),
            "--image-size", str(image_size),
            "--steps", str(steps),
            "--device", str(device),
        ]
        for variant in VARIANTS
    }
    results = run_json_subprocesses(jobs, timeout_s=1800)
    return {variant: results[f"peak memory of {variant}"] for variant in VARIANTS}


# ---------------------------------------------------------------- the table


def run(config: EncoderBenchmarkConfig, device) -> Table:
    import torch

    torch.manual_seed(0)
    encoders = {variant: build_encoder(variant, config.output_dim) for variant in VARIANTS}
    labels = {variant: label for variant, (_, label) in encoders.items()}
    base, nine = labels[THREE_CAMERAS], labels[NINE_CHANNEL]
    size = config.image_size
    table = Table(
        f"Encoders: one 9-channel ResNet18 vs three ResNet18s ({size}x{size}, device {device})",
        ["metric", base, nine, "9-ch vs 3x"],
    )
    sync = synchronizer(device)
    inference_repeats, train_repeats = config.repeats(device)

    counts = {variant: parameter_count(module) for variant, (module, _) in encoders.items()}
    table.add_row(
        "encoder parameters",
        millions(counts[THREE_CAMERAS]),
        millions(counts[NINE_CHANNEL]),
        ratio(counts[NINE_CHANNEL], counts[THREE_CAMERAS]),
    )

    inference = time_interleaved(
        {v: inference_call(m, size, device) for v, (m, _) in encoders.items()},
        repeats=inference_repeats,
        warmup=2,
        synchronize=sync,
    )
    for name, pick in (("p50", lambda t: t.p50), ("p99", lambda t: t.p99)):
        baseline, candidate = pick(inference[THREE_CAMERAS]), pick(inference[NINE_CHANNEL])
        table.add_row(
            f"inference batch 1, {name} (ms)",
            milliseconds(baseline),
            milliseconds(candidate),
            f"{speedup(candidate, baseline)} faster",
        )

    for batch_size in config.batch_sizes:
        steps = {
            v: TrainingStep(m, config.output_dim, batch_size, size, device)
            for v, (m, _) in encoders.items()
        }
        timings = time_interleaved(steps, repeats=train_repeats, warmup=1, synchronize=sync)
        baseline, candidate = timings[THREE_CAMERAS].p50, timings[NINE_CHANNEL].p50
        table.add_row(
            f"training step batch {batch_size}, median (ms)",
            milliseconds(baseline),
            milliseconds(candidate),
            f"{speedup(candidate, baseline)} faster",
        )
        table.add_row(
            f"training batch {batch_size} (transitions/s)",
            f"{batch_size / baseline:.1f}",
            f"{batch_size / candidate:.1f}",
            ratio(baseline, candidate),
        )
        del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()

    memory_batch = max(config.batch_sizes)
    memory = memory_in_fresh_processes(memory_batch, size, config.memory_steps, device)
    if device.type == "cuda":
        rows = [("CUDA max_memory_allocated", "cuda_peak")]
        table.notes.append("Peak memory: torch.cuda.max_memory_allocated in a fresh process.")
    else:
        rows = [("peak RSS", "peak_rss"), ("peak RSS above torch import", "above_idle")]
        for result in memory.values():
            result["above_idle"] = result["peak_rss"] - result["idle_rss"]
        table.notes.append(
            "Peak memory (CPU): peak RSS (VmHWM) of a fresh process per encoder; 'above torch "
            "import' subtracts that process's RSS right after importing torch."
        )
    for label, key in rows:
        baseline, candidate = memory[THREE_CAMERAS][key], memory[NINE_CHANNEL][key]
        table.add_row(
            f"{label}, training batch {memory_batch} (MiB)",
            mebibytes(baseline),
            mebibytes(candidate),
            ratio(candidate, baseline),
        )

    table.notes.extend(
        [
            "Training step: encoder + linear action head, MSE, backward, Adam; random weights "
            f"and uint8 inputs converted on the device. Medians of {train_repeats} steps and "
            f"{inference_repeats} inferences per encoder, variants interleaved.",
            "Seed claims (9-ch vs 3x): parameters 11.39 M vs 33.39 M (-67%), batches "
            "1.6-2.2x faster, memory ~2.1 GB vs ~5.7 GB (-63%).",
        ]
    )
    if device.type == "cpu":
        table.notes.append("CPU only: every row of this table was measured on the CPU.")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__.splitlines()[0], device=True)
    parser.add_argument("--measure-memory", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_memory:
        import json

        result = measure_memory(
            args.measure_memory, args.batch_size, args.image_size, args.steps, args.device
        )
        print(json.dumps(result))
        return 0
    quick_threads(args.quick)
    config = QUICK if args.quick else FULL
    table = run(config, resolve_device(args.device))
    if args.quick:
        table.notes.append(QUICK_NOTE)
    emit([table], args.out, None if argv is None else [sys.argv[0], *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
