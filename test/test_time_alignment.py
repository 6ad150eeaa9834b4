"""Resampling onto the rate_hz grid: nearest sample, tolerance, drops, gap splits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapo_ros.bags.time_alignment import (
    AlignmentError,
    align_streams,
    nearest_within,
    split_segments,
)

MS = 1_000_000


def test_nearest_within_picks_nearest_and_respects_tolerance():
    samples = np.array([0, 100, 210, 400]) * MS
    grid = np.array([0, 50, 105, 200, 300, 390, 500]) * MS
    result = nearest_within(samples, grid, 40 * MS)
    # 50 is equidistant from 0 and 100 but 50 ms away: beyond 40 ms tolerance
    assert result.tolist() == [0, -1, 1, 2, -1, 3, -1]


def test_nearest_within_unsorted_samples_returns_original_indices():
    samples = np.array([300, 100, 200, 0]) * MS
    grid = np.array([0, 100, 200, 300]) * MS
    assert nearest_within(samples, grid, 1).tolist() == [3, 1, 2, 0]


def test_nearest_within_tie_goes_to_earlier_sample():
    samples = np.array([0, 100]) * MS
    assert nearest_within(samples, np.array([50 * MS]), 50 * MS).tolist() == [0]


def test_nearest_within_empty_samples():
    assert nearest_within(np.zeros(0, np.int64), np.array([1, 2]), 10).tolist() == [-1, -1]


def test_split_segments_on_long_gaps():
    grid = np.array([0, 100, 200, 800, 900, 1000, 2000]) * MS
    assert split_segments(grid, 500 * MS) == [(0, 3), (3, 6), (6, 7)]
    assert split_segments(np.zeros(0, np.int64), 1) == []


def test_align_grid_covers_common_time_only():
    stamps = {
        "camera": np.arange(0, 1001, 100) * MS,  # 0..1 s at 10 Hz
        "joints": np.arange(200, 2001, 20) * MS,  # 0.2..2 s at 50 Hz
    }
    result = align_streams(stamps, rate_hz=10, tolerance_s=0.01, max_gap_s=0.5)
    assert result.grid_ns[0] == 200 * MS and result.grid_ns[-1] == 1000 * MS
    assert result.grid_points == 9 and result.segments == [(0, 9)]
    assert result.dropped == {"camera": 0, "joints": 0}
    assert np.array_equal(stamps["camera"][result.indices["camera"]], result.grid_ns)
    assert np.array_equal(stamps["joints"][result.indices["joints"]], result.grid_ns)


def test_align_drops_points_and_counts_per_stream():
    camera = np.arange(0, 2001, 100) * MS
    camera = camera[(camera < 500 * MS) | (camera > 700 * MS)]  # 3 frames lost
    joints = np.arange(0, 2001, 10) * MS
    joints = joints[(joints < 1500 * MS) | (joints > 1500 * MS)]  # one sample lost
    result = align_streams(
        {"camera": camera, "joints": joints}, rate_hz=10, tolerance_s=0.004, max_gap_s=0.5
    )
    assert result.grid_points == 21
    assert result.dropped == {"camera": 3, "joints": 1}
    assert len(result.grid_ns) == 17
    assert result.segments == [(0, 17)]  # gaps of 0.4 s and 0.2 s do not split


def test_align_long_gap_splits_and_short_segments_are_dropped():
    camera = (
        np.concatenate(
            [np.arange(0, 1001, 100), np.arange(2000, 2101, 100), np.arange(3000, 4001, 100)]
        )
        * MS
    )
    joints = np.arange(0, 4001, 10) * MS
    result = align_streams(
        {"camera": camera, "joints": joints},
        rate_hz=10,
        tolerance_s=0.02,
        max_gap_s=0.5,
        min_steps=3,
    )
    lengths = [b - a for a, b in result.segments]
    assert lengths == [11, 11]  # the 2-step piece in the middle is too short
    assert result.short_steps == 2
    assert result.grid_ns[result.segments[1][0]] == 3000 * MS


def test_align_no_overlap_names_streams():
    with pytest.raises(AlignmentError, match="no time overlap: /joints starts .* /camera ends"):
        align_streams(
            {"/camera": np.array([0, 1]) * 10**9, "/joints": np.array([2, 3]) * 10**9},
            rate_hz=10,
            tolerance_s=0.05,
            max_gap_s=0.5,
        )


def test_align_empty_stream_names_it():
    with pytest.raises(AlignmentError, match="/left: no messages"):
        align_streams(
            {"/left": np.zeros(0), "/joints": np.array([1, 2])},
            rate_hz=10,
            tolerance_s=0.05,
            max_gap_s=0.5,
        )


@settings(max_examples=60, deadline=None)
@given(
    camera=st.lists(st.integers(0, 3000), min_size=1, max_size=60),
    joints=st.lists(st.integers(0, 3000), min_size=1, max_size=60),
    rate_hz=st.sampled_from([5.0, 10.0, 30.0]),
    tolerance_ms=st.integers(1, 100),
)
def test_align_properties(camera, joints, rate_hz, tolerance_ms):
    stamps = {"camera": np.array(camera) * MS, "joints": np.array(joints) * MS}
    try:
        result = align_streams(
            stamps, rate_hz=rate_hz, tolerance_s=tolerance_ms / 1e3, max_gap_s=0.3
        )
    except AlignmentError:
        assert min(camera) > max(joints) or min(joints) > max(camera)
        return
    assert np.all(np.diff(result.grid_ns) > 0)
    assert len(result.grid_ns) + max(result.dropped.values()) <= result.grid_points
    for name, ns in stamps.items():
        chosen = ns[result.indices[name]]
        distance = np.abs(chosen - result.grid_ns)
        assert np.all(distance <= tolerance_ms * MS)
        best = np.abs(ns[None, :] - result.grid_ns[:, None]).min(axis=1) if ns.size else []
        assert np.array_equal(distance, best)  # the nearest sample, never a farther one
    for a, b in result.segments:
        assert np.all(np.diff(result.grid_ns[a:b]) <= 0.3e9)
