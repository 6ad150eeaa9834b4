"""``bag_to_hdf5``: ros2 bags -> time-aligned, resized HDF5 episodes. No ROS install needed.

    bag_to_hdf5 BAG [BAG ...] -o OUT.hdf5 [--config config/bag_to_hdf5.yaml] [--labels L.yaml]

Each bag becomes one episode, or several when a long gap splits it. Bag by bag: a first
pass reads stamps and joint/command/reward values, the grid is aligned, a second pass
decodes only the camera frames the grid uses. Output goes through
``lapo_ros.dataset.layout.write_episodes`` (temporary file, renamed when complete), so a
failure on any bag leaves no output file (and an appended-to file untouched).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lapo_ros.bags.config import (
    BagConversionConfig,
    ConfigError,
    load_config,
)
from lapo_ros.bags.reading import (
    BagReadError,
    BagScan,
    FrameCache,
    bag_name,
    check_bag,
    first_joint_names,
    read_camera_frames,
    scan_bag,
)
from lapo_ros.bags.time_alignment import Alignment, AlignmentError, align_streams
from lapo_ros.bags.writing import typestore_for
from lapo_ros.dataset.labels import load_labels
from lapo_ros.dataset.layout import (
    DatasetWriteError,
    Episode,
    existing_joint_names,
    write_episodes,
)


@dataclass
class BagReport:
    """What one bag became: for the closing summary and the file's ``source`` attribute."""

    bag: str
    episodes: int = 0
    steps: int = 0
    grid_points: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # topic -> grid points dropped
    short_steps: int = 0
    success: bool | None = None
    segments: list[dict] = field(default_factory=list)  # per episode: steps, start/end stamps


