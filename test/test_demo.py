"""Demonstration bags: heterogeneous mix, real ros2 bags, and bag_to_hdf5 reproducing them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from lapo_ros.bags.config import config_from_dict
from lapo_ros.bags.convert import convert_bags
from lapo_ros.dataset.layout import ACTION_KEY, EPISODE_ENDS_KEY, IMAGE_KEYS, JOINT_KEY, REWARD_KEY
from lapo_ros.demo.demonstrations import (
    DemoMix,
    conversion_config,
    iter_demonstrations,
    record_demonstration_bags,
)
from lapo_ros.sim import SimConfig

SIM = SimConfig(image_size=(24, 24))


def test_mix_is_deterministic_and_heterogeneous():
    kinds = DemoMix(episodes=40, seed=1).kinds()
    assert kinds == DemoMix(episodes=40, seed=1).kinds()
    assert {"expert", "noisy", "wrong_target"} <= set(kinds)
    assert DemoMix(episodes=10, fractions={"expert": 1.0}).kinds() == ["expert"] * 10
    with pytest.raises(ValueError, match="unknown demonstrator kind 'random'"):
        DemoMix(fractions={"random": 1.0}).kinds()


def test_bags_convert_to_exactly_the_recorded_episodes(tmp_path):
    mix = DemoMix(episodes=4, seed=3)
    recorded = record_demonstration_bags(tmp_path / "bags", mix, SIM)
    assert all((bag / "metadata.yaml").exists() for bag in recorded.bags)
    labels = yaml.safe_load(recorded.labels_file.read_text())
    assert labels == {
        bag.name: ok for bag, ok in zip(recorded.bags, recorded.successes, strict=True)
    }
    assert recorded.successes == [kind != "wrong_target" for kind in recorded.kinds]

    output = tmp_path / "data.hdf5"
    convert_bags(recorded.bags, output, config_from_dict(conversion_config(SIM)))
    episodes = list(iter_demonstrations(mix, SIM))
    with h5py.File(output) as h5:
        ends = h5[EPISODE_ENDS_KEY][:]
        np.testing.assert_array_equal(ends, np.cumsum([len(e.reward) for e in episodes]))
        for camera, key in IMAGE_KEYS.items():
            np.testing.assert_array_equal(
                h5[key][:], np.concatenate([e.images[camera] for e in episodes])
            )
        np.testing.assert_allclose(
            h5[JOINT_KEY][:], np.concatenate([e.joint for e in episodes]), atol=1e-6
        )
        np.testing.assert_allclose(
            h5[ACTION_KEY][:], np.concatenate([e.command for e in episodes]), atol=1e-6
        )
        np.testing.assert_allclose(
            h5[REWARD_KEY][:], np.concatenate([e.reward for e in episodes]), atol=1e-6
        )
        assert np.flatnonzero(h5["terminals"][:]).tolist() == (ends - 1).tolist()


def test_recording_refuses_to_overwrite_bags(tmp_path):
    mix = DemoMix(episodes=1, seed=0)
    record_demonstration_bags(tmp_path, mix, SIM)
    with pytest.raises(FileExistsError, match="demo_000"):
        record_demonstration_bags(tmp_path, mix, SIM)


def test_closed_loop_runs_a_policy_file_through_policy_node(tmp_path):
    """sim node + policy_node (child process) over DDS with a known ONNX policy.

    The synthetic policy commands ``joint + offset``: the shoulder of each arm keeps
    lowering, the per-step limits hold it to the sim's pace, and episodes end by timeout.
    """
    pytest.importorskip("rclpy")
    from synthetic_policy import write_onnx_policy

    from lapo_ros.common.policy_file import PolicyMetadata
    from lapo_ros.sim import JOINT_NAMES
    from lapo_ros.sim.closed_loop import ClosedLoopConfig, run_closed_loop

    metadata = PolicyMetadata(
        joint_names=list(JOINT_NAMES),
        image_size=[24, 24],
        action_dim=16,
        joint_dim=16,
        rate_hz=20.0,
    )
    offset = np.zeros(16, np.float32)
    offset[[1, 8]] = 0.5
    model = write_onnx_policy(tmp_path / "policy.onnx", metadata, offset)
    sim = SimConfig(image_size=(24, 24), rate_hz=20.0, max_steps=8)
    result = run_closed_loop(
        ClosedLoopConfig(model_path=model, episodes=2, seed=3, sim=sim, device="cpu")
    )
    assert result.steps == [8, 8] and not any(result.successes)
    assert result.latency_ms.size >= 8 and np.all(np.isfinite(result.latency_ms))
    assert np.all(result.inference_ms < 1000.0)


def test_closed_loop_reports_a_policy_node_that_cannot_start(tmp_path):
    pytest.importorskip("rclpy")
    from lapo_ros.sim.closed_loop import ClosedLoopConfig, ClosedLoopError, run_closed_loop

    with pytest.raises(ClosedLoopError, match="policy_node exited"):
        run_closed_loop(
            ClosedLoopConfig(
                model_path=tmp_path / "missing.onnx", episodes=1, sim=SimConfig(image_size=(24, 24))
            )
        )


def test_pipeline_table_and_expert_reference():
    from lapo_ros.demo.pipeline import expert_success, markdown_table, result_row
    from lapo_ros.sim.closed_loop import ClosedLoopResult

    result = ClosedLoopResult(successes=[True, False, True, True], failures=[False, True, False,
                              False], steps=[20, 30, 22, 24], latency_ms=np.arange(1.0, 101.0),
                              inference_ms=np.full(100, 3.0), skipped_ticks=2, wall_s=9.0)
    row = result_row("LAPO", result)
    assert row["success_rate"] == 0.75 and row["failure_rate"] == 0.25
    assert row["latency_p50_ms"] == pytest.approx(50.5)
    table = markdown_table([row], expert=1.0)
    assert "| LAPO (ONNX, policy_node over DDS) | 75% of 4 | 25% | 24.0 | 50.5 / 95.0 |" in table
    assert expert_success(SIM, episodes=3, seed=10_000) == 1.0


def test_pipeline_rejects_nonpositive_sizes(capsys):
    from lapo_ros.demo.pipeline import main

    with pytest.raises(SystemExit):
        main(["--out", "unused", "--train-steps", "0"])
    assert "--train-steps must be >= 1" in capsys.readouterr().err
