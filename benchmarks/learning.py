#!/usr/bin/env python3
"""LAPO vs behaviour cloning on the simulated reach task: closed-loop success rates.

Same encoder (ResNet18, 9-channel), same data and same number of steps for both; BC is
MSE regression (``lapo_ros.lapo.algorithms.bc``). Two datasets of scripted demonstrations:
``expert`` (expert only) and ``heterogeneous`` (expert, noisy and wrong-target, the mix
of the demo). Each policy is run in closed loop in the sim (in-process, no DDS, for speed)
on target layouts unseen in training; the scripted expert on the same layouts is the
baseline of the run. Both train through the trainer of ``training/train.py`` with
``--config`` (default: the shipped ``config/train.yaml``, i.e. what users get: LAPO its
``agent:`` section, BC its ``bc:`` section), ``--lapo-set`` on top for an ablation.
Targets (issue 15): heterogeneous LAPO >= 1.3x BC and >= 0.8x expert; expert-data LAPO
no worse than BC. ``--chunk-size H`` trains both on action chunks of H steps (issue 16)
and runs each chunk policy as the node does (``lapo_ros.robot.chunk_execution``), once
per ``--chunk-executions`` mode (default: temporal ensemble and open loop).

    python benchmarks/learning.py [--quick] [--out FILE.md] [--seeds 3] [--first-seed 0]
                                  [--steps 1000]
                                  [--episodes 80] [--datasets expert heterogeneous]
                                  [--config config/train.yaml] [--lapo-set KEY=VALUE ...]
                                  [--progress-scale 1.0] [--advantages] [--prior-mean]
                                  [--oracle-weights]
                                  [--chunk-size 1] [--chunk-executions MODE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table, add_repo_to_path, benchmark_parser, emit, ratio  # noqa: E402

add_repo_to_path()

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from lapo_ros.dataset.layout import write_episodes  # noqa: E402
from lapo_ros.demo.demonstrations import DemoMix, iter_demonstrations  # noqa: E402
from lapo_ros.demo.pipeline import expert_success  # noqa: E402
from lapo_ros.robot.chunk_execution import CHUNK_EXECUTIONS, ChunkExecution  # noqa: E402
from lapo_ros.sim import JOINT_NAMES, DualArmReachEnv, SimConfig  # noqa: E402
from lapo_ros.sim.task import TaskConfig  # noqa: E402

DATASETS = {
    "expert": {"expert": 1.0},
    "heterogeneous": {"expert": 0.3, "noisy": 0.15, "wrong_target": 0.55},
}
# heterogeneous without its wrong-target share: an oracle-filtered reference (opt-in)
REFERENCE_DATASETS = {"successful": {"expert": 0.3, "noisy": 0.15}}
EVAL_SEED = 10_000
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "config" / "train.yaml"


def make_dataset(path: Path, fractions: dict[str, float], episodes: int, sim: SimConfig,
                 seed: int) -> tuple[list[bool], list[str]]:
    """Write demonstrations straight to HDF5 (the bag path is the demo's); return each
    episode's outcome (success) and demonstrator kind."""
    recorded = list(iter_demonstrations(DemoMix(episodes, fractions, seed), sim))
    write_episodes(path, [e.to_episode() for e in recorded], joint_names=JOINT_NAMES,
                   rate_hz=sim.rate_hz)
    return [bool(e.success) for e in recorded], [e.kind for e in recorded]


def advantages_by_kind(agent, parts, kinds: list[str], first_steps: int = 5,
                       batch_size: int = 256) -> dict[str, dict[str, float]]:
    """LAPO's one-step advantage and V(s) over every transition of the trainer's ``parts``
    (its training and held-out buffers: each transition is read with the episode index the
    update gave it, so from its held-out critic fold), averaged per demonstrator kind: over
    all steps and over each episode's first ``first_steps`` (where the demonstrators part
    ways) and on its first step alone (where they all start alike: ``advantage_scope``
    "episode" weighs a whole episode by that step's sign); and the share of its episodes
    whose mean advantage is positive."""
    import torch

    from lapo_ros.lapo.data.buffer import raw_to_batch

    kind, step, episode, advantage, value = [], [], [], [], []
    for part in parts:
        sampler = part.sampler(discount=agent.return_discount)
        table = sampler.table
        parent = np.asarray(part.parent_episode_indices)[table.episode]
        kind.append(np.asarray(kinds)[parent])
        step.append(table.step)
        episode.append(parent)
        for start in range(0, len(table), batch_size):
            rows = np.arange(start, min(start + batch_size, len(table)))
            raw = sampler.fill(rows, sampler.allocate(len(rows)))
            a, v = agent.evaluate_advantages(raw_to_batch(raw, torch.device("cpu"),
                                                          sampler.layout))
            advantage.append(a.squeeze(1).cpu().numpy())
            value.append(v.squeeze(1).cpu().numpy())
    kind, step, episode = np.concatenate(kind), np.concatenate(step), np.concatenate(episode)
    advantage, value = np.concatenate(advantage), np.concatenate(value)
    episode_mean = (np.bincount(episode, weights=advantage, minlength=len(kinds))
                    / np.maximum(np.bincount(episode, minlength=len(kinds)), 1))
    result = {}
    for name in sorted(set(kinds)):
        every, first = kind == name, (kind == name) & (step < first_steps)
        result[name] = {"advantage": float(advantage[every].mean()),
                        "positive": float((advantage[every] > 0).mean()),
                        "first_advantage": float(advantage[first].mean()),
                        "first_positive": float((advantage[first] > 0).mean()),
                        "first_value": float(value[first].mean()),
                        "start_positive": float((advantage[first & (step == 0)] > 0).mean()),
                        "episode_positive": float(
                            (episode_mean[np.asarray(kinds) == name] > 0).mean())}
    return result


@contextlib.contextmanager
def vae_weight_log():
    """Record every LAPO update's (update index, episode, VAE weight) rows while open."""
    from lapo_ros.lapo.algorithms.lapo import MultimodalLatent

    log: list[tuple[int, np.ndarray, np.ndarray]] = []
    update = MultimodalLatent.update

    def logged(agent, batch):
        record = update(agent, batch)
        if batch.episode is not None:
            log.append((agent.total_it - 1, batch.episode.cpu().numpy(),
                        record.advantages.weight[:, 0].cpu().numpy()))
        return record

    MultimodalLatent.update = logged
    try:
        yield log
    finally:
        MultimodalLatent.update = update


@contextlib.contextmanager
def oracle_weights(successes: list[bool]):
    """While open, LAPO's VAE weights come from the demonstrations' recorded outcomes, not
    from its critics: the expectile where a transition's episode succeeded, 1 - it
    elsewhere (everything else of the update unchanged). A diagnostic, not an agent
    option: how far the policy gets when the weights are right. Call the yielded function
    with each trainer's training split before it trains (batches index that split)."""
    import torch

    from lapo_ros.lapo.algorithms.lapo import Advantages, MultimodalLatent

    advantages = MultimodalLatent.advantages
    table: dict[int, torch.Tensor] = {}  # id(agent) -> success per training-split episode

    def use_split(agent, parent_episodes: list[int]) -> None:
        table[id(agent)] = torch.tensor([successes[e] for e in parent_episodes])

    def oracle(agent, x, features, next_features, track=True):
        computed = advantages(agent, x, features, next_features, track)
        if x.episode is None:
            raise ValueError("--oracle-weights needs batches with episode indices "
                             "(advantage_scope 'episode' or critic_folds > 1)")
        succeeded = table[id(agent)].to(x.episode.device)[x.episode][:, None]
        expectile = agent.config.expectile
        weight = torch.where(succeeded, expectile, 1.0 - expectile).to(computed.weight)
        scored = torch.where(succeeded, 1.0, -1.0).to(computed.scored)
        return Advantages(advantage=computed.advantage, scored=scored, weight=weight)

    MultimodalLatent.advantages = oracle
    try:
        yield use_split
    finally:
        MultimodalLatent.advantages = advantages


def weight_shares(log, parent_episodes: list[int], kinds: list[str], steps: int,
                  phases: int = 4) -> dict[str, list[float]]:
    """Each demonstrator kind's share of the VAE's total weight in each quarter of training
    (from ``vae_weight_log``; batches index the trainer's training split)."""
    kind_of = np.asarray(kinds)[np.asarray(parent_episodes)]
    shares = {name: [] for name in sorted(set(kinds))}
    for phase in range(phases):
        low, high = phase * steps / phases, (phase + 1) * steps / phases
        rows = [(kind_of[e], w) for it, e, w in log if low <= it < high]
        kind = np.concatenate([k for k, _ in rows]) if rows else np.array([], dtype=str)
        weight = np.concatenate([w for _, w in rows]) if rows else np.zeros(0)
        for name in shares:
            shares[name].append(float(weight[kind == name].sum() / max(weight.sum(), 1e-12)))
    return shares


def train_agent(algo: str, data: Path, run_dir: Path, config: Path, overrides: dict,
                before_run=None):
    """Train through the product's trainer (``training/train.py``'s code path) with ``config``
    and the benchmark's ``overrides``; the trainer after its run (its agent as written to
    last.pt, its training and held-out buffers). ``before_run(trainer)`` runs before the
    first step."""
    from lapo_ros.lapo.training.config import load_train_config
    from lapo_ros.lapo.training.trainer import Trainer

    trainer = Trainer(load_train_config(config, {**overrides, "algo": algo,
                                                 "data": [str(data)], "out": str(run_dir)}))
    if before_run is not None:
        before_run(trainer)
    trainer.run()
    return trainer


def prior_mean_policy(agent):
    """LAPO's deployed policy with the actor's latent replaced by the prior's mean (z = 0):
    the advantage-weighted VAE's decoder alone."""
    import torch

    class PriorMean(torch.nn.Module):
        def forward(self, feature: torch.Tensor) -> torch.Tensor:
            return feature.new_zeros(feature.shape[0], agent.latent_dim)

    policy = agent.deployable_policy()
    policy.head.actor = PriorMean()
    return policy


def closed_loop_success(agent, sim: SimConfig, episodes: int, policy=None,
                        execution: str = "temporal_ensemble") -> tuple[float, float, float]:
    """(success rate, blue-touch rate, mean final fingertip distance to the red target in cm)
    of ``agent``'s greedy action, or of ``policy`` (a ``DeployablePolicy``) when given; a
    chunk policy's chunks are played by ``ChunkExecution(execution)``, as the node plays them."""
    import torch

    from lapo_ros.lapo.models.policy import observation_arrays

    def predict(obs) -> np.ndarray:
        if policy is None:
            return agent.select_action(obs["left"], obs["right"], obs["global"], obs["joint"])
        image, joint = observation_arrays(obs["left"], obs["right"], obs["global"],
                                          obs["joint"], agent.config.image_size,
                                          policy.joint_dim)
        with torch.no_grad():
            return policy(torch.from_numpy(image)[None], torch.from_numpy(joint)[None])[0].numpy()

    chunks = ChunkExecution(execution, agent.chunk_size)
    env = DualArmReachEnv(sim)
    successes, failures, distances = 0, 0, []
    for index in range(episodes):
        obs, _ = env.reset(EVAL_SEED + index)
        chunks.reset()
        while True:
            if chunks.needs_policy():
                chunks.add(predict(obs).reshape(agent.chunk_size, -1))
            action = chunks.next_action()
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        successes += info["success"]
        failures += info["failure"]
        distances.append(100.0 * info["goal_distance"])
    return successes / episodes, failures / episodes, float(np.mean(distances))


def target_notes(means: dict[tuple, float], expert: float) -> list[str]:
    """Whether the issue's targets are met by the measured mean success rates."""
    notes = []
    if {("heterogeneous", "lapo"), ("heterogeneous", "bc")} <= set(means):
        lapo, bc = means["heterogeneous", "lapo"], means["heterogeneous", "bc"]
        vs_bc = "met" if lapo > 0 and lapo >= 1.3 * bc else "NOT met"
        vs_expert = "met" if lapo >= 0.8 * expert else "NOT met"
        notes.append(f"Target heterogeneous LAPO >= 1.3x BC: {vs_bc}; >= 0.8x expert: "
                     f"{vs_expert}.")
    if {("expert", "lapo"), ("expert", "bc")} <= set(means):
        met = means["expert", "lapo"] >= means["expert", "bc"]
        notes.append(f"Target expert-data LAPO >= BC: {'met' if met else 'NOT met'}.")
    return notes


def lapo_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` (VALUE read as YAML) -> (key, value); the agent checks the key."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (the shipped config reads as such)."""
    try:
        return str(path.resolve().relative_to(SHIPPED_CONFIG.parents[1]))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.split("\n\n")[0], device=True)
    parser.add_argument("--seeds", type=int, help="training seeds per cell (default 3; quick 1)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="training seeds run from this one (default 0; to split seeds over "
                        "processes, each with its own BC baseline)")
    parser.add_argument("--steps", type=int, help="gradient steps per policy")
    parser.add_argument("--episodes", type=int, help="demonstrations per dataset")
    parser.add_argument("--eval-episodes", type=int, help="closed-loop episodes per policy")
    parser.add_argument("--image-size", type=int, help="camera/encoder image side (px)")
    parser.add_argument("--progress-scale", type=float, default=TaskConfig.progress_scale,
                        help="reward per metre of approach to the red target (default "
                        "%(default)s; the outcome's reward is +-1)")
    parser.add_argument("--config", type=Path, default=SHIPPED_CONFIG,
                        help="training config whose agent: section LAPO runs with (default: "
                        "the shipped config/train.yaml)")
    parser.add_argument("--lapo-set", type=lapo_option, action="append", default=[],
                        metavar="KEY=VALUE", help="override one agent setting (LAPOConfig "
                        "field) for an ablation, e.g. encoder_action_weight=0")
    parser.add_argument("--datasets", nargs="+", choices=sorted({**DATASETS,
                                                                 **REFERENCE_DATASETS}),
                        default=list(DATASETS), help="datasets to run (default: expert and "
                        "heterogeneous)")
    parser.add_argument("--algorithms", nargs="+", choices=["bc", "lapo"],
                        default=["bc", "lapo"], help="algorithms to run (default both)")
    parser.add_argument("--advantages", action="store_true",
                        help="add tables of each LAPO's advantages per demonstrator kind after "
                        "training and of each kind's share of the VAE's weight during it")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="train LAPO and BC on action chunks of this many steps (both "
                        "agents' chunk_size; default: the config's)")
    parser.add_argument("--chunk-executions", nargs="+", choices=CHUNK_EXECUTIONS,
                        default=list(CHUNK_EXECUTIONS), help="how chunk policies run in the "
                        "closed loop, one row each (default both; chunk_size 1: one row)")
    parser.add_argument("--oracle-weights", action="store_true",
                        help="diagnostic: LAPO's VAE weights from the demonstrations' recorded "
                        "outcomes instead of its critics (the ceiling of right weights)")
    parser.add_argument("--prior-mean", action="store_true",
                        help="add a column: LAPO's success with the decoder at z = 0 (the "
                        "prior's mean instead of the actor's latent: the weighted VAE alone)")
    args = parser.parse_args(argv)
    from lapo_ros.lapo.training.config import TrainConfigError, load_train_config

    try:  # a misspelt or invalid setting fails here, not after the first BC runs
        load_train_config(args.config, {"data": ["-"], "out": "-", "agent": dict(args.lapo_set)})
    except TrainConfigError as error:
        parser.error(f"{error} (--config + --lapo-set)")
    quick = {"seeds": 1, "steps": 4, "episodes": 6, "eval_episodes": 2, "image_size": 32,
             "batch_size": 8}
    full = {"seeds": 3, "steps": 1000, "episodes": 80, "eval_episodes": 50, "image_size": 32,
            "batch_size": 32}
    sizes = dict(quick if args.quick else full)
    for key in ("seeds", "steps", "episodes", "eval_episodes", "image_size"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    from common import resolve_device

    device = str(resolve_device(args.device))
    overrides = {  # the run's sizes; everything else comes from --config
        "steps": sizes["steps"], "batch_size": sizes["batch_size"],
        "image_size": sizes["image_size"], "device": device, "num_workers": 0,
        "val_every": sizes["steps"], "checkpoint_every": sizes["steps"],
        "log_every": max(1, sizes["steps"] // 10), "agent": dict(args.lapo_set),
    }
    if args.chunk_size is not None:
        overrides["agent"]["chunk_size"] = args.chunk_size
        overrides["bc"] = {"chunk_size": args.chunk_size}
    sim = SimConfig(image_size=(sizes["image_size"], sizes["image_size"]),
                    task=TaskConfig(progress_scale=args.progress_scale))
    expert = expert_success(sim, sizes["eval_episodes"], EVAL_SEED)

    table = Table(
        "Closed-loop success in the sim: LAPO vs BC (ratios vs BC and vs the scripted expert)",
        ["data", "algorithm", "chunk size, execution", "success per seed", "mean success",
         "vs BC", "vs expert", "touched blue", "final distance to red (cm)", "train s/policy",
         *(["LAPO decoder at z = 0"] if args.prior_mean else [])])
    by_kind = Table(
        "LAPO's one-step advantage per demonstrator kind, all transitions (mean over seeds)",
        ["data", "demonstrator", "mean advantage", "advantage > 0", "first 5 steps: mean "
         "advantage", "first 5 steps: advantage > 0", "first 5 steps: V(s)",
         "first step: advantage > 0", "episodes with mean advantage > 0"])
    by_phase = Table(
        "Share of the VAE's weight per demonstrator kind during LAPO's training (per seed)",
        ["data", "demonstrator", *(f"updates {q * 25}-{(q + 1) * 25}%" for q in range(4))])
    means: dict[tuple, float] = {}  # (data, algo[, execution]) -> mean success
    executions = args.chunk_executions
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lapo_learning_") as tmp:
        for name in args.datasets:
            fractions = {**DATASETS, **REFERENCE_DATASETS}[name]
            data = Path(tmp) / f"{name}.hdf5"
            successes, kinds = make_dataset(data, fractions, sizes["episodes"], sim, seed=0)
            demo_success = float(np.mean(successes))
            rows = {}
            for algo in args.algorithms:
                scores, seconds, blues, distances = {}, [], {}, {}
                diagnosed, priors, shares = [], [], []
                for seed in range(args.first_seed, args.first_seed + sizes["seeds"]):
                    begin = time.perf_counter()
                    logging = algo == "lapo" and args.advantages  # a host copy per update
                    oracle = algo == "lapo" and args.oracle_weights
                    with (vae_weight_log() if logging else contextlib.nullcontext([]) as log,
                          oracle_weights(successes) if oracle else contextlib.nullcontext()
                          as use_split):
                        trainer = train_agent(
                            algo, data, Path(tmp) / f"{name}_{algo}_{seed}", args.config,
                            {**overrides, "seed": seed},
                            before_run=use_split and (lambda t: use_split(
                                t.agent, t.train_data.parent_episode_indices)))
                    seconds.append(time.perf_counter() - begin)
                    agent = trainer.agent
                    for mode in executions if agent.chunk_size > 1 else executions[:1]:
                        success, blue, distance = closed_loop_success(
                            agent, sim, sizes["eval_episodes"], execution=mode)
                        scores.setdefault(mode, []).append(success)
                        blues.setdefault(mode, []).append(blue)
                        distances.setdefault(mode, []).append(distance)
                        print(f"{name} {algo} seed {seed} ({mode}): success {success:.0%}, "
                              f"touched blue {blue:.0%}, final distance {distance:.1f} cm "
                              f"({seconds[-1]:.0f} s)", file=sys.stderr, flush=True)
                    if algo == "lapo" and args.advantages:
                        diagnosed.append(advantages_by_kind(
                            agent, (trainer.train_data, trainer.val_data), kinds))
                        if log:
                            shares.append(weight_shares(
                                log, trainer.train_data.parent_episode_indices, kinds,
                                sizes["steps"]))
                    if algo == "lapo" and args.prior_mean:
                        priors.append(closed_loop_success(agent, sim, sizes["eval_episodes"],
                                                          prior_mean_policy(agent))[0])
                for mode, mode_scores in scores.items():
                    means[name, algo, mode] = float(np.mean(mode_scores))
                    rows[algo, mode] = (agent.chunk_size, mode_scores,
                                        float(np.mean(blues[mode])),
                                        float(np.mean(distances[mode])),
                                        float(np.mean(seconds)), priors)
                means[name, algo] = means[name, algo, executions[0]]
                for kind in sorted(set(kinds)) if diagnosed else []:
                    mean = {key: np.mean([d[kind][key] for d in diagnosed])
                            for key in diagnosed[0][kind]}
                    by_kind.add_row(name, kind, f"{mean['advantage']:+.3f}",
                                    f"{mean['positive']:.0%}", f"{mean['first_advantage']:+.3f}",
                                    f"{mean['first_positive']:.0%}", f"{mean['first_value']:+.2f}",
                                    f"{mean['start_positive']:.0%}",
                                    f"{mean['episode_positive']:.0%}")
                for kind in sorted(set(kinds)) if shares else []:
                    by_phase.add_row(name, kind, *(
                        " / ".join(f"{run[kind][phase]:.0%}" for run in shares)
                        for phase in range(4)))
            for (algo, mode), (chunk_size, scores, blue, distance, seconds, priors) in sorted(
                    rows.items(), key=lambda item: (item[0][0] != "bc", item[0][1])):
                success = means[name, algo, mode]
                table.add_row(f"{name} ({demo_success:.0%} demos succeed)",
                              {"bc": "BC (MSE)", "lapo": "LAPO"}[algo],
                              f"{chunk_size}, {mode.replace('_', ' ')}" if chunk_size > 1
                              else "1",
                              " / ".join(f"{s:.0%}" for s in scores), f"{success:.0%}",
                              ratio(success, means.get((name, "bc", mode), float("nan"))),
                              ratio(success, expert), f"{blue:.0%}", f"{distance:.1f}",
                              f"{seconds:.0f}",
                              *([" / ".join(f"{s:.0%}" for s in priors) or "-"]
                                if args.prior_mean else []))
    table.notes = [
        f"Baseline of this run: the scripted expert succeeds on {expert:.0%} of the "
        f"{sizes['eval_episodes']} evaluation layouts (seeds {EVAL_SEED}+, unseen in training).",
        f"{sizes['episodes']} demonstrations per dataset, {sizes['steps']} steps of batch "
        f"{sizes['batch_size']} at {sizes['image_size']} px, {sizes['seeds']} seed(s) from "
        f"{args.first_seed}, "
        f"reward per metre of progress {args.progress_scale:g} (outcome +-1), device "
        f"{device}; total {(time.perf_counter() - started) / 60:.1f} min.",
        f"Trained by the trainer of training/train.py with {display_path(args.config)} (LAPO: "
        f"its agent section, BC: its bc section; its val_fraction of the episodes held out), "
        f"in-process loader"
        + (f"; LAPO changed by --lapo-set: {dict(args.lapo_set)}." if args.lapo_set else
           "; no --lapo-set.")
        + (" --oracle-weights: LAPO's VAE weights from the recorded outcomes (a diagnostic, "
           "not an agent)." if args.oracle_weights else ""),
        *([f"--chunk-size {args.chunk_size}: both agents train on action chunks of "
           f"{args.chunk_size} steps; chunk policies run as the policy node runs them "
           f"(ChunkExecution: temporal ensemble, ensemble_decay 0.01, or open loop, the "
           f"whole chunk before the next prediction); the targets read the "
           f"{executions[0].replace('_', ' ')} rows."] if args.chunk_size else []),
        *target_notes(means, expert),
    ]
    by_kind.notes = ["The VAE weighs a transition by the expectile where its advantage is "
                     "positive and by 1 - expectile elsewhere; separating kinds needs the sign "
                     "to follow the kind. V(s) far apart on the first steps of episodes that "
                     "start alike means the critic tells the demonstrator from the state."]
    by_phase.notes = ["Each batch's VAE weights summed per demonstrator kind of their "
                      "episodes, over each quarter of the updates; the wrong kind's share is "
                      "what the VAE learns of the wrong demonstrations (oracle weights: 0%)."]
    emit([table, by_kind, by_phase] if args.advantages else [table], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
