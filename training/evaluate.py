#!/usr/bin/env python3
"""Open-loop check of a policy file on recorded episodes, before it touches the arm.

    python training/evaluate.py --policy policy.onnx --data held_out.hdf5 [--out DIR]
        [--episodes 0 3] [--plots 2]
    python training/evaluate.py --policy policy.onnx --run runs/pick   # its held-out episodes

Runs the file exactly as the robot will (onnxruntime or TorchScript, its own metadata),
prints a per-joint error table (robot units) and writes DIR/errors.csv, DIR/errors.md and
DIR/episode_<i>.png (predicted vs recorded action per joint over the episode).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

try:
    import lapo_ros  # noqa: F401
except ImportError:  # a source checkout without `pip install`: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lapo_ros.common.images import ImageConversionError
from lapo_ros.common.policy_file import PolicyMetadataError
from lapo_ros.dataset.aloha import AlohaLayout, add_aloha_file_options, aloha_layout
from lapo_ros.dataset.episodes import DatasetReadError
from lapo_ros.lapo.evaluation import EvaluationError, evaluate_policy_file
from lapo_ros.lapo.training.checkpoint import TrainingCheckpointError, read_training_record

USER_ERRORS = (EvaluationError, DatasetReadError, PolicyMetadataError, ImageConversionError,
               TrainingCheckpointError, FileNotFoundError)


def held_out_episodes(run_dir: Path) -> tuple[list[str], list[int], dict[str, Any]]:
    """(data paths, validation episode indices, settings) recorded by the training run in
    ``run_dir``."""
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no training checkpoint in --run {run_dir}")
    record = read_training_record(checkpoint)
    if not record.get("val_episodes"):
        raise EvaluationError(f"{checkpoint}: the run recorded no held-out episodes")
    config = record["config"]
    return config["data"], record["val_episodes"], config


def aloha_reading(args: argparse.Namespace, run_config: dict[str, Any]) -> AlohaLayout:
    """How ALOHA/ACT files are read: each ``--aloha-*`` option given, else the run's setting
    of the same name."""
    def setting(key: str) -> Any:
        value = getattr(args, key)
        return run_config.get(key) if value is None else value

    return aloha_layout(setting("aloha_cameras"), joint_names=setting("aloha_joint_names"),
                        rate_hz=setting("aloha_rate_hz"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, type=Path, help="policy.onnx or policy.pt")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+", metavar="PATH",
                        help="HDF5 files or folders of episode files")
    source.add_argument("--run", type=Path, metavar="RUN_DIR",
                        help="a training run: evaluate on the episodes it held out")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: <policy name>_evaluation beside it)")
    parser.add_argument("--episodes", type=int, nargs="+", metavar="I",
                        help="episode indices to evaluate (default: all)")
    parser.add_argument("--plots", type=int, default=1, help="episodes to plot (default 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    add_aloha_file_options(parser, default_note="; with --run: the run's")
    args = parser.parse_args(argv)
    out = args.out or args.policy.with_name(f"{args.policy.stem}_evaluation")
    try:
        run_config = {}
        if args.run is not None:
            args.data, args.episodes, run_config = held_out_episodes(args.run)
        data = args.data[0] if len(args.data) == 1 else args.data
        report = evaluate_policy_file(args.policy, data, out, episodes=args.episodes,
                                      plots=args.plots, batch_size=args.batch_size,
                                      aloha=aloha_reading(args, run_config))
    except USER_ERRORS as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    print(f"{args.policy} on {len(report.episodes)} episode(s) of {args.data}\n")
    print(report.table)
    print("\nwrote " + ", ".join(str(f) for f in report.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
