#!/usr/bin/env python3
"""Export a training checkpoint as a self-describing policy file for the robot.

    python training/export.py --checkpoint runs/pick/checkpoints/best.pt --out policy.onnx
    python training/export.py --checkpoint runs/pick/checkpoints/best.pt --out policy.pt

The file takes `image` uint8 [B,9,H,W] and `joint` float32 [B,J] (robot units) and returns
`action` float32 [B,A] (robot units); its metadata (`lapo_ros`) names the joints, image
size, camera order and the training run. Export checks the file against the checkpoint's
policy (max abs difference <= --tolerance) before it appears.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import lapo_ros  # noqa: F401
except ImportError:  # a source checkout without `pip install`: use the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lapo_ros.lapo.algorithms.checkpoint import CheckpointError
from lapo_ros.lapo.export import DEFAULT_TOLERANCE, PolicyExportError, export_checkpoint
from lapo_ros.lapo.training.checkpoint import TrainingCheckpointError

USER_ERRORS = (PolicyExportError, TrainingCheckpointError, CheckpointError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="RUN_DIR/checkpoints/best.pt or last.pt")
    parser.add_argument("--out", required=True, type=Path, help="policy.onnx or policy.pt")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="max abs difference allowed between checkpoint and file")
    args = parser.parse_args(argv)
    try:
        metadata = export_checkpoint(args.checkpoint, args.out, tolerance=args.tolerance)
    except USER_ERRORS as error:
        print(f"export.py: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {metadata.joint_dim} joints -> {metadata.action_dim} actions, "
          f"images {metadata.image_size[0]}x{metadata.image_size[1]}, "
          f"step {metadata.training_run.get('step')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
