"""Training throughput of ``MultimodalLatent.train_step`` with the options that matter.

Each variant is a fresh agent (same seed) stepping on the same resident batch, so the
figure is the LAPO update alone (critic + encoder, VAE, actor, Polyak). One more row runs
the seed's ``train(1, batch_size)`` on a ``MultimodalReplayBuffer`` over an HDF5 file, so
the cost of sampling shows beside it (``benchmarks/sampler.py`` details the sampler).
Variants are timed round-robin; the ratio is transitions/s against the default
configuration measured in the same run.

    python benchmarks/training_step.py [--quick] [--out FILE.md] [--device auto|cpu|cuda]
                                       [--compile]

``--compile`` adds a ``torch.compile`` variant (opt-in: compiling takes minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    QUICK_NOTE,
    Table,
    add_repo_to_path,
    benchmark_parser,
    emit,
    milliseconds,
    quick_threads,
    ratio,
    resolve_device,
    synchronizer,
    time_interleaved,
)

add_repo_to_path()

JOINT_DIM = 16
ACTION_DIM = 16


@dataclass
class TrainingBenchmarkConfig:
    image_size: int = 224
    batch_size: int = 16  # seed_comparison's: one step is seconds on a CPU thread
    repeats_cpu: int = 3
    repeats_cuda: int = 30
    warmup: int = 2  # the first steps allocate optimizer state and pick kernels
    episodes: int = 4  # in the HDF5 file behind the replay-buffer row
    episode_length: int = 64


FULL = TrainingBenchmarkConfig()
QUICK = TrainingBenchmarkConfig(
    image_size=32, batch_size=2, repeats_cpu=1, repeats_cuda=2, warmup=1, episode_length=8
)
REPLAY_BUFFER_ROW = "default + replay buffer: train(1, batch) from HDF5"
EVERY_OPTION = {"autocast_dtype": "bfloat16", "channels_last": True, "fused_adam": True}


@dataclass
class Variant:
    """A named agent configuration (``LAPOConfig`` overrides)."""

    name: str
    overrides: dict
    replay_buffer: bool = False  # run train() on a replay buffer instead of train_step()


def variants(with_compile: bool) -> list[Variant]:
    """Baseline first (the shipped default: float32, NCHW, foreach Adam). Options go through
    ``LAPOConfig`` (torch.compile: ``compile_encoders``)."""
    found = [
        Variant("default (fp32, contiguous, foreach Adam)", {}),
        Variant(REPLAY_BUFFER_ROW, {}, replay_buffer=True),
        Variant("channels_last", {"channels_last": True}),
        Variant("fused Adam", {"fused_adam": True}),
        Variant("channels_last + fused Adam (the fp32 path)",
                {"channels_last": True, "fused_adam": True}),
        Variant("bf16 autocast", {"autocast_dtype": "bfloat16"}),
        Variant("bf16 autocast + channels_last + fused Adam", EVERY_OPTION),
    ]
    if with_compile:
        found += [
            Variant("torch.compile encoders", {"compile_encoders": True}),
            Variant("torch.compile encoders + bf16 autocast + channels_last + fused Adam",
                    {"compile_encoders": True, **EVERY_OPTION}),
        ]
    return found


def synthetic_statistics():
    import numpy as np

    from lapo_ros.lapo.data.batch import DatasetStatistics

    return DatasetStatistics(
        joint_mean=np.zeros(JOINT_DIM, np.float32),
        joint_std=np.ones(JOINT_DIM, np.float32),
        action_mean=np.zeros(ACTION_DIM, np.float32),
        action_std=np.ones(ACTION_DIM, np.float32),
        action_min=-np.ones(ACTION_DIM, np.float32),
        action_max=np.ones(ACTION_DIM, np.float32),
        reward_min=0.0,
        reward_max=1.0,
        num_transitions=1000,
    )


def synthetic_batch(batch_size: int, image_size: int, device):
    """A random batch of transitions from 8 episodes, resident on ``device`` (uint8 images
    as the buffer's)."""
    import torch

    from lapo_ros.lapo.data.batch import TransitionBatch

    generator = torch.Generator().manual_seed(0)
    image_shape = (batch_size, 9, image_size, image_size)

    def images():
        return torch.randint(0, 256, image_shape, dtype=torch.uint8, generator=generator)

    return TransitionBatch(
        image=images(),
        joint=torch.randn(batch_size, JOINT_DIM, generator=generator),
        action=torch.rand(batch_size, ACTION_DIM, generator=generator) * 2 - 1,
        reward=torch.rand(batch_size, 1, generator=generator),
        next_image=images(),
        next_joint=torch.randn(batch_size, JOINT_DIM, generator=generator),
        not_done=(torch.rand(batch_size, 1, generator=generator) > 0.05).float(),
        # the default agent's weights read each transition's episode, step and return
        episode=torch.arange(batch_size) % 8,
        step=torch.randint(0, 4, (batch_size,), generator=generator),
        return_to_go=torch.rand(batch_size, 1, generator=generator) * 10,
    ).to(device)


def write_dataset(path, config: TrainingBenchmarkConfig) -> None:
    """A canonical HDF5 file of random episodes at the benchmark's image size."""
    import numpy as np

    from lapo_ros.dataset.layout import Episode, write_episodes

    rng = np.random.default_rng(0)
    length, size = config.episode_length, config.image_size

    def images():
        return rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8)

    episodes = [
        Episode(
            left_image=images(),
            right_image=images(),
            global_image=images(),
            joint=rng.standard_normal((length, JOINT_DIM)).astype(np.float32),
            action=rng.uniform(-1, 1, (length, ACTION_DIM)).astype(np.float32),
            reward=rng.random(length).astype(np.float32),
            terminal=bool(index % 2),
        )
        for index in range(config.episodes)
    ]
    write_episodes(
        path, episodes, joint_names=[f"joint_{i}" for i in range(JOINT_DIM)], rate_hz=30.0
    )


