#!/usr/bin/env python3
"""Open-loop check of a policy file on recorded episodes, before it touches the arm.

    python training/evaluate.py --policy policy.onnx --data held_out.hdf5 [--out DIR]
        [--episodes 0 3] [--plots 2]

Runs the file exactly as the robot will (onnxruntime or TorchScript, its own metadata),
prints a per-joint error table (robot units) and writes DIR/errors.csv, DIR/errors.md and
DIR/episode_<i>.png (predicted vs recorded action per joint over the episode).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import lapo_ros  # noqa: F401
except ImportError:  # a source checkout without `pip install`: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lapo_ros.hdf5_episodes import DatasetReadError
from lapo_ros.image_preprocessing import ImageConversionError
from lapo_ros.lapo.evaluation import EvaluationError, evaluate_policy_file
from lapo_ros.policy_file import PolicyMetadataError

USER_ERRORS = (EvaluationError, DatasetReadError, PolicyMetadataError, ImageConversionError,
               FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, type=Path, help="policy.onnx or policy.pt")
    parser.add_argument("--data", required=True, nargs="+", metavar="PATH",
                        help="HDF5 files or folders of episode files")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: <policy name>_evaluation beside it)")
    parser.add_argument("--episodes", type=int, nargs="+", metavar="I",
                        help="episode indices to evaluate (default: all)")
    parser.add_argument("--plots", type=int, default=1, help="episodes to plot (default 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    out = args.out or args.policy.with_name(f"{args.policy.stem}_evaluation")
    data = args.data[0] if len(args.data) == 1 else args.data
    try:
        report = evaluate_policy_file(args.policy, data, out, episodes=args.episodes,
                                      plots=args.plots, batch_size=args.batch_size)
    except USER_ERRORS as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.policy} on {len(report.episodes)} episode(s) of {args.data}\n")
    print(report.table)
    print("\nwrote " + ", ".join(str(f) for f in report.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
