"""A known-answer problem of ``test/test_lapo_learning.py`` followed over training.

Trains the shipped ``MultimodalLatent`` (with ``--set KEY=VALUE`` overrides of
``LAPOConfig``) on one problem of ``test/known_answer_problems.py`` and, at each update count
of ``--updates``, prints the test's figure (the largest |greedy action - right action| over
the held-out observations, as a fraction of the gap between the modes; the test's bound is
0.2), the median, the share of the batch with a positive VAE weight, and for the held-out
observations it gets wrong whether the critic itself prefers the wrong mode and what the
decoder gives at the prior mean z = 0 (a misread image vs an actor that left the decoder's
modes). One CPU thread, deterministic: a row repeats exactly.

    python tools/known_answer_trajectory.py bandit --updates 300 450 600 [--scenes N]
        [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "test"), str(REPO / "benchmarks")]

from known_answer_problems import (  # noqa: E402
    MODE,
    camera_bandit,
    mixed_quality,
    sequence_bandit,
    sparse_chain,
)
from learning import lapo_option  # noqa: E402

from lapo_ros.lapo import MultimodalLatent  # noqa: E402
from lapo_ros.lapo.algorithms.config import LAPOConfig  # noqa: E402

PROBLEMS = {"bandit": camera_bandit, "chain": sparse_chain, "mixed": mixed_quality,
            "sequence": sequence_bandit}
BATCH_SIZE = 32  # the tests'


def misread(agent: MultimodalLatent, observations, right: np.ndarray, wrong: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per observation: Q1(right) - Q1(wrong) of the deployed encoder's critic, the decoded
    action at z = 0 (z-scored) and the actor's latent norm."""
    agent.set_training(False)
    with torch.no_grad():
        feature = agent.obs_encoder(agent._images(observations.image),
                                    agent.joint_normalizer(observations.joint.float()))
        preference = (agent.critic.q1(feature, agent._action_target(torch.from_numpy(right)))
                      - agent.critic.q1(feature, agent._action_target(torch.from_numpy(wrong))))
        prior_mean = agent.actor_vae_target.decode_latent(
            feature, feature.new_zeros(len(feature), agent.latent_dim))
        latent = agent.actor(feature)
    return preference[:, 0].numpy(), prior_mean.numpy(), latent.norm(dim=1).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("problem", choices=sorted(PROBLEMS))
    parser.add_argument("--updates", type=int, nargs="+", required=True,
                        help="update counts at which to report (ascending)")
    parser.add_argument("--scenes", type=int, default=None,
                        help="recorded scenes of the bandit, mixed or sequence problem "
                        "(default: the test's)")
    parser.add_argument("--set", type=lapo_option, action="append", default=[],
                        dest="overrides", metavar="KEY=VALUE",
                        help="a LAPOConfig override (VALUE read as YAML)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        overrides = LAPOConfig.from_overrides(dict(args.overrides)).to_dict()
    except (TypeError, ValueError) as error:
        parser.error(f"--set: {error}")
    overrides = {key: overrides[key] for key, _ in args.overrides}
    if args.scenes is not None and args.problem == "chain":
        parser.error("--scenes: the chain problem has recorded backgrounds, not scenes")
    problem = PROBLEMS[args.problem](**({} if args.scenes is None else {"scenes": args.scenes}))
    right = problem.right_action
    chunk = {"chunk_size": right.shape[1]} if right.ndim == 3 else {}
    agent = MultimodalLatent(right.shape[-1], replay_buffer=problem.data, device="cpu",
                             **chunk, **overrides)
    scenes = "" if args.scenes is None else f", {args.scenes} scenes"
    print(f"{args.problem}{scenes}, overrides {overrides or 'none'} "
          "(error: fraction of the modes' gap)")
    print("| updates | max error | median error | positive weights | wrong: critic prefers "
          "wrong mode | wrong: decoder at z = 0 agrees with it | wrong: actor latent norm | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    done, start = 0, time.perf_counter()
    for updates in args.updates:
        metrics = agent.train(iterations=updates - done, batch_size=BATCH_SIZE)
        done = updates
        with torch.no_grad():
            action = agent.deployable_policy()(problem.observations.image,
                                               problem.observations.joint).numpy()
        error = np.abs(action - right).reshape(len(right), -1).max(axis=1) / (2 * MODE)
        wrong = error > 0.2
        cells = ["-", "-", "-"]
        if wrong.any() and right.ndim == 2:
            preference, prior_mean, norm = misread(agent, problem.observations, right, -right)
            decoded_wrong = np.sign(prior_mean[wrong]) == -np.sign(right[wrong])
            cells = [f"{int((preference[wrong] < 0).sum())} of {int(wrong.sum())}",
                     f"{int(decoded_wrong.all(axis=1).sum())} of {int(wrong.sum())}",
                     " / ".join(f"{value:.2f}" for value in norm[wrong])]
        share = metrics.get("positive_weight_share", float("nan"))
        print(f"| {updates} | {error.max():.3f} | {np.median(error):.3f} | {share:.2f} | "
              f"{' | '.join(cells)} | {time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
