"""``lapo_hdf5 inspect FILE|DIR ...``: what is in HDF5 episode data and what is wrong with it.

Prints each file's layout, structure, episodes and lengths, rate and joint names, then value
ranges over all files and every problem found. Exit status: 0 when the data can train,
1 when it cannot (any error, or no transition at all), 2 for a usage error.
numpy + h5py only: runs on a workstation without ROS or torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.dataset.aloha import AlohaLayout, add_aloha_options, aloha_layout
from lapo_ros.dataset.episodes import (
    DatasetReadError,
    EpisodeSource,
    FileReport,
    compatibility_problems,
    expand_paths,
    read_file,
    unlabelled_message,
)

MAX_LISTED_EPISODES = 20


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lapo_hdf5", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="structure, episodes, ranges and problems")
    inspect.add_argument("paths", nargs="+", help="HDF5 files or folders of episode files")
    add_aloha_options(inspect)
    args = parser.parse_args(argv)
    try:
        aloha = aloha_layout(args.aloha_cameras, args.labels, bool(args.assume_success),
                             joint_names=args.aloha_joint_names, rate_hz=args.aloha_rate_hz)
        files = expand_paths(args.paths)
    except DatasetReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return inspect_files(files, aloha)


def inspect_files(files, aloha: AlohaLayout) -> int:
    """Print the report of ``files``; return the exit status."""
    reports = [read_file(path, aloha=aloha) for path in files]
    good: list[EpisodeSource] = []
    errors: list[str] = []
    warnings: list[str] = []
    for report in reports:
        _print_file(report)
        errors.extend(report.errors)
        warnings.extend(report.warnings)
        if report.source is not None:
            problems = compatibility_problems(report.source, good)
            errors.extend(problems)
            if not problems:
                good.append(report.source)
    if good:
        _print_ranges(good)
    transitions = sum(s.num_transitions for s in good)
    if good and transitions == 0:
        errors.append("no transitions: every episode is a single step without a terminal")
    sizes = {s.images[c].size for s in good for c in CAMERA_ORDER}
    if len(sizes) > 1:
        warnings.append(f"image sizes differ {sorted(sizes)}: frames are resized when sampled")
    print(f"\nsummary: {len(files)} file(s), {sum(s.num_episodes for s in good)} episodes, "
          f"{sum(s.num_frames for s in good)} steps, {transitions} transitions")
    for line in warnings:
        print(f"  WARNING {line}")
    for line in errors:
        print(f"  ERROR {line}")
    unlabelled = [r.path for r in reports if r.unlabelled and r.source is not None]
    if unlabelled:
        print(f"  WARNING {unlabelled_message(unlabelled)}")
    can_train = not errors and transitions > 0 and not unlabelled
    if can_train:
        print("result: the data can train")
    elif unlabelled and not errors:
        print(f"result: the data cannot train until {len(unlabelled)} episode(s) are labelled")
    else:
        print(f"result: the data cannot train ({len(errors)} error(s))")
    return 0 if can_train else 1


def _print_file(report: FileReport) -> None:
    size = report.path.stat().st_size if report.path.exists() else 0
    print(f"{report.path}  [{report.layout or 'unreadable'}]  {size / 2**20:.1f} MiB")
    for line in report.structure:
        print(f"    {line}")
    source = report.source
    if source is None:
        print(f"  not usable: {len(report.errors)} error(s), listed below")
        return
    lengths = np.diff(np.concatenate([[0], source.episode_ends]))
    terminal = int(source.episode_terminal.sum())
    print(f"  episodes: {source.num_episodes} ({terminal} terminal, "
          f"{source.num_episodes - terminal} timed out), steps {source.num_frames}, "
          f"transitions {source.num_transitions}")
    print(f"  lengths: min {lengths.min()}, median {np.median(lengths):g}, max {lengths.max()}: "
          + " ".join(str(n) for n in lengths[:MAX_LISTED_EPISODES])
          + (" ..." if lengths.size > MAX_LISTED_EPISODES else ""))
    duration = (f", {source.num_frames / source.rate_hz:.1f} s recorded"
                if source.rate_hz else "")
    print(f"  rate_hz: {source.rate_hz if source.rate_hz else 'not recorded'}{duration}")
    print(f"  joint_names: {source.joint_names if source.joint_names else 'not recorded'}")
    for camera in CAMERA_ORDER:
        stream = source.images[camera]
        height, width = stream.size
        print(f"  {camera} camera: /{stream.key} {height}x{width} {stream.layout}, "
              f"read by {stream.access}")


def _print_ranges(sources: list[EpisodeSource]) -> None:
    joint = np.concatenate([s.joint for s in sources])
    action = np.concatenate([s.action for s in sources])
    reward = np.concatenate([s.reward for s in sources])
    names = next((s.joint_names for s in sources if s.joint_names), None)
    print("\nvalue ranges over all usable files (min / mean / max):")
    for label, values in (("joint", joint), ("action", action)):
        for dim in range(values.shape[1]):
            column = values[:, dim]
            name = f" {names[dim]}" if names and label == "joint" else ""
            flat = "  (constant)" if column.min() == column.max() else ""
            print(f"  {label}[{dim}]{name}: {column.min():.4g} / {column.mean():.4g} / "
                  f"{column.max():.4g}{flat}")
    print(f"  reward: {reward.min():.4g} / {reward.mean():.4g} / {reward.max():.4g}")


if __name__ == "__main__":
    sys.exit(main())
