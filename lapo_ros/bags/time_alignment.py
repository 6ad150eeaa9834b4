"""Resampling of timestamped streams onto a fixed-rate grid. Pure numpy.

The grid runs at ``rate_hz`` over the time every stream covers. Each grid point takes,
per stream, the sample nearest in time if it lies within ``tolerance``; a grid point that
misses any stream is dropped (and counted against that stream), and a gap longer than
``max_gap`` between kept points splits the episode into segments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


class AlignmentError(ValueError):
    """Streams that cannot be aligned (empty, or no common time); names the stream."""


@dataclass
class Alignment:
    """Result of ``align_streams``. Arrays index the kept grid points, in time order."""

    grid_ns: np.ndarray  # (K,) int64 stamps of the kept grid points
    indices: dict[str, np.ndarray]  # stream -> (K,) index into that stream's samples
    segments: list[tuple[int, int]]  # [start, end) into the kept points, one per episode
    grid_points: int  # grid points inside the common time range
    dropped: dict[str, int]  # stream -> grid points without a sample within tolerance
    short_steps: int  # kept points discarded in segments shorter than min_steps


def nearest_within(samples_ns: np.ndarray, grid_ns: np.ndarray, tolerance_ns: int) -> np.ndarray:
    """Index of the sample nearest each grid point, or -1 when none is within tolerance.

    ``samples_ns`` need not be sorted; ties go to the earlier sample.
    """
    samples_ns = np.asarray(samples_ns, dtype=np.int64)
    result = np.full(grid_ns.shape, -1, dtype=np.int64)
    if samples_ns.size == 0:
        return result
    order = np.argsort(samples_ns, kind="stable")
    sorted_ns = samples_ns[order]
    right = np.clip(np.searchsorted(sorted_ns, grid_ns, side="left"), 0, sorted_ns.size - 1)
    left = np.clip(right - 1, 0, sorted_ns.size - 1)
    left_dist = np.abs(grid_ns - sorted_ns[left])
    right_dist = np.abs(sorted_ns[right] - grid_ns)
    best = np.where(left_dist <= right_dist, left, right)
    dist = np.minimum(left_dist, right_dist)
    within = dist <= tolerance_ns
    result[within] = order[best[within]]
    return result


def split_segments(grid_ns: np.ndarray, max_gap_ns: int) -> list[tuple[int, int]]:
    """[start, end) runs of ``grid_ns`` with no step longer than ``max_gap_ns``."""
    if grid_ns.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(grid_ns) > max_gap_ns) + 1
    bounds = [0, *breaks.tolist(), int(grid_ns.size)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def align_streams(
    stamps: Mapping[str, np.ndarray],
    *,
    rate_hz: float,
    tolerance_s: float,
    max_gap_s: float,
    min_steps: int = 1,
) -> Alignment:
    """Resample ``stamps`` (stream name -> sample stamps in ns) onto a ``rate_hz`` grid."""
    arrays = {name: np.asarray(ns, dtype=np.int64) for name, ns in stamps.items()}
    for name, ns in arrays.items():
        if ns.size == 0:
            raise AlignmentError(f"{name}: no messages")
    starts = {name: int(ns.min()) for name, ns in arrays.items()}
    stops = {name: int(ns.max()) for name, ns in arrays.items()}
    latest_start = max(starts, key=starts.get)
    earliest_stop = min(stops, key=stops.get)
    if starts[latest_start] > stops[earliest_stop]:
        raise AlignmentError(
            f"no time overlap: {latest_start} starts at {starts[latest_start] / 1e9:.3f} s, "
            f"after {earliest_stop} ends at {stops[earliest_stop] / 1e9:.3f} s"
        )
    period_ns = 1e9 / rate_hz
    count = int(np.floor((stops[earliest_stop] - starts[latest_start]) / period_ns)) + 1
    grid = starts[latest_start] + np.round(np.arange(count) * period_ns).astype(np.int64)
    tolerance_ns = int(round(tolerance_s * 1e9))
    nearest = {name: nearest_within(ns, grid, tolerance_ns) for name, ns in arrays.items()}
    missing = {name: idx < 0 for name, idx in nearest.items()}
    keep = ~np.logical_or.reduce(list(missing.values()))
    kept_grid = grid[keep]
    segments = split_segments(kept_grid, int(round(max_gap_s * 1e9)))
    long_enough = [(a, b) for a, b in segments if b - a >= min_steps]
    short_steps = sum(b - a for a, b in segments) - sum(b - a for a, b in long_enough)
    return Alignment(
        grid_ns=kept_grid,
        indices={name: idx[keep] for name, idx in nearest.items()},
        segments=long_enough,
        grid_points=count,
        dropped={name: int(m.sum()) for name, m in missing.items()},
        short_steps=short_steps,
    )
