"""Action chunks -> one command per control tick (numpy only: no ROS, no torch).

A chunk policy predicts h actions at once: row i is the command for i control periods after
its observation. ``ChunkExecution`` decides on which ticks the policy runs and which action
each tick commands:

- ``open_loop``: run the policy on a tick without a chunk, then play rows 0, 1, ... of that
  chunk, one per tick; after ``replan_every`` ticks (default: the whole chunk) run it again.
- ``temporal_ensemble`` (ACT, Zhao et al. 2023, ``imitate_episodes.py``): run the policy
  every tick; at tick t average row t - t0 of every chunk predicted at a tick t0 with
  t - h < t0 <= t, with weights ``exp(-ensemble_decay * j)`` for the j-th oldest prediction,
  normalised (the oldest prediction weighs most; ACT's decay is 0.01).

With chunk_size 1 both give the policy's action of the tick itself. ``reset`` drops every
chunk, so that the next tick starts afresh; a caller resets after any tick it skips.

    execution = ChunkExecution("open_loop", chunk_size=8, replan_every=4)
    each tick:
        if execution.needs_policy():
            execution.add(policy(observation))   # [h, A]
        action = execution.next_action()         # [A]
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

CHUNK_EXECUTIONS = ("temporal_ensemble", "open_loop")
DEFAULT_ENSEMBLE_DECAY = 0.01


class ChunkExecution:
    """Plays predicted action chunks tick by tick (see the module docstring).

    ``chunk_index`` after ``next_action``: in ``open_loop`` the row of its chunk that the
    action was; in ``temporal_ensemble`` how many predictions were averaged (1 ... h).
    -1 (open loop) or 0 (ensemble) before the first action and after ``reset``.
    """

    def __init__(
        self,
        mode: str,
        chunk_size: int,
        replan_every: int = 0,
        ensemble_decay: float = DEFAULT_ENSEMBLE_DECAY,
    ):
        if mode not in CHUNK_EXECUTIONS:
            raise ValueError(f"mode {mode!r} unknown; use one of {list(CHUNK_EXECUTIONS)}")
        if not _is_int(chunk_size) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if not _is_int(replan_every) or not 0 <= replan_every <= chunk_size:
            raise ValueError(
                f"replan_every must be an integer from 0 (= chunk_size) to chunk_size "
                f"{chunk_size}, got {replan_every!r}"
            )
        if mode == "temporal_ensemble" and replan_every > 1:
            raise ValueError(
                f"replan_every {replan_every} applies to open_loop; temporal_ensemble runs "
                "the policy every tick (use 0 or 1)"
            )
        if (
            isinstance(ensemble_decay, bool)
            or not isinstance(ensemble_decay, (int, float))
            or not math.isfinite(ensemble_decay)
            or ensemble_decay < 0
        ):
            raise ValueError(f"ensemble_decay must be a finite number >= 0, got {ensemble_decay!r}")
        self.mode = mode
        self.chunk_size = chunk_size
        self.replan_every = replan_every or chunk_size
        self.ensemble_decay = float(ensemble_decay)
        # the chunks still covering the coming tick, oldest first, each with the row it
        # gives then; open loop keeps at most one
        self._chunks: deque[tuple[np.ndarray, int]] = deque()
        self._played = 0  # open loop: ticks played from the current chunk
        self.chunk_index = self._idle_index

    @property
    def _idle_index(self) -> int:
        return -1 if self.mode == "open_loop" else 0

    def needs_policy(self) -> bool:
        """Must this tick run the policy (and ``add`` its chunk) before ``next_action``?"""
        if self.mode == "temporal_ensemble":
            return True
        return not self._chunks or self._played >= self.replan_every

    def add(self, chunk: np.ndarray) -> None:
        """The chunk [h, A] the policy predicted at this tick (row 0 is for this tick)."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[0] != self.chunk_size:
            raise ValueError(
                f"chunk must have shape [chunk_size {self.chunk_size}, A], got {list(chunk.shape)}"
            )
        if self._chunks and chunk.shape[1] != self._chunks[-1][0].shape[1]:
            raise ValueError(
                f"chunk has {chunk.shape[1]} actions per row, the previous one "
                f"{self._chunks[-1][0].shape[1]}"
            )
        if self.mode == "open_loop":
            self._chunks.clear()
            self._played = 0
        self._chunks.append((chunk, 0))

    def next_action(self) -> np.ndarray:
        """The command [A] for this tick; advances one tick. ``RuntimeError`` when no chunk
        covers this tick (``add`` one first)."""
        if not self._chunks:
            raise RuntimeError("no action chunk covers this tick: add one first")
        if self.mode == "open_loop":
            chunk, row = self._chunks[0]
            action = chunk[row].copy()
            self.chunk_index = row
            self._played += 1
        else:
            rows = np.stack([chunk[row] for chunk, row in self._chunks])
            weights = np.exp(-self.ensemble_decay * np.arange(len(rows)))
            weights /= weights.sum()
            action = (weights @ rows.astype(np.float64)).astype(rows.dtype)
            self.chunk_index = len(rows)
        self._chunks = deque(
            (chunk, row + 1) for chunk, row in self._chunks if row + 1 < self.chunk_size
        )
        return action

    def reset(self) -> None:
        """Drop every chunk: the next tick runs the policy and starts a new one."""
        self._chunks.clear()
        self._played = 0
        self.chunk_index = self._idle_index


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
