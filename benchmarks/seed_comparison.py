"""The project's training step against a seed-equivalent update, on this machine (issue 20).

``SeedUpdate`` is written from the seed's description (``shared/seed``), not its code: one
9-channel ResNet18 + joint MLP encoder; the critic optimizer steps the critic AND the
encoder, the VAE and the actor train on detached features; LAPO's equations
(``algos_vae.py``: target V from the target networks with clipped latent noise, one-step
advantage, expectile 0.9 weights, actor through the target decoder); Polyak updates of
every target; float32, NCHW tensors and foreach Adam, PyTorch's defaults. It reads the
same network classes as the agent, so a row's FLOPs differ only by what its update does.

Rows, all on the same resident batch, timed round-robin in one process:
- the seed-equivalent update (baseline);
- ``MultimodalLatent`` with LAPO's weighting (``critic_folds`` 1, no VAE encoder gradient:
  the seed's encoder passes) and its default compute (float32, NCHW, foreach Adam): the
  implementation alone;
- the same with the compute options one by one (channels_last + fused Adam: the float32
  path; then bf16 autocast where the device computes it natively);
- the shipped default agent (``config/train.yaml``: two cross-fitted encoder + critic pairs
  and the VAE's encoder gradient, about 3x the seed's FLOPs), as shipped and with every
  compute option.
GFLOP per transition is counted by ``torch.utils.flop_counter`` over one step (forward and
backward convolutions and matrix products). A second table runs the LAPO-weighting row in
fresh processes with glibc's allocator as it comes and as ``training/train.py`` sets it
(``lapo_ros.lapo.training.allocator``), alternating, with minor page faults per step.

    python benchmarks/seed_comparison.py [--quick] [--out FILE.md] [--device auto|cpu|cuda]
                                         [--batch-size 16] [--image-size 224]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

from common import (
    QUICK_NOTE,
    BenchmarkError,
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

ACTION_DIM = 16
LAPO_WEIGHTING = {"critic_folds": 1, "advantage_estimate": "one_step",
                  "advantage_scope": "step", "expectile": 0.9, "vae_encoder_gradient": False}


@dataclass
class ComparisonConfig:
    image_size: int = 224
    batch_size: int = 16
    repeats: int = 3
    warmup: int = 2
    allocator_rounds: int = 2  # fresh-process runs per allocator setting, alternating
    allocator_steps: int = 3


FULL = ComparisonConfig()
QUICK = ComparisonConfig(image_size=32, batch_size=4, repeats=1, warmup=1,
                         allocator_rounds=1, allocator_steps=1)


class SeedUpdate:
    """The seed's update as its description states it (see the module docstring)."""

    def __init__(self, statistics, image_size: int, device, gamma: float = 0.99,
                 tau: float = 0.005, lr: float = 2e-4, expectile: float = 0.9) -> None:
        import copy

        import torch

        from lapo_ros.lapo.models.networks import Actor, ActorVAE, Critic, ImageJointEncoder
        from lapo_ros.lapo.models.normalization import JointNormalizer

        torch.manual_seed(0)
        latent = 2 * ACTION_DIM
        joint_dim = int(statistics.joint_mean.size)
        self.encoder = ImageJointEncoder(joint_dim=joint_dim).to(device)
        self.critic = Critic(256, ACTION_DIM).to(device)
        self.actor = Actor(256, latent).to(device)
        self.vae = ActorVAE(256, ACTION_DIM, latent).to(device)
        self.normalizer = JointNormalizer(statistics, joint_dim).to(device)
        self.targets = [(net, copy.deepcopy(net)) for net in
                        (self.encoder, self.critic, self.actor, self.vae)]
        self.encoder_t, self.critic_t, self.actor_t, self.vae_t = (t for _, t in self.targets)
        self.critic_optimizer = torch.optim.Adam(
            [*self.critic.parameters(), *self.encoder.parameters()], lr=lr)
        self.vae_optimizer = torch.optim.Adam(self.vae.parameters(), lr=lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.gamma, self.tau, self.expectile = gamma, tau, expectile
        self.min_v, self.max_v = statistics.value_bounds(gamma)

    def _target_q(self, feature, noise: bool):
        import torch

        latent = self.actor_t(feature)
        if noise:
            latent = latent + (torch.randn_like(latent) * 0.1).clamp(-0.2, 0.2)
        q1, q2 = self.critic_t(feature, self.vae_t.decode_latent(feature, latent))
        return torch.min(q1, q2)

    def step(self, batch) -> None:
        import torch
        import torch.nn.functional as F

        joint, next_joint = self.normalizer(batch.joint), self.normalizer(batch.next_joint)
        not_done = batch.not_done.reshape(-1, 1)
        feature = self.encoder(batch.image, joint)
        with torch.no_grad():
            next_feature = self.encoder_t(batch.next_image, next_joint)
            target_q = batch.reward + not_done * self.gamma * self.critic.v(next_feature)
            target_v = self._target_q(feature.detach(), noise=True)
        q1, q2 = self.critic(feature, batch.action)
        critic_loss = (F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
                       + F.mse_loss(self.critic.v(feature),
                                    target_v.clamp(self.min_v, self.max_v)))
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        feature = feature.detach()
        with torch.no_grad():
            advantage = (batch.reward + not_done * self.gamma
                         * self._target_q(next_feature, noise=False) - self.critic.v(feature))
            weight = torch.where(advantage > 0, self.expectile, 1 - self.expectile)
        reconstruction, _, mean, log_var = self.vae(feature, batch.action)
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1, keepdim=True)
        vae_loss = (weight * ((reconstruction - batch.action).pow(2).sum(1, keepdim=True)
                              + kl)).mean()
        self.vae_optimizer.zero_grad()
        vae_loss.backward()
        self.vae_optimizer.step()
        actor_loss = -self.critic.q1(
            feature, self.vae_t.decode_latent(feature, self.actor(feature))).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()
        with torch.no_grad():
            for online, target in self.targets:
                for p, t in zip(online.parameters(), target.parameters(), strict=True):
                    t.lerp_(p, self.tau)
        float(critic_loss.detach())  # one sync per step, as the agent's metrics


