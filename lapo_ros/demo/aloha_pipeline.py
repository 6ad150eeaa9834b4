"""``make demo-aloha``: the whole chain on a gym-aloha scene (transfer cube by default).

    python -m lapo_ros.demo.aloha_pipeline --out demo_aloha_output [--quick]
        [--task transfer_cube|insertion]

1. record scripted demonstrations (expert, noisy, wrong grasp, drop) as ros2 bags
2. ``bag_to_hdf5`` them (success labels from ``labels.yaml``; 50 Hz; ALOHA's joint names)
3. train LAPO and the behaviour-cloning baseline (``training/train.py``'s trainer)
4. export both as ONNX policy files
5. run each in closed loop: ALOHA sim node + ``policy_node`` (``config/aloha_policy.yaml``)
   over DDS, on object placements unseen in the demonstrations
6. print a table of success and highest reward stage per episode, and latency

The defaults fit 2 CPU cores in under 30 minutes with small images and budget, where near-0
closed-loop success is expected; ``GPU_SCALE`` (shown by ``--help``) is the command of a real
learning run and its cost. Requires the optional extra ``lapo_ros[aloha]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lapo_ros.demo.aloha_demonstrations import (
    AlohaDemoConfig,
    aloha_conversion_config,
    record_aloha_bags,
)
from lapo_ros.demo.pipeline import ALGORITHMS, DemoSettings, stage, train_policy
from lapo_ros.sim.aloha.closed_loop import (
    AlohaClosedLoopConfig,
    AlohaClosedLoopResult,
    run_aloha_closed_loop,
)
from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv
from lapo_ros.sim.aloha.experts import EXPERTS, make_expert
from lapo_ros.sim.aloha.rollout import run_episode

EVAL_SEED = 10_000
GPU_SCALE = """\
At GPU scale (a real learning run):
  python -m lapo_ros.demo.aloha_pipeline --episodes 50 --camera-size 240 320 \\
      --image-size 224 --train-steps 100000 --eval-episodes 50
Expected cost, from the parts measured on a 2-core CPU (BENCHMARKS.md): recording 50 x 400
steps at 63 ms per three-camera render, about 21 min; the closed loop 2 x 50 episodes of 400
steps at 10 Hz, 67 min; training 100000 steps each of LAPO and BC at batch 32, which needs
the GPU: one 224 px LAPO step of batch 16 takes 8.8 s on a CPU core (10 days per 100000)
and its GPU time is not measured yet: add 100000 x LAPO's GPU step time, and a third of
that for BC (LAPO's step costs 3.4-3.8x BC's)."""


@dataclass
class AlohaDemoSettings:
    """Sizes of one ALOHA demo run; ``quick`` shrinks everything to a smoke run."""

    episodes: int = 20  # demonstrations: 40% expert, 20% each noisy, wrong_grasp, drop
    camera_size: tuple[int, int] = (48, 64)  # (H, W) of the sim's cameras
    image_size: int = 32  # side the dataset and the encoder use
    train_steps: int = 1000
    batch_size: int = 32
    eval_episodes: int = 5  # closed-loop episodes per policy
    max_steps: int = 400  # episode length (ACT's)
    rate_hz: float = 10.0  # closed-loop ticks per second (the sim's steps stay 20 ms)
    algorithms: tuple[str, ...] = ("lapo", "bc")
    seed: int = 0
    task: str = "transfer_cube"  # or "insertion"

    @classmethod
    def quick(cls) -> AlohaDemoSettings:
        return cls(episodes=4, camera_size=(24, 32), image_size=24, train_steps=20,
                   batch_size=8, eval_episodes=1, max_steps=40, rate_hz=20.0)

    def sim(self) -> AlohaSimConfig:
        return AlohaSimConfig(task=self.task, image_size=tuple(self.camera_size),
                              max_steps=self.max_steps)

    def demo_config(self) -> AlohaDemoConfig:
        return AlohaDemoConfig.mixed(self.episodes, self.seed, self.sim())


def expert_reference(sim: AlohaSimConfig, episodes: int, seed: int) -> float:
    """The scripted expert's success rate on the evaluation placements (in process)."""
    with AlohaSimEnv(AlohaSimConfig(task=sim.task, image_size=None,
                                    max_steps=sim.max_steps)) as env:
        expert = make_expert(env, "expert", np.random.default_rng(seed))
        return float(np.mean([run_episode(env, expert, seed + i).success
                              for i in range(episodes)]))


def result_row(name: str, result: AlohaClosedLoopResult) -> dict:
    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if values.size else float("nan")

    return {"policy": name, "success_rate": result.success_rate,
            "stage_counts": result.stage_counts(), "episodes": len(result.episodes),
            "latency_p50_ms": pct(result.latency_ms, 50),
            "latency_p95_ms": pct(result.latency_ms, 95),
            "inference_p50_ms": pct(result.inference_ms, 50),
            "skipped_ticks": result.skipped_ticks}


