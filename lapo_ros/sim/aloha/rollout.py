"""Run scripted demonstrators on an ALOHA scene and score them.

    PYTHONPATH=. python -m lapo_ros.sim.aloha.rollout --kind expert --episodes 10 \
        [--task transfer_cube|insertion]

prints each episode's highest reward stage (0..4) and the success rate.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv, Observation
from lapo_ros.sim.aloha.experts import EXPERT_KINDS, EXPERTS, ScriptedExpert, make_expert


@dataclass
class EpisodeOutcome:
    """How one scripted episode went."""

    seed: int
    max_stage: int
    success: bool
    steps: int
    stages: list[int]  # the reward stage after each step


def run_episode(env: AlohaSimEnv, expert: ScriptedExpert, seed: int,
                observe: Callable[[Observation, np.ndarray], None] | None = None
                ) -> EpisodeOutcome:
    """One episode from ``seed``; ``observe(obs, action)`` sees every step's input and action."""
    obs, info = env.reset(seed)
    expert.reset()
    stages = []
    while True:
        action = expert.act(env.steps)
        if observe is not None:
            observe(obs, action)
        obs, _, terminated, truncated, info = env.step(action)
        stages.append(info["stage"])
        if terminated or truncated:
            return EpisodeOutcome(seed=seed, max_stage=info["max_stage"],
                                  success=info["success"], steps=info["steps"], stages=stages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=EXPERTS, default="transfer_cube")
    parser.add_argument("--kind", choices=EXPERT_KINDS, default="expert")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="object placement of episode 0")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                        help="render the cameras too (time per step includes them)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    outcomes = []
    with AlohaSimEnv(AlohaSimConfig(task=args.task, image_size=tuple(args.image_size)
                                    if args.image_size else None)) as env:
        expert = make_expert(env, args.kind, np.random.default_rng(args.seed))
        start = time.perf_counter()
        for seed in range(args.seed, args.seed + args.episodes):
            outcomes.append(run_episode(env, expert, seed))
            o = outcomes[-1]
            print(f"seed {seed}: max stage {o.max_stage}, "
                  f"{'success' if o.success else 'failure'} after {o.steps} steps", flush=True)
        wall = time.perf_counter() - start
    steps = sum(o.steps for o in outcomes)
    print(f"{args.task} {args.kind}: {sum(o.success for o in outcomes)}/{len(outcomes)} succeeded; "
          f"{1000 * wall / steps:.1f} ms per step (planning included)")


if __name__ == "__main__":
    main()