class BagConverter:
    """Converts bags one at a time with a fixed config, joint order and labels."""

    def __init__(
        self,
        config: BagConversionConfig,
        joint_names: Sequence[str],
        labels: dict[str, bool] | None = None,
    ) -> None:
        self.config = config
        self.joint_names = list(joint_names)
        self.labels = labels
        self.typestore = typestore_for(config.ros_distro)
        action_names = config.action_joint_names or self.joint_names
        missing = [n for n in action_names if n not in self.joint_names]
        if missing and not config.topics.command:
            raise ConfigError(f"action_joint_names {missing} are not in joint_names; without "
                              "a command topic the action is the next joint position")
        self.next_joint_columns = [self.joint_names.index(n) for n in action_names
                                   if n in self.joint_names]
        self._warned_unnamed_commands = False

    def label(self, bag: Path) -> bool | None:
        """Success label of ``bag`` (None when rewards do not come from labels)."""
        if self.config.reward.source != "labels":
            return None
        name = bag_name(bag)
        for key in (name, str(bag), os.fspath(bag).rstrip("/")):
            if key in self.labels:
                return self.labels[key]
        raise BagReadError(
            f"{bag}: no label for bag {name!r} in labels file {self.config.reward.labels_file}"
        )

    def convert(self, bag: Path, progress=None) -> tuple[list[Episode], BagReport]:
        """All episodes of one bag, in memory at the dataset's image size."""
        report = BagReport(bag=str(bag), success=self.label(bag))
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            cache = FrameCache(pool, self.config.frame_cache_mb << 20, self.config.image_size,
                               self.config.workers)
            try:
                return self._convert(bag, report, pool, cache, progress)
            finally:
                cache.drop()

    def _convert(
        self, bag: Path, report: BagReport, pool: ThreadPoolExecutor, cache: FrameCache, progress
    ) -> tuple[list[Episode], BagReport]:
        scan = scan_bag(bag, self.config, self.joint_names, self.typestore, progress, cache)
        self._warn_unnamed_commands(scan)
        alignment = self._align(scan)
        next_joint = scan.command is None
        # with the next joint position as action, each segment's last step has no action
        ranges = [(a, b - 1 if next_joint else b) for a, b in alignment.segments]
        rows = {camera: _take(alignment.indices[stream.topic], ranges)
                for camera, stream in scan.cameras.items()}
        frames = read_camera_frames(scan, rows, self.config, self.typestore, pool, progress)
        cache.drop()  # free the decoded frames before the episodes are assembled
        joint_idx = alignment.indices[scan.joint_states.topic]
        rewards = self._rewards(scan, _take(alignment.grid_ns, ranges), report.success)
        episodes: list[Episode] = []
        offset = 0
        for number, ((a, b), (_, end)) in enumerate(zip(alignment.segments, ranges, strict=True)):
            length = end - a
            joint = scan.joint_states.values[joint_idx[a:end]]
            if next_joint:
                action = scan.joint_states.values[joint_idx[a + 1:b]][:, self.next_joint_columns]
            else:
                action = scan.command.values[alignment.indices[scan.command.topic][a:end]]
            # only the bag's last episode can end in a terminal state; earlier ones were cut
            terminal = number == len(alignment.segments) - 1 and self._final_terminal(
                report.success)
            episodes.append(Episode(
                **{f"{cam}_image": frames[cam][offset:offset + length] for cam in frames},
                joint=joint.astype(np.float32), action=action.astype(np.float32),
                reward=_on_last_transition(rewards[offset:offset + length], terminal),
                terminal=terminal,
            ))
            report.segments.append({"steps": length, "start_ns": int(alignment.grid_ns[a]),
                                    "end_ns": int(alignment.grid_ns[end - 1]),
                                    "terminal": terminal})
            offset += length
        report.episodes = len(episodes)
        report.steps = offset
        report.grid_points = alignment.grid_points
        report.dropped = alignment.dropped
        report.short_steps = alignment.short_steps
        return episodes, report

    def _warn_unnamed_commands(self, scan: BagScan) -> None:
        unnamed = scan.command is not None and scan.command.msgtype.endswith("Float64MultiArray")
        if unnamed and not self.config.command_joint_names and not self._warned_unnamed_commands:
            self._warned_unnamed_commands = True
            order = self.config.action_joint_names or self.joint_names
            print(f"bag_to_hdf5: note: {scan.command.topic} is a Float64MultiArray without joint "
                  f"names; taking its elements in the order {order}; set command_joint_names "
                  "(the controller's joints) if it differs", file=sys.stderr)

    def _align(self, scan: BagScan) -> Alignment:
        streams = [*scan.cameras.values(), scan.joint_states]
        if scan.command is not None:
            streams.append(scan.command)
        extra = 1 if scan.command is None else 0
        try:
            alignment = align_streams(
                {s.topic: s.stamps_ns for s in streams}, rate_hz=self.config.rate_hz,
                tolerance_s=self.config.tolerance, max_gap_s=self.config.max_gap_s,
                min_steps=self.config.min_episode_steps + extra,
            )
        except AlignmentError as error:
            hint = ""
            if "overlap" in str(error) and self.config.stamps == "header":
                hint = " (header stamps on another clock than receive times? try stamps: receive)"
            raise BagReadError(f"{scan.bag}: {error}{hint}") from None
        if not alignment.segments:
            dropped = ", ".join(f"{t} {n}" for t, n in alignment.dropped.items() if n)
            raise BagReadError(
                f"{scan.bag}: no episode of at least {self.config.min_episode_steps} steps: "
                f"of {alignment.grid_points} grid points at {self.config.rate_hz} Hz, "
                f"dropped for lack of a sample within {self.config.tolerance * 1e3:.0f} ms: "
                f"{dropped or 'none'}"
            )
        return alignment

    def _rewards(self, scan: BagScan, grid_ns: np.ndarray, success: bool | None) -> np.ndarray:
        """Reward of every kept step of the bag (all episodes, concatenated), before
        ``_on_last_transition``."""
        reward = np.zeros(grid_ns.size, dtype=np.float32)
        settings = self.config.reward
        if settings.source == "labels":
            reward[-1] = settings.success_reward if success else settings.failure_reward
        elif settings.source == "topic":
            # each reward message goes to the nearest kept step, so none is lost in a gap
            # or after the last complete grid point
            nearest = np.abs(scan.reward.stamps_ns[:, None] - grid_ns[None, :]).argmin(axis=1)
            np.add.at(reward, nearest, scan.reward.values.astype(np.float32))
        return reward

    def _final_terminal(self, success: bool | None) -> bool:
        """Whether the bag's last step ends in a terminal state."""
        settings = self.config.reward
        if settings.source == "labels":
            return bool(success or settings.terminal_on_failure)
        return settings.source == "topic" and settings.topic_terminal


def _on_last_transition(reward: np.ndarray, terminal: bool) -> np.ndarray:
    """An episode's rewards with the last step's reward moved onto the step before it when
    the episode is not terminal: that last step has no next state, so it is no transition
    and a reward on it would never reach the agent."""
    if terminal or reward.size < 2:
        return reward
    moved = reward.copy()
    moved[-2] += moved[-1]
    moved[-1] = 0.0
    return moved


