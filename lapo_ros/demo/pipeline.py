"""``make demo``: the whole chain on the simulated arm, with a progress bar per stage.

    python -m lapo_ros.demo.pipeline --out demo_output [--quick]

1. record heterogeneous demonstrations (expert, noisy, wrong-target) as ros2 bags
2. ``bag_to_hdf5`` them into one HDF5 dataset (per-step rewards from the ``/reward`` topic)
3. train LAPO and the behaviour-cloning baseline on it (``training/train.py``'s trainer)
4. export both as ONNX policy files (``training/export.py``'s exporter)
5. run each in closed loop: sim node + ``policy_node`` over DDS, on unseen target layouts
6. print a table of success rate and latency; save it and plots under ``--out``
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lapo_ros.demo.demonstrations import DemoMix, conversion_config, record_demonstration_bags
from lapo_ros.sim import DualArmReachEnv, SimConfig
from lapo_ros.sim.closed_loop import ClosedLoopConfig, ClosedLoopResult, run_closed_loop
from lapo_ros.sim.experts import DemonstratorConfig, ScriptedDemonstrator

ALGORITHMS = {"lapo": "LAPO", "bc": "BC"}


@dataclass
class DemoSettings:
    """Sizes of one demo run; ``quick`` shrinks everything to a smoke run."""

    episodes: int = 60  # demonstrations recorded
    camera_size: int = 64  # side of the simulated camera images (px)
    image_size: int = 32  # side the dataset and the encoder use (resize_rgb, INTER_AREA)
    train_steps: int = 1000  # the learning benchmark's budget (BENCHMARKS.md)
    batch_size: int = 32
    eval_episodes: int = 10  # closed-loop episodes per policy
    algorithms: tuple[str, ...] = ("lapo", "bc")
    fractions: dict[str, float] = field(
        default_factory=lambda: {"expert": 0.3, "noisy": 0.15, "wrong_target": 0.55})
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(episodes=8, camera_size=48, image_size=32, train_steps=20, batch_size=8,
                   eval_episodes=2)

    def sim(self) -> SimConfig:
        return SimConfig(image_size=(self.camera_size, self.camera_size))


def stage(number: int, title: str) -> None:
    print(f"\n[{number}/6] {title}", file=sys.stderr, flush=True)


def expert_success(sim: SimConfig, episodes: int, seed: int) -> float:
    """Success rate of the scripted expert on the evaluation layouts (in-process reference)."""
    env = DualArmReachEnv(sim)
    successes = 0
    for index in range(episodes):
        env.reset(seed + index)
        expert = ScriptedDemonstrator(env, DemonstratorConfig(), np.random.default_rng(index))
        expert.reset()
        while True:
            _, _, terminated, truncated, info = env.step(expert.act(env.joints))
            if terminated or truncated:
                break
        successes += info["success"]
    return successes / episodes


def train_policy(algo: str, data: Path, run_dir: Path, settings: DemoSettings) -> Path:
    """Train ``algo`` on ``data`` into ``run_dir``; return the final checkpoint."""
    from lapo_ros.lapo.training.config import TrainConfig
    from lapo_ros.lapo.training.trainer import train

    config = TrainConfig(
        data=[str(data)], out=str(run_dir), algo=algo, steps=settings.train_steps,
        batch_size=settings.batch_size, image_size=settings.image_size, device="auto",
        seed=settings.seed, num_workers=0, val_fraction=0.1,
        val_every=max(1, settings.train_steps // 4), val_batches=2,
        checkpoint_every=settings.train_steps, log_every=max(1, settings.train_steps // 40),
        agent={})  # the default agent (LAPOConfig(), as config/train.yaml)
    return train(config.validate("demo pipeline")).last_checkpoint


def result_row(name: str, result: ClosedLoopResult) -> dict:
    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if values.size else float("nan")

    return {
        "policy": name, "success_rate": result.success_rate,
        "failure_rate": float(np.mean(result.failures)) if result.failures else 0.0,
        "mean_steps": float(np.mean(result.steps)) if result.steps else float("nan"),
        "latency_p50_ms": pct(result.latency_ms, 50), "latency_p95_ms": pct(result.latency_ms, 95),
        "inference_p50_ms": pct(result.inference_ms, 50), "skipped_ticks": result.skipped_ticks,
        "episodes": len(result.successes),
    }


def markdown_table(rows: list[dict], expert: float) -> str:
    lines = ["| policy | success | touched blue | mean steps | latency p50 / p95 (ms) | "
             "inference p50 (ms) |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['policy']} (ONNX, policy_node over DDS) | {row['success_rate']:.0%} "
            f"of {row['episodes']} | {row['failure_rate']:.0%} | {row['mean_steps']:.1f} | "
            f"{row['latency_p50_ms']:.1f} / {row['latency_p95_ms']:.1f} | "
            f"{row['inference_p50_ms']:.1f} |")
    lines.append(f"| scripted expert (in-process reference) | {expert:.0%} | - | - | - | - |")
    return "\n".join(lines)


def save_plots(out: Path, runs: dict[str, Path], rows: list[dict],
               results: dict[str, ClosedLoopResult], expert: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    written = []
    panels = (("train/vae_loss", "train/bc_loss"), ("train/critic_loss",),
              ("val/action_mse_normalized",))
    fig, axes = plt.subplots(1, len(panels), figsize=(14, 3.5))
    for algo, run_dir in runs.items():
        metrics = _read_metrics(run_dir / "metrics.csv")
        for axis, keys in zip(axes, panels, strict=True):
            for key in keys:
                if key in metrics:
                    axis.plot(*metrics[key], marker=".", label=f"{ALGORITHMS[algo]} {key}")
    titles = ("policy loss (LAPO: weighted VAE, BC: MSE)", "LAPO critic loss",
              "held-out action MSE (normalised)")
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title)
        axis.set_xlabel("step")
        if axis.lines:
            axis.legend(fontsize=7)
    fig.tight_layout()
    written.append(plots / "training.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    names = [row["policy"] for row in rows] + ["expert"]
    axes[0].bar(names, [row["success_rate"] for row in rows] + [expert], color="tab:green")
    axes[0].set_ylim(0, 1)
    axes[0].set_title("closed-loop success rate")
    for name, result in results.items():
        if result.latency_ms.size:
            axes[1].hist(result.latency_ms, bins=30, alpha=0.6, label=ALGORITHMS[name])
    axes[1].set_xlabel("sensor stamp -> command published (ms)")
    axes[1].set_title("policy_node latency")
    axes[1].legend()
    fig.tight_layout()
    written.append(plots / "closed_loop.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)
    return written


def _read_metrics(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    if not path.exists():
        return series
    with open(path) as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key != "step" and value not in ("", None):
                    steps, values = series.setdefault(key, ([], []))
                    steps.append(float(row["step"]))
                    values.append(float(value))
    return series


def run(out: Path, settings: DemoSettings) -> str:
    """The whole demo into ``out``; returns the results table (markdown)."""
    from lapo_ros.bags.config import config_from_dict
    from lapo_ros.bags.convert import convert_bags
    from lapo_ros.lapo.export import export_checkpoint

    started = time.monotonic()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sim = settings.sim()
    mix = DemoMix(episodes=settings.episodes, fractions=settings.fractions, seed=settings.seed)

    stage(1, "recording demonstrations as ros2 bags")
    with tqdm(total=settings.episodes, desc="bags", unit="episode") as bar:
        bags = record_demonstration_bags(
            out / "bags", mix, sim,
            progress=lambda episode: (bar.update(1), bar.set_postfix_str(episode.kind)))
    kinds = {kind: bags.kinds.count(kind) for kind in sorted(set(bags.kinds))}

    stage(2, "bag_to_hdf5")
    data = out / "data.hdf5"
    size = (settings.image_size, settings.image_size)
    convert_bags(bags.bags, data,
                 config_from_dict(conversion_config(sim, size), "demo pipeline"),
                 show_progress=True)

    stage(3, "training")
    runs, checkpoints = {}, {}
    for algo in settings.algorithms:
        runs[algo] = out / "runs" / algo
        checkpoints[algo] = train_policy(algo, data, runs[algo], settings)

    stage(4, "exporting ONNX policies")
    policies = {}
    for algo in tqdm(settings.algorithms, desc="export", unit="policy"):
        policies[algo] = out / f"policy_{algo}.onnx"
        export_checkpoint(checkpoints[algo], policies[algo])

    stage(5, "closed loop: sim node + policy_node over DDS")
    eval_seed = 10_000
    results = {}
    for algo in settings.algorithms:
        with tqdm(total=settings.eval_episodes, desc=f"closed loop {ALGORITHMS[algo]}",
                  unit="episode") as bar:
            successes = []

            def advance(success: bool, bar=bar, successes=successes) -> None:
                successes.append(success)
                bar.update(1)
                bar.set_postfix_str(f"success {np.mean(successes):.0%}")

            results[algo] = run_closed_loop(ClosedLoopConfig(
                model_path=policies[algo], episodes=settings.eval_episodes, seed=eval_seed,
                sim=sim), progress=advance)
    expert = expert_success(sim, settings.eval_episodes, eval_seed)

    stage(6, "results")
    rows = [result_row(ALGORITHMS[algo], results[algo]) for algo in settings.algorithms]
    table = markdown_table(rows, expert)
    plots = save_plots(out, runs, rows, results, expert)
    elapsed = time.monotonic() - started
    summary = {"settings": asdict(settings), "demonstrations": kinds,
               "demonstration_success_rate": float(np.mean(bags.successes)),
               "expert_success_rate": expert, "results": rows, "wall_s": elapsed}
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    report = (f"{table}\n\nDemonstrations: {settings.episodes} episodes {kinds}, "
              f"{np.mean(bags.successes):.0%} successful; {settings.train_steps} training steps "
              f"at {settings.image_size} px (cameras {settings.camera_size} px); evaluation "
              f"layouts unseen in training.\n"
              f"Plots: {', '.join(str(p) for p in plots)}. Total time {elapsed / 60:.1f} min.")
    (out / "results.md").write_text(report + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="output folder (replaced)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in ~1-2 min")
    parser.add_argument("--episodes", type=int, help="demonstrations to record")
    parser.add_argument("--train-steps", type=int, help="gradient steps per policy")
    parser.add_argument("--eval-episodes", type=int, help="closed-loop episodes per policy")
    parser.add_argument("--image-size", type=int, help="dataset/encoder image side (px)")
    parser.add_argument("--camera-size", type=int, help="simulated camera image side (px)")
    args = parser.parse_args(argv)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    for name in ("episodes", "train_steps", "eval_episodes", "image_size", "camera_size"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                parser.error(f"--{name.replace('_', '-')} must be >= 1")
            setattr(settings, name, value)
    print(run(args.out, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