def replay_buffer(path, config: TrainingBenchmarkConfig, device):
    from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer

    buffer = MultimodalReplayBuffer(
        action_dim=ACTION_DIM, joint_dim=JOINT_DIM, device=device, image_size=config.image_size
    )
    buffer.load_from_hdf5(path)
    return buffer


def build_agent(variant: Variant, config: TrainingBenchmarkConfig, device, dataset=None):
    from lapo_ros.lapo.algorithms.lapo import MultimodalLatent

    data = (
        {"replay_buffer": replay_buffer(dataset, config, device)}
        if variant.replay_buffer
        else {"statistics": synthetic_statistics(), "image_size": config.image_size}
    )
    return MultimodalLatent(action_dim=ACTION_DIM, device=device, **data, **variant.overrides)


def bf16_action_difference(config: TrainingBenchmarkConfig, device) -> str:
    """How far the greedy actions of one agent move under bf16 autocast (same weights)."""
    import torch

    from lapo_ros.lapo.compute import autocast

    agent = build_agent(variants(False)[0], config, device)
    batch = synthetic_batch(config.batch_size, config.image_size, device)
    policy = agent.deployable_policy()
    with torch.no_grad():
        fp32 = policy(batch.image, batch.joint).float()
        with autocast("bfloat16", device):
            bf16 = policy(batch.image, batch.joint).float()
    difference = (bf16 - fp32).abs()
    return (f"bf16 vs fp32 greedy action, same weights, {config.batch_size} observations: max "
            f"|difference| {float(difference.max()):.2g}, mean {float(difference.mean()):.2g} "
            f"(action range +-1; the exported policy runs in fp32).")


def run(config: TrainingBenchmarkConfig, device, with_compile: bool) -> Table:
    size, batch_size = config.image_size, config.batch_size
    table = Table(
        f"MultimodalLatent.train_step ({size}x{size}, batch {batch_size}, device {device})",
        ["variant", "step median (ms)", "step p99 (ms)", "transitions/s", "vs default"],
    )
    batch = synthetic_batch(batch_size, size, device)
    chosen = variants(with_compile)
    repeats = config.repeats_cuda if device.type == "cuda" else config.repeats_cpu
    with tempfile.TemporaryDirectory(prefix="lapo_training_bench_") as folder:
        dataset = Path(folder) / "episodes.hdf5"
        write_dataset(dataset, config)
        steps = {}
        for variant in chosen:
            agent = build_agent(variant, config, device, dataset)
            steps[variant.name] = (
                (lambda a=agent: a.train(1, batch_size))
                if variant.replay_buffer
                else (lambda a=agent: a.train_step(batch))
            )
        timings = time_interleaved(
            steps, repeats=repeats, warmup=config.warmup, synchronize=synchronizer(device)
        )
    baseline = batch_size / timings[chosen[0].name].p50
    for name, timing in timings.items():
        throughput = batch_size / timing.p50
        table.add_row(
            name,
            milliseconds(timing.p50),
            milliseconds(timing.p99),
            f"{throughput:.1f}",
            ratio(throughput, baseline),
        )
    table.notes.append(
        f"One fresh agent per variant on the same resident batch; {repeats} timed steps each "
        f"after {config.warmup} warm-up steps, variants interleaved; train_step returns floats "
        "(one sync per step)."
    )
    table.notes.append(
        f"Replay-buffer row: {config.episodes} episodes x {config.episode_length} frames in an "
        "uncompressed canonical HDF5 file (page cache warm after the warm-up steps)."
    )
    table.notes.append(bf16_action_difference(config, device))
    if not with_compile:
        table.notes.append("torch.compile not measured (opt-in: add --compile).")
    if device.type == "cpu":
        table.notes.append("CPU only: every row of this table was measured on the CPU.")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__.splitlines()[0], device=True)
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile (slow to compile)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick_threads(args.quick)
    config = QUICK if args.quick else FULL
    table = run(config, resolve_device(args.device), args.compile)
    if args.quick:
        table.notes.append(QUICK_NOTE)
    emit([table], args.out, None if argv is None else [sys.argv[0], *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
