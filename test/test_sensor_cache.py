"""SensorCache: newest sample per input, refused when missing, bad, stale or skewed."""

from __future__ import annotations

import pytest

from lapo_ros.robot.sensor_cache import InputNotReady, SensorCache

MS = 1_000_000


def reason(cache: SensorCache, now_ns: int, max_age_ns: int = 100 * MS, max_skew_ns: int = 50 * MS):
    with pytest.raises(InputNotReady) as caught:
        cache.snapshot(now_ns, max_age_ns, max_skew_ns)
    return caught.value.reason


def test_snapshot_holds_the_newest_sample_of_each_input():
    cache = SensorCache(["left", "joint_states"])
    assert reason(cache, 0) == "missing_left"
    cache.update("left", 1000 * MS, "old")
    cache.update("left", 1010 * MS, "new")
    assert reason(cache, 1020 * MS) == "missing_joint_states"
    cache.update("joint_states", 1030 * MS, "joints")
    snapshot = cache.snapshot(1040 * MS, 100 * MS, 50 * MS)
    assert snapshot.samples["left"].value == "new"
    assert (snapshot.newest_stamp_ns, snapshot.oldest_stamp_ns) == (1030 * MS, 1010 * MS)


def test_stale_future_and_skewed_inputs_are_refused():
    cache = SensorCache(["left", "joint_states"])
    cache.update("left", 1000 * MS, 1)
    cache.update("joint_states", 1000 * MS, 2)
    assert reason(cache, 1101 * MS) == "stale_left"
    assert reason(cache, 899 * MS) == "stale_left"  # stamped in the future: clock trouble
    cache.update("joint_states", 1060 * MS, 2)
    assert reason(cache, 1070 * MS) == "skew"
    assert cache.snapshot(1070 * MS, 100 * MS, 60 * MS).newest_stamp_ns == 1060 * MS


def test_a_bad_message_hides_the_older_good_one_until_the_next_good_one():
    cache = SensorCache(["left"])
    cache.update("left", 1000 * MS, "good")
    cache.invalidate("left", "bad_left_image")
    assert reason(cache, 1001 * MS) == "bad_left_image"
    cache.update("left", 1002 * MS, "good again")
    assert cache.snapshot(1003 * MS, 100 * MS, 50 * MS).samples["left"].value == "good again"
