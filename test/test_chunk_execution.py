"""ChunkExecution: action chunks played open loop or temporally ensembled, tick by tick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lapo_ros.robot.chunk_execution import CHUNK_EXECUTIONS, ChunkExecution


def chunk(*rows: float) -> np.ndarray:
    """A chunk of one-joint actions."""
    return np.array(rows, np.float32)[:, None]


def run(execution: ChunkExecution, chunks: list[np.ndarray]) -> list[tuple[bool, float, int]]:
    """One tick per chunk: (ran the policy, action, chunk_index); a chunk is added only on
    ticks that need the policy."""
    ticks = []
    for predicted in chunks:
        ran = execution.needs_policy()
        if ran:
            execution.add(predicted)
        action = execution.next_action()
        ticks.append((ran, float(action[0]), execution.chunk_index))
    return ticks


def predictions(ticks: int, chunk_size: int) -> list[np.ndarray]:
    """The chunk predicted at tick t: row i = 10 * (t + 1) + i (tells tick and row apart)."""
    return [chunk(*(10.0 * (t + 1) + i for i in range(chunk_size))) for t in range(ticks)]


def test_temporal_ensemble_averages_overlapping_chunks_oldest_first_as_act():
    # ensemble_decay ln 2: weights 1, 1/2, 1/4 for the oldest, next, newest prediction
    execution = ChunkExecution("temporal_ensemble", chunk_size=3, ensemble_decay=math.log(2))
    ticks = run(execution, predictions(5, 3))
    assert [ran for ran, _, _ in ticks] == [True] * 5
    actions = [action for _, action, _ in ticks]
    expected = [
        10.0,  # tick 0: row 0 of chunk 0 alone
        (11 + 20 / 2) / 1.5,  # tick 1: row 1 of chunk 0, row 0 of chunk 1 -> 14
        (12 + 21 / 2 + 30 / 4) / 1.75,  # tick 2: three chunks
        (22 + 31 / 2 + 40 / 4) / 1.75,  # tick 3: chunk 0 has no row left
        (32 + 41 / 2 + 50 / 4) / 1.75,
    ]
    np.testing.assert_allclose(actions, expected, rtol=1e-6)
    assert actions[1] == pytest.approx(14.0)
    assert [index for _, _, index in ticks] == [1, 2, 3, 3, 3]  # predictions averaged


def test_temporal_ensemble_weights_are_acts_formula():
    """ACT imitate_episodes.py: exp_weights = exp(-k * arange(n)), normalised, k = 0.01."""
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(4, 2)).astype(np.float32) for _ in range(6)]
    execution = ChunkExecution("temporal_ensemble", chunk_size=4)  # ACT's k = 0.01
    for t, predicted in enumerate(chunks):
        execution.add(predicted)
        action = execution.next_action()
        # all_time_actions[t0, t] = chunks[t0][t - t0], populated for t - 4 < t0 <= t
        for_this_tick = np.stack([chunks[t0][t - t0] for t0 in range(max(0, t - 3), t + 1)])
        exp_weights = np.exp(-0.01 * np.arange(len(for_this_tick)))
        exp_weights = exp_weights / exp_weights.sum()
        np.testing.assert_allclose(action, (for_this_tick * exp_weights[:, None]).sum(0),
                                   rtol=1e-6)
        assert action.dtype == np.float32 and action.shape == (2,)


def test_zero_decay_averages_evenly():
    execution = ChunkExecution("temporal_ensemble", chunk_size=3, ensemble_decay=0.0)
    actions = [action for _, action, _ in run(execution, predictions(3, 3))]
    np.testing.assert_allclose(actions, [10.0, (11 + 20) / 2, (12 + 21 + 30) / 3], rtol=1e-6)


def test_open_loop_plays_the_whole_chunk_then_runs_the_policy():
    execution = ChunkExecution("open_loop", chunk_size=4)
    assert execution.replan_every == 4 and execution.chunk_index == -1
    ticks = run(execution, predictions(9, 4))
    assert [ran for ran, _, _ in ticks] == [True, False, False, False] * 2 + [True]
    assert [index for _, _, index in ticks] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    # rows of the chunks predicted at ticks 0, 4 and 8
    assert [action for _, action, _ in ticks] == [10, 11, 12, 13, 50, 51, 52, 53, 90]


@pytest.mark.parametrize(
    ("replan_every", "ran", "indices", "actions"),
    [
        (2, [True, False] * 3, [0, 1] * 3, [10, 11, 30, 31, 50, 51]),
        (3, [True, False, False] * 2, [0, 1, 2] * 2, [10, 11, 12, 40, 41, 42]),
        (1, [True] * 6, [0] * 6, [10, 20, 30, 40, 50, 60]),
    ],
)
def test_open_loop_replans_every_k_ticks(replan_every, ran, indices, actions):
    execution = ChunkExecution("open_loop", chunk_size=4, replan_every=replan_every)
    ticks = run(execution, predictions(6, 4))
    assert [t[0] for t in ticks] == ran
    assert [t[2] for t in ticks] == indices
    assert [t[1] for t in ticks] == actions


@pytest.mark.parametrize("mode", CHUNK_EXECUTIONS)
def test_reset_drops_every_chunk(mode):
    execution = ChunkExecution(mode, chunk_size=4)
    run(execution, predictions(2, 4))
    execution.reset()
    assert execution.needs_policy()
    assert execution.chunk_index == (-1 if mode == "open_loop" else 0)
    with pytest.raises(RuntimeError, match="no action chunk covers this tick"):
        execution.next_action()
    execution.add(chunk(70, 71, 72, 73))  # starts afresh: row 0, nothing averaged in
    assert execution.next_action()[0] == 70
    assert execution.chunk_index == (0 if mode == "open_loop" else 1)


@pytest.mark.parametrize("mode", CHUNK_EXECUTIONS)
def test_chunk_size_1_gives_each_ticks_prediction_exactly(mode):
    rng = np.random.default_rng(1)
    execution = ChunkExecution(mode, chunk_size=1, ensemble_decay=0.3)
    for _ in range(5):
        predicted = rng.normal(size=(1, 3)).astype(np.float32)
        assert execution.needs_policy()
        execution.add(predicted)
        action = execution.next_action()
        assert action.dtype == np.float32
        np.testing.assert_array_equal(action, predicted[0])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("ensemble", 4), r"mode 'ensemble' unknown; use one of \['temporal_ensemble', "
                          r"'open_loop'\]"),
        (("open_loop", 0), "chunk_size must be an integer >= 1, got 0"),
        (("open_loop", True), "chunk_size must be an integer >= 1, got True"),
        (("open_loop", 2.0), "chunk_size must be an integer >= 1, got 2.0"),
        (("open_loop", 4, -1), "replan_every must be an integer from 0 .* to chunk_size 4, got -1"),
        (("open_loop", 4, 5), "replan_every must be .* chunk_size 4, got 5"),
        (("open_loop", 4, 1.5), "replan_every must be .* got 1.5"),
        (("temporal_ensemble", 4, 2), "replan_every 2 applies to open_loop"),
        (("temporal_ensemble", 4, 0, -0.1), "ensemble_decay must be a finite number >= 0"),
        (("temporal_ensemble", 4, 0, math.nan), "ensemble_decay must be .* got nan"),
        (("temporal_ensemble", 4, 0, math.inf), "ensemble_decay must be .* got inf"),
        (("temporal_ensemble", 4, 0, "0.1"), "ensemble_decay must be .* got '0.1'"),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(arguments, message):
    with pytest.raises(ValueError, match=message):
        ChunkExecution(*arguments)


def test_chunks_of_another_shape_are_refused():
    execution = ChunkExecution("temporal_ensemble", chunk_size=3)
    with pytest.raises(ValueError, match=r"shape \[chunk_size 3, A\], got \[2, 1\]"):
        execution.add(chunk(1, 2))
    with pytest.raises(ValueError, match=r"got \[3\]"):
        execution.add(np.zeros(3, np.float32))
    execution.add(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="chunk has 1 actions per row, the previous one 2"):
        execution.add(chunk(1, 2, 3))