def _take(indices: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    return np.concatenate([indices[a:b] for a, b in ranges])


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bag_to_hdf5",
        description="Convert ros2 bags (sqlite3/mcap; folder or single file) into one HDF5 "
                    "dataset of time-aligned episodes. No ROS install needed.",
        epilog="Labels file: YAML mapping bag name (folder name, or file name without suffix) "
               "to true (success) or false, e.g. 'pick_001: true'. Exit status: 0 written, "
               "1 bad input (nothing written, an appended-to file unchanged), 2 usage.",
    )
    parser.add_argument("bags", nargs="+", type=Path, help="bag folders or .db3/.mcap files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .hdf5 file")
    parser.add_argument("--config", type=Path, help="YAML config (see config/bag_to_hdf5.yaml)")
    parser.add_argument("--labels", help="YAML labels file: bag name -> true/false (success)")
    parser.add_argument("--rate-hz", type=float, help="grid rate (overrides the config)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                        help="image size in the dataset (overrides the config)")
    parser.add_argument("--workers", type=int, help="image decode threads")
    parser.add_argument("--frame-cache-mb", type=int,
                        help="memory for frames decoded in the first pass (0: two passes)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add episodes to OUTPUT")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _config(args: argparse.Namespace) -> BagConversionConfig:
    config = load_config(args.config, validate=False)
    if args.labels is not None:
        config.reward.labels_file = args.labels
    if args.rate_hz is not None:
        config.rate_hz = args.rate_hz
    if args.image_size is not None:
        config.image_size = tuple(args.image_size)
    if args.workers is not None:
        config.workers = args.workers
    if args.frame_cache_mb is not None:
        config.frame_cache_mb = args.frame_cache_mb
    config.validate(str(args.config or "command line"))
    return config


def summary_table(reports: Sequence[BagReport], topics: Sequence[str]) -> str:
    """Markdown table: one row per bag, dropped grid points per topic, then a total."""
    header = ["bag", "episodes", "steps", "grid", "short", "success", *topics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(values):
        lines.append("| " + " | ".join(str(v) for v in values) + " |")

    for r in reports:
        success = "-" if r.success is None else ("yes" if r.success else "no")
        row([bag_name(r.bag), r.episodes, r.steps, r.grid_points, r.short_steps, success,
             *(r.dropped.get(t, 0) for t in topics)])
    row(["**total**", sum(r.episodes for r in reports), sum(r.steps for r in reports),
         sum(r.grid_points for r in reports), sum(r.short_steps for r in reports), "",
         *(sum(r.dropped.get(t, 0) for r in reports) for t in topics)])
    lines.append("grid: grid points in the time all topics cover; short: steps in pieces "
                 "shorter than min_episode_steps; topic columns: grid points dropped for lack "
                 "of a sample within the tolerance")
    return "\n".join(lines)


def convert_bags(
    bags: Sequence[Path],
    output: Path,
    config: BagConversionConfig,
    *,
    append: bool = False,
    show_progress: bool = False,
) -> list[BagReport]:
    """Convert ``bags`` into ``output`` (atomically); return one report per bag."""
    config.validate()
    labels = None
    if config.reward.source == "labels":
        labels = load_labels(config.reward.labels_file, ConfigError)
    totals = [check_bag(bag, config) for bag in bags]  # fail fast on missing topics
    file_joint_names = existing_joint_names(output) if append else []  # fail fast
    joint_names = config.joint_names or file_joint_names
    if not joint_names:
        joint_names = first_joint_names(bags[0], config.topics.joint_states,
                                        typestore_for(config.ros_distro))
    converter = BagConverter(config, joint_names, labels)
    for bag in bags:
        converter.label(bag)  # fail fast on missing labels
    reports: list[BagReport] = []
    source = {"tool": "bag_to_hdf5", "bags": [str(b) for b in bags],
              "config": config.to_dict(), "episodes": []}

    def episodes() -> Iterator[Episode]:
        with tqdm(total=sum(totals), unit="msg", disable=not show_progress,
                  file=sys.stderr) as bar:
            for bag in bags:
                bar.set_postfix_str(bag_name(bag))
                bag_episodes, report = converter.convert(bag, bar.update)
                reports.append(report)
                # write_episodes records ``source`` after the last episode: filled in here
                source["episodes"].extend({"bag": str(bag), **s} for s in report.segments)
                yield from bag_episodes
                del bag_episodes  # written: free before the next bag is read

    write_episodes(output, episodes(), joint_names=joint_names, rate_hz=config.rate_hz,
                   source=source, append=append, compression=config.compression)
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``bag_to_hdf5``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
        if args.output.exists() and not (args.append or args.overwrite):
            raise ConfigError(f"{args.output} exists; pass --append or --overwrite")
        reports = convert_bags(args.bags, args.output, config, append=args.append,
                               show_progress=not args.no_progress)
    except (BagReadError, ConfigError, DatasetWriteError) as error:
        print(f"bag_to_hdf5: error: {error}", file=sys.stderr)
        return 1
    topics = [*config.topics.cameras().values(), config.topics.joint_states]
    if config.topics.command:
        topics.append(config.topics.command)
    print(summary_table(reports, topics))
    print(f"wrote {sum(r.episodes for r in reports)} episode(s), "
          f"{sum(r.steps for r in reports)} step(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
