"""Newest sample of each sensor input, with age and mutual-skew checks (no ROS).

Subscription callbacks ``update`` (or ``invalidate`` on a bad message); the control
tick takes a ``snapshot``, which raises ``InputNotReady`` with a short reason when any
input is missing, bad, too old, or too far apart in time from the others. Slow
conversions (camera frames) run on a ``ConversionWorker`` thread, off the control loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class InputNotReady(Exception):
    """The inputs cannot drive a command this tick; ``reason`` is a short snake_case tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class Sample:
    """One input message, already converted: header stamp (ns), value, and its number in
    the input's sequence of good messages (1, 2, ...)."""

    stamp_ns: int
    value: Any
    sequence: int = 0


@dataclass(frozen=True)
class Snapshot:
    """The newest sample of every input, checked together at ``now_ns``."""

    samples: dict[str, Sample]
    newest_stamp_ns: int
    oldest_stamp_ns: int


def all_newer(samples: dict[str, Sample | None], used: dict[str, int]) -> bool:
    """Whether every sample exists and is newer than the input's ``sequence`` in ``used``."""
    return all(sample is not None and sample.sequence > used.get(name, 0)
               for name, sample in samples.items())


class SensorCache:
    """Thread-safe store of the newest ``Sample`` per input name."""

    def __init__(self, names: Iterable[str]):
        self._names = tuple(names)
        self._samples: dict[str, Sample | None] = dict.fromkeys(self._names)
        self._sequences = dict.fromkeys(self._names, 0)
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def update(self, name: str, stamp_ns: int, value: Any) -> None:
        """Store a good message; it replaces any earlier sample or problem."""
        with self._lock:
            self._sequences[name] += 1
            self._samples[name] = Sample(stamp_ns, value, self._sequences[name])
            self._problems.pop(name, None)

    def fresh_since(self, used: dict[str, int]) -> bool:
        """Whether every input has a good message newer than the ``sequence`` in ``used``."""
        with self._lock:
            return all_newer(self._samples, used)

    def invalidate(self, name: str, reason: str) -> None:
        """Mark an input bad (its newest message was unusable) until the next ``update``."""
        with self._lock:
            self._samples[name] = None
            self._problems[name] = reason

    def snapshot(self, now_ns: int, max_age_ns: int, max_skew_ns: int) -> Snapshot:
        """All inputs, each no older than ``max_age_ns`` and within ``max_skew_ns`` of each other.

        A stamp more than ``max_age_ns`` in the future counts as stale too (clock trouble).
        """
        with self._lock:
            samples = dict(self._samples)
            problems = dict(self._problems)
        for name in self._names:
            sample = samples[name]
            if sample is None:
                raise InputNotReady(problems.get(name, f"missing_{name}"))
            if abs(now_ns - sample.stamp_ns) > max_age_ns:
                raise InputNotReady(f"stale_{name}")
        stamps = [sample.stamp_ns for sample in samples.values()]
        newest, oldest = max(stamps), min(stamps)
        if newest - oldest > max_skew_ns:
            raise InputNotReady("skew")
        return Snapshot(samples, newest, oldest)


class ConversionWorker:
    """One background thread that runs the newest pending conversion of each input.

    ``submit(name, convert)`` replaces a not yet started conversion of the same input (the
    newest message wins, a slow decoder drops frames instead of falling behind); the
    thread calls ``convert()``, which stores its result itself (``SensorCache.update``).
    An exception from ``convert`` goes to ``on_error(name, error)`` and the thread goes on.
    """

    def __init__(self, on_error: Callable[[str, Exception], None], name: str = "conversion"):
        self._on_error = on_error
        self._pending: dict[str, Callable[[], None]] = {}
        self._stopping = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, name: str, convert: Callable[[], None]) -> None:
        with self._condition:
            self._pending[name] = convert
            self._condition.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Drop pending conversions, let a running one finish (up to ``timeout`` s); idempotent."""
        with self._condition:
            self._stopping = True
            self._pending.clear()
            self._condition.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                name = next(iter(self._pending))
                convert = self._pending.pop(name)
            try:
                convert()
            except Exception as error:  # a bug in one conversion must not stop the others
                self._on_error(name, error)