@dataclass
class Row:
    name: str
    overrides: dict | None  # MultimodalLatent overrides; None: the seed-equivalent update


FAST = {"autocast_dtype": "auto", "channels_last": True, "fused_adam": True}


def rows() -> list[Row]:
    return [
        Row("seed-equivalent update (fp32, NCHW, foreach Adam; baseline)", None),
        Row("MultimodalLatent, LAPO's weighting, its default compute (fp32, NCHW, foreach)",
            dict(LAPO_WEIGHTING)),
        Row("  + channels_last + fused Adam (the fp32 path)",
            {**LAPO_WEIGHTING, "channels_last": True, "fused_adam": True}),
        Row("  + bf16 autocast where native (every compute option)",
            {**LAPO_WEIGHTING, **FAST}),
        Row("shipped default agent, default compute (2 critic folds, VAE encoder gradient)",
            {}),
        Row("shipped default agent + every compute option", dict(FAST)),
    ]


def build_step(row: Row, config: ComparisonConfig, device):
    """(step function, what runs it) for ``row`` on a fresh network set."""
    from training_step import synthetic_statistics

    from lapo_ros.lapo.algorithms.lapo import MultimodalLatent

    statistics = synthetic_statistics()
    if row.overrides is None:
        seed = SeedUpdate(statistics, config.image_size, device)
        return seed.step, "fp32"
    agent = MultimodalLatent(action_dim=ACTION_DIM, device=device, statistics=statistics,
                             image_size=config.image_size, **row.overrides)
    return agent.train_step, agent.autocast_dtype or "fp32"