def markdown_table(rows: list[dict], expert: float) -> str:
    lines = ["| policy | success | episodes by highest stage 0/1/2/3/4 | "
             "latency p50 / p95 (ms) | inference p50 (ms) |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['policy']} (ONNX, policy_node over DDS) | {row['success_rate']:.0%} of "
            f"{row['episodes']} | {'/'.join(str(n) for n in row['stage_counts'])} | "
            f"{row['latency_p50_ms']:.1f} / {row['latency_p95_ms']:.1f} | "
            f"{row['inference_p50_ms']:.1f} |")
    lines.append(f"| scripted expert (in-process reference) | {expert:.0%} | - | - | - |")
    return "\n".join(lines)


def run(out: Path, settings: AlohaDemoSettings) -> str:
    """The whole ALOHA demo into ``out`` (replaced); returns the results table (markdown)."""
    from lapo_ros.bags.config import config_from_dict
    from lapo_ros.bags.convert import convert_bags
    from lapo_ros.lapo.export import export_checkpoint

    started = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sim = settings.sim()

    stage(1, "recording ALOHA demonstrations as ros2 bags")
    bags = record_aloha_bags(out / "bags", settings.demo_config(), progress=lambda e: print(
        f"  {e.kind} (seed {e.seed}): highest stage {int(e.reward.max())}", file=sys.stderr,
        flush=True))
    kinds = {kind: bags.kinds.count(kind) for kind in sorted(set(bags.kinds))}

    stage(2, "bag_to_hdf5")
    data = out / "data.hdf5"
    conversion = aloha_conversion_config(sim, bags.labels_file.resolve())
    conversion["image_size"] = [settings.image_size, settings.image_size]
    convert_bags(bags.bags, data, config_from_dict(conversion, "ALOHA demo pipeline"),
                 show_progress=True)

    stage(3, "training")
    training = DemoSettings(train_steps=settings.train_steps, batch_size=settings.batch_size,
                            image_size=settings.image_size, seed=settings.seed)
    checkpoints = {algo: train_policy(algo, data, out / "runs" / algo, training)
                   for algo in settings.algorithms}

    stage(4, "exporting ONNX policies")
    policies = {}
    for algo in settings.algorithms:
        policies[algo] = out / f"policy_{algo}.onnx"
        export_checkpoint(checkpoints[algo], policies[algo])

    stage(5, "closed loop: ALOHA sim node + policy_node over DDS")
    results = {algo: run_aloha_closed_loop(AlohaClosedLoopConfig(
        model_path=policies[algo], episodes=settings.eval_episodes, seed=EVAL_SEED, sim=sim,
        rate_hz=settings.rate_hz), progress=lambda ok, algo=algo: print(
            f"  {ALGORITHMS[algo]}: {'success' if ok else 'failure'}", file=sys.stderr,
            flush=True)) for algo in settings.algorithms}
    expert = expert_reference(sim, settings.eval_episodes, EVAL_SEED)

    stage(6, "results")
    rows = [result_row(ALGORITHMS[algo], results[algo]) for algo in settings.algorithms]
    table = markdown_table(rows, expert)
    elapsed = time.monotonic() - started
    (out / "results.json").write_text(json.dumps({
        "settings": asdict(settings), "demonstrations": kinds,
        "demonstration_success_rate": float(np.mean(bags.successes)),
        "expert_success_rate": expert, "results": rows, "wall_s": elapsed}, indent=2))
    report = (f"{table}\n\nDemonstrations: {settings.episodes} episodes {kinds}, "
              f"{np.mean(bags.successes):.0%} successful; {settings.train_steps} training steps "
              f"at {settings.image_size} px (cameras {settings.camera_size[0]}x"
              f"{settings.camera_size[1]}); evaluation placements unseen in training. "
              f"Total time {elapsed / 60:.1f} min.")
    (out / "results.md").write_text(report + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=GPU_SCALE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_aloha_output"),
                        help="output folder (replaced)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--task", choices=EXPERTS, help="the scene (default transfer_cube)")
    parser.add_argument("--episodes", type=int, help="demonstrations to record")
    parser.add_argument("--camera-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--image-size", type=int, help="dataset/encoder image side (px)")
    parser.add_argument("--train-steps", type=int, help="gradient steps per policy")
    parser.add_argument("--eval-episodes", type=int, help="closed-loop episodes per policy")
    args = parser.parse_args(argv)
    settings = AlohaDemoSettings.quick() if args.quick else AlohaDemoSettings()
    for name in ("episodes", "image_size", "train_steps", "eval_episodes"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
            setattr(settings, name, value)
    if args.task is not None:
        settings.task = args.task
    if args.camera_size is not None:
        if min(args.camera_size) < 1:
            parser.error(f"--camera-size must be >= 1, got {args.camera_size}")
        settings.camera_size = tuple(args.camera_size)
    print(run(args.out, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
