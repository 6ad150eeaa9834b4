#!/usr/bin/env python3
"""Train a multimodal LAPO (or BC) policy on HDF5 episodes.

    python training/train.py --data data.hdf5 --out runs/pick [--config config/train.yaml]
        [--steps N] [--batch-size N] [--image-size N] [--device auto|cpu|cuda]
        [--algo lapo|bc] [--precision auto|bfloat16|float32] [--channels-last]
        [--fused-adam] [--compile] [--resume]
    torchrun --nproc-per-node 2 training/train.py ...      # data-parallel, one GPU each

Writes RUN_DIR/{config.yaml, metrics.csv, tensorboard/, checkpoints/{last,best}.pt}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import lapo_ros  # noqa: F401
except ImportError:  # a source checkout without `pip install`: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lapo_ros.dataset.aloha import add_aloha_options, parse_joint_names
from lapo_ros.dataset.episodes import DatasetReadError
from lapo_ros.lapo.algorithms.checkpoint import CheckpointError
from lapo_ros.lapo.models.networks import PretrainedWeightsError
from lapo_ros.lapo.training.allocator import keep_freed_memory
from lapo_ros.lapo.training.checkpoint import TrainingCheckpointError
from lapo_ros.lapo.training.config import (
    ALGORITHMS,
    TrainConfigError,
    load_train_config,
    resume_config,
)
from lapo_ros.lapo.training.trainer import train

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "train.yaml"
USER_ERRORS = (TrainConfigError, TrainingCheckpointError, DatasetReadError, CheckpointError,
               PretrainedWeightsError, FileNotFoundError)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", metavar="PATH",
                        help="HDF5 files or folders of episode files (not needed with --resume)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    parser.add_argument("--config", type=Path, metavar="YAML",
                        help=f"settings file (default: {DEFAULT_CONFIG} when it exists)")
    parser.add_argument("--steps", type=int, help="total gradient steps")
    parser.add_argument("--batch-size", type=int, help="transitions per step and process")
    parser.add_argument("--image-size", type=int, help="square image side the encoder sees")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--algo", choices=ALGORITHMS, help="lapo (default) or bc baseline")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-workers", type=int, help="loader worker processes")
    parser.add_argument("--val-every", type=int, help="steps between validations")
    parser.add_argument("--checkpoint-every", type=int, help="steps between last.pt writes")
    parser.add_argument("--log-every", type=int, help="steps between metric rows")
    parser.add_argument("--precision", choices=("auto", "bfloat16", "float32"),
                        help="mixed precision (the agents' autocast_dtype; auto: bfloat16 "
                             "where the GPU or CPU computes it natively)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC convolutions (the agents' channels_last)")
    parser.add_argument("--fused-adam", action="store_true",
                        help="one fused kernel per Adam step (the agents' fused_adam)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the observation encoders (the agents' "
                             "compile_encoders; the first steps compile them)")
    add_aloha_options(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN_DIR from checkpoints/last.pt with its saved config")
    return parser.parse_args(argv)


def compute_overrides(args: argparse.Namespace) -> dict:
    """The compute flags as overrides of both agents' configs (they apply whichever algo
    runs); empty when none is given, so the settings file decides."""
    compute = {**({"autocast_dtype": args.precision} if args.precision else {}),
               **({"channels_last": True} if args.channels_last else {}),
               **({"fused_adam": True} if args.fused_adam else {}),
               **({"compile_encoders": True} if args.compile else {})}
    return {"agent": compute, "bc": compute} if compute else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # each step reuses its buffers instead of refaulting them
    overrides = {
        "data": args.data, "out": args.out, "steps": args.steps, "batch_size": args.batch_size,
        "image_size": args.image_size, "device": args.device, "algo": args.algo,
        "seed": args.seed, "num_workers": args.num_workers, "val_every": args.val_every,
        "checkpoint_every": args.checkpoint_every, "log_every": args.log_every,
        "aloha_cameras": args.aloha_cameras,
        "aloha_joint_names": parse_joint_names(args.aloha_joint_names),
        "aloha_rate_hz": args.aloha_rate_hz, "labels": args.labels,
        "assume_success": args.assume_success,
    }
    overrides.update(compute_overrides(args))
    try:
        if args.resume:
            config = resume_config(args.out, {k: v for k, v in overrides.items() if k != "out"})
        else:
            config_path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
            config = load_train_config(config_path, overrides)
        result = train(config, resume=args.resume)
    except USER_ERRORS as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    if not result.is_main:
        return 130 if result.interrupted else 0
    best = f", best {result.best_score:.4g} in {result.best_checkpoint}" \
        if result.best_checkpoint else ""
    state = "interrupted" if result.interrupted else "done"
    print(f"{state} at step {result.step}: {result.last_checkpoint}{best}")
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
