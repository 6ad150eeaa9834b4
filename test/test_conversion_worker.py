"""ConversionWorker: the newest message of each input is converted, off the caller's thread."""

from __future__ import annotations

import threading

from lapo_ros.robot.sensor_cache import ConversionWorker


def test_the_newest_pending_conversion_of_an_input_wins():
    release = threading.Event()
    done: list[str] = []
    finished = threading.Event()
    worker = ConversionWorker(on_error=lambda name, error: None)
    try:
        worker.submit("left", release.wait)  # keeps the thread busy
        for frame in ("left 1", "left 2", "left 3"):
            worker.submit("left", lambda frame=frame: done.append(frame))
        worker.submit("right", lambda: (done.append("right"), finished.set()))
        assert done == []  # nothing ran on the caller's thread
        release.set()
        assert finished.wait(5.0)
        assert done == ["left 3", "right"]  # older left frames were dropped, in arrival order
    finally:
        worker.stop()


def test_a_failing_conversion_is_reported_and_the_worker_goes_on():
    errors: list[tuple[str, str]] = []
    converted = threading.Event()
    worker = ConversionWorker(on_error=lambda name, error: errors.append((name, str(error))))
    try:
        worker.submit("global", lambda: 1 / 0)
        worker.submit("left", converted.set)
        assert converted.wait(5.0)
        assert errors == [("global", "division by zero")]
    finally:
        worker.stop()


def test_stop_drops_pending_conversions_and_is_idempotent():
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []
    worker = ConversionWorker(on_error=lambda name, error: None, name="frames")
    worker.submit("left", lambda: (started.set(), release.wait(), ran.append("running")))
    assert started.wait(5.0)
    worker.submit("right", lambda: ran.append("pending"))
    worker.stop(timeout=0.0)  # asks to stop, does not wait
    release.set()  # the running conversion finishes, the pending one never starts
    worker.stop()  # waits; a second stop is harmless
    assert ran == ["running"]
    assert not any(t.name == "frames" for t in threading.enumerate())