def flops_per_transition(step, batch, batch_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(batch)
    return counter.get_total_flops() / batch_size


def comparison_table(config: ComparisonConfig, device) -> Table:
    import torch
    from training_step import synthetic_batch

    size, batch_size = config.image_size, config.batch_size
    batch = synthetic_batch(batch_size, size, device)
    table = Table(
        f"Training step against the seed's update ({size}x{size}, batch {batch_size}, "
        f"device {device})",
        ["update", "runs in", "step median (ms)", "transitions/s", "GFLOP / transition",
         "vs seed (speed)", "vs seed per FLOP"],
    )
    chosen = rows()
    steps, precision, flops = {}, {}, {}
    for row in chosen:
        step, precision[row.name] = build_step(row, config, device)
        steps[row.name] = (lambda s=step: s(batch))
        flops[row.name] = flops_per_transition(step, batch, batch_size)
    timings = time_interleaved(steps, repeats=config.repeats, warmup=config.warmup,
                               synchronize=synchronizer(device))
    baseline = chosen[0].name
    seed_rate = batch_size / timings[baseline].p50
    for row in chosen:
        rate = batch_size / timings[row.name].p50
        table.add_row(row.name, precision[row.name], milliseconds(timings[row.name].p50),
                      f"{rate:.2f}", f"{flops[row.name] / 1e9:.1f}", ratio(rate, seed_rate),
                      ratio(rate * flops[row.name], seed_rate * flops[baseline]))
    table.notes += [
        f"{config.repeats} timed steps per row after {config.warmup} warm-up steps, rows "
        "round-robin; fresh networks per row (same seed); torch threads: "
        f"{torch.get_num_threads()}.",
        "vs seed per FLOP: (transitions/s x GFLOP per transition) against the seed's; the "
        "default agent does more per transition (two encoder + critic pairs, a second "
        "encoder pass for the VAE), so its speed ratio is below its per-FLOP ratio.",
    ]
    return table


# ---------------------------------------------------------------- allocator

ALLOCATOR_ROWS = (  # (name, keep freed memory, channels_last + fused Adam)
    ("as it comes (baseline)", False, False),
    ("training/train.py: keep freed memory (mallopt)", True, False),
    ("keep freed memory + channels_last + fused Adam (the fp32 path)", True, True),
)


def allocator_run(config: ComparisonConfig, device_name: str, tuned: bool,
                  fp32_path: bool) -> dict:
    """In this (fresh) process: the step time and minor page faults of MultimodalLatent with
    LAPO's weighting (the seed's work) in float32, NCHW unless ``fp32_path``."""
    from training_step import synthetic_batch, synthetic_statistics

    from lapo_ros.lapo.algorithms.lapo import MultimodalLatent
    from lapo_ros.lapo.training.allocator import keep_freed_memory

    applied = keep_freed_memory() if tuned else False
    device = resolve_device(device_name)
    agent = MultimodalLatent(action_dim=ACTION_DIM, device=device,
                             statistics=synthetic_statistics(), image_size=config.image_size,
                             **LAPO_WEIGHTING, channels_last=fp32_path, fused_adam=fp32_path)
    batch = synthetic_batch(config.batch_size, config.image_size, device)
    for _ in range(config.warmup):
        agent.train_step(batch)
    times, faults = [], []
    for _ in range(config.allocator_steps):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        agent.train_step(batch)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(after.ru_minflt - before.ru_minflt)
    return {"applied": applied, "times": times, "faults": faults}


def allocator_table(config: ComparisonConfig, device_name: str, quick: bool) -> Table:
    """Alternate fresh processes: glibc as it comes, as the training CLI sets it, and that
    with the float32 path's options."""
    samples = {name: {"times": [], "faults": []} for name, *_ in ALLOCATOR_ROWS}
    applied = False
    for _ in range(config.allocator_rounds):
        for name, tuned, fp32_path in ALLOCATOR_ROWS:
            argv = [sys.executable, __file__, "--allocator-run", json.dumps([tuned, fp32_path]),
                    "--device", device_name, *(["--quick"] if quick else [])]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                raise BenchmarkError(f"allocator run: {done.stderr.strip()[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            samples[name]["times"] += result["times"]
            samples[name]["faults"] += result["faults"]
            applied = applied or result["applied"]

    def median(values):
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    table = Table(
        f"Allocator: MultimodalLatent step, LAPO's weighting, fp32 ({config.image_size}x"
        f"{config.image_size}, batch {config.batch_size}), fresh processes alternating",
        ["glibc malloc", "step median (ms)", "minor page faults / step", "vs as it comes"],
    )
    base = median(samples[ALLOCATOR_ROWS[0][0]]["times"])
    for name, *_ in ALLOCATOR_ROWS:
        table.add_row(name, milliseconds(median(samples[name]["times"])),
                      f"{median(samples[name]['faults']):,}",
                      ratio(base, median(samples[name]["times"])))
    table.notes.append(
        f"{config.allocator_rounds} process(es) per row, {config.allocator_steps} timed "
        f"steps each after {config.warmup} warm-up steps; "
        + ("mallopt applied." if applied else "mallopt NOT applied: not glibc."))
    return table


def parse_args(argv):
    parser = benchmark_parser(__doc__.splitlines()[0], device=True)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--allocator-run", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick_threads(args.quick)
    base = QUICK if args.quick else FULL
    config = ComparisonConfig(**{**base.__dict__,
                                 **({"batch_size": args.batch_size} if args.batch_size else {}),
                                 **({"image_size": args.image_size} if args.image_size else {})})
    if args.allocator_run is not None:
        print(json.dumps(allocator_run(config, args.device, *json.loads(args.allocator_run))))
        return 0
    tables = [comparison_table(config, resolve_device(args.device)),
              allocator_table(config, args.device, args.quick)]
    if args.quick:
        for table in tables:
            table.notes.append(QUICK_NOTE)
    emit(tables, args.out, None if argv is None else [sys.argv[0], *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
