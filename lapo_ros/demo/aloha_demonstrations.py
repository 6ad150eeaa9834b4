"""Scripted ALOHA demonstrations of mixed quality (transfer cube, insertion) as real ros2 bags.

    PYTHONPATH=. python -m lapo_ros.demo.aloha_demonstrations --out aloha_bags --episodes 20 \
        [--task transfer_cube|insertion]
    bag_to_hdf5 aloha_bags/demo_* -o aloha.hdf5 --config aloha_bags/bag_to_hdf5.yaml

One bag per episode, recorded as ``ros2 bag record`` would on an ALOHA running this package:
the three camera topics, ``joint_states`` (ALOHA's 14 names), the ``commands`` sent (the 14
joint targets, the actions) and ``reward`` (gym-aloha's stage 0..4 after each step), 50 Hz;
plus ``labels.yaml`` (bag name -> success: stage 4 reached) and ``bag_to_hdf5.yaml``, the
conversion settings: rewards from the labels (success on the last step, which is terminal,
as gym-aloha ends an episode there; a failed episode ran out of time, so its end is not
terminal). ``reward: {source: topic}`` in that file gives the per-step stages instead.
Requires the optional extra ``lapo_ros[aloha]``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.demo.demonstrations import START_NS, DemoBags, RecordedEpisode, write_episode_bag
from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv, Observation
from lapo_ros.sim.aloha.experts import EXPERT_KINDS, EXPERTS, make_expert
from lapo_ros.sim.aloha.rollout import run_episode
from lapo_ros.sim.aloha.scene import JOINT_NAMES, RATE_HZ


@dataclass
class AlohaDemoConfig:
    """How many episodes of each demonstrator kind, from which placement seeds, seen how."""

    counts: dict[str, int] = field(default_factory=lambda: {
        "expert": 8, "noisy": 4, "wrong_grasp": 4, "drop": 4})
    seed: int = 0  # episode i places the objects from seed ``seed + i``
    sim: AlohaSimConfig = field(default_factory=AlohaSimConfig)

    @classmethod
    def mixed(cls, episodes: int, seed: int, sim: AlohaSimConfig) -> AlohaDemoConfig:
        """``episodes`` demonstrations in the demo's mix: 40% expert, 20% each noisy,
        wrong grasp and drop (rounding goes to the expert)."""
        share = {"expert": 0.4, "noisy": 0.2, "wrong_grasp": 0.2, "drop": 0.2}
        counts = {kind: int(round(episodes * s)) for kind, s in share.items()}
        counts["expert"] += episodes - sum(counts.values())
        return cls(counts=counts, seed=seed, sim=sim)

    def kinds(self) -> list[str]:
        """Demonstrator kind of each episode, in a seeded random order."""
        unknown = sorted(set(self.counts) - set(EXPERT_KINDS))
        if unknown:
            raise ValueError(f"unknown demonstrator kind {unknown[0]!r}; known: "
                             f"{', '.join(EXPERT_KINDS)}")
        if min(self.counts.values(), default=0) < 0 or sum(self.counts.values()) < 1:
            raise ValueError(f"episode counts must be >= 0, at least one episode, "
                             f"got {self.counts}")
        kinds = [kind for kind, count in self.counts.items() for _ in range(count)]
        return [str(k) for k in np.random.default_rng(self.seed).permutation(kinds)]


def record_aloha_episode(env: AlohaSimEnv, kind: str, seed: int) -> RecordedEpisode:
    """One scripted episode of ``kind`` in ``env`` (rendering images) from placement ``seed``."""
    if env.config.image_size is None:
        raise ValueError("recording needs camera images: AlohaSimConfig.image_size is None")
    expert = make_expert(env, kind, np.random.default_rng(seed + 7919))
    frames: dict[str, list[np.ndarray]] = {camera: [] for camera in CAMERA_ORDER}
    joints, commands = [], []

    def observe(obs: Observation, action: np.ndarray) -> None:
        for camera in CAMERA_ORDER:
            frames[camera].append(obs[camera])
        joints.append(obs["joint"])
        commands.append(action)

    outcome = run_episode(env, expert, seed, observe)
    return RecordedEpisode(
        kind=kind, seed=seed, images={c: np.stack(f) for c, f in frames.items()},
        joint=np.stack(joints), command=np.stack(commands),
        reward=np.array(outcome.stages, dtype=np.float64), success=outcome.success,
        terminal=outcome.success)


def record_aloha_bags(out_dir: str | os.PathLike, config: AlohaDemoConfig, *,
                      storage: str = "sqlite3",
                      progress: Callable[[RecordedEpisode], None] | None = None) -> DemoBags:
    """One bag per episode under ``out_dir`` (must not hold them yet), ``labels.yaml`` and
    ``bag_to_hdf5.yaml``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags, kinds, successes, steps = [], [], [], 0
    with AlohaSimEnv(config.sim) as env:
        for index, kind in enumerate(config.kinds()):
            bag = out_dir / f"demo_{index:03d}_{kind}"
            if bag.exists():
                raise FileExistsError(f"{bag}: bag folder exists; record into an empty folder")
            episode = record_aloha_episode(env, kind, config.seed + index)
            write_episode_bag(bag, episode, RATE_HZ, storage=storage, joint_names=JOINT_NAMES,
                              start_ns=START_NS + index * 1_000_000_000_000)
            bags.append(bag)
            kinds.append(kind)
            successes.append(episode.success)
            steps += len(episode.reward)
            if progress is not None:
                progress(episode)
    labels_file = out_dir / "labels.yaml"
    labels_file.write_text(yaml.safe_dump(
        {bag.name: ok for bag, ok in zip(bags, successes, strict=True)}, sort_keys=True))
    (out_dir / "bag_to_hdf5.yaml").write_text(yaml.safe_dump(
        aloha_conversion_config(config.sim, labels_file.resolve()), sort_keys=False))
    return DemoBags(bags, labels_file, kinds, successes, steps)


def aloha_conversion_config(sim: AlohaSimConfig, labels_file: Path) -> dict:
    """``bag_to_hdf5`` settings for the ALOHA demo bags (see the module docstring)."""
    if sim.image_size is None:
        raise ValueError("the demo bags need camera images: AlohaSimConfig.image_size is None")
    return {
        "rate_hz": RATE_HZ,
        "image_size": list(sim.image_size),
        "joint_names": list(JOINT_NAMES),
        "ros_distro": "jazzy",
        "reward": {"source": "labels", "labels_file": str(labels_file),
                   "success_reward": 1.0, "failure_reward": 0.0,
                   "terminal_on_failure": False},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the bags (new or empty)")
    parser.add_argument("--episodes", type=int, default=20,
                        help="episodes: 40%% expert, 20%% each noisy, wrong_grasp, drop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=EXPERTS, default="transfer_cube")
    parser.add_argument("--image-size", type=int, nargs=2, default=[96, 128],
                        metavar=("H", "W"))
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    config = AlohaDemoConfig.mixed(args.episodes, args.seed, AlohaSimConfig(
        task=args.task, image_size=tuple(args.image_size)))
    recorded = record_aloha_bags(args.out, config, progress=lambda e: print(
        f"seed {e.seed} {e.kind}: {'success' if e.success else 'failure'}, highest stage "
        f"{int(e.reward.max())}, {len(e.reward)} steps", flush=True))
    print(f"{len(recorded.bags)} bags ({recorded.steps} steps, "
          f"{sum(recorded.successes)} successful) in {args.out}; labels: "
          f"{recorded.labels_file}")


if __name__ == "__main__":
    main()
