"""ALOHA demonstrations recorded as real ros2 bags, and bag_to_hdf5 reproducing them.

Skipped only where the optional extra ``lapo_ros[aloha]`` is not installed.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

EXTRA = "the ALOHA sim needs the optional extra lapo_ros[aloha] (make setup installs it)"
for module in ("gym_aloha", "dm_control", "mujoco"):
    pytest.importorskip(module, reason=EXTRA)

from lapo_ros.bags.config import load_config  # noqa: E402
from lapo_ros.bags.convert import convert_bags  # noqa: E402
from lapo_ros.dataset.aloha import JOINT_NAMES  # noqa: E402
from lapo_ros.dataset.layout import (  # noqa: E402
    ACTION_KEY,
    EPISODE_ENDS_KEY,
    IMAGE_KEYS,
    JOINT_KEY,
)
from lapo_ros.demo.aloha_demonstrations import (  # noqa: E402
    AlohaDemoConfig,
    record_aloha_bags,
    record_aloha_episode,
)
from lapo_ros.sim.aloha.env import AlohaSimConfig, AlohaSimEnv  # noqa: E402

SIM = AlohaSimConfig(image_size=(8, 12), max_steps=30)  # short: the demonstrators' start


def test_demo_kinds_are_counted_and_checked():
    kinds = AlohaDemoConfig(counts={"expert": 3, "drop": 2}, seed=1).kinds()
    assert sorted(kinds) == ["drop", "drop", "expert", "expert", "expert"]
    assert kinds == AlohaDemoConfig(counts={"expert": 3, "drop": 2}, seed=1).kinds()
    with pytest.raises(ValueError, match="unknown demonstrator kind 'random'"):
        AlohaDemoConfig(counts={"random": 1}).kinds()


def test_bags_convert_to_exactly_the_recorded_episodes(tmp_path):
    config = AlohaDemoConfig(counts={"expert": 1, "noisy": 1}, seed=4, sim=SIM)
    recorded = record_aloha_bags(tmp_path / "bags", config)
    assert yaml.safe_load(recorded.labels_file.read_text()) == {
        bag.name: False for bag in recorded.bags}  # 30 steps: no hand-over yet
    output = tmp_path / "aloha.hdf5"
    convert_bags(recorded.bags, output, load_config(tmp_path / "bags" / "bag_to_hdf5.yaml"))
    env = AlohaSimEnv(SIM)
    episodes = [record_aloha_episode(env, kind, config.seed + index)
                for index, kind in enumerate(recorded.kinds)]
    with h5py.File(output) as h5:
        assert h5.attrs["rate_hz"] == 50.0
        assert yaml.safe_load(h5.attrs["joint_names"]) == list(JOINT_NAMES)
        np.testing.assert_array_equal(h5[EPISODE_ENDS_KEY][:], [30, 60])
        for camera, key in IMAGE_KEYS.items():
            np.testing.assert_array_equal(
                h5[key][:], np.concatenate([e.images[camera] for e in episodes]))
        np.testing.assert_allclose(
            h5[JOINT_KEY][:], np.concatenate([e.joint for e in episodes]), atol=1e-6)
        np.testing.assert_allclose(
            h5[ACTION_KEY][:], np.concatenate([e.command for e in episodes]), atol=1e-6)
        assert not h5["terminals"][:].any()  # timeouts: not terminal
    with pytest.raises(FileExistsError, match="demo_000"):
        record_aloha_bags(tmp_path / "bags", config)


def test_pipeline_table_settings_and_expert_reference():
    from lapo_ros.demo.aloha_pipeline import (
        AlohaDemoSettings,
        expert_reference,
        main,
        markdown_table,
        result_row,
    )
    from lapo_ros.sim.aloha.closed_loop import AlohaClosedLoopResult
    from lapo_ros.sim.aloha.node import AlohaEpisodeResult

    def episode(max_stage: int) -> AlohaEpisodeResult:
        return AlohaEpisodeResult(episode=0, seed=0, task="transfer_cube",
                                  success=max_stage == 4, max_stage=max_stage,
                                  final_stage=max_stage, steps=10, stage_steps=[10, 0, 0, 0, 0])

    result = AlohaClosedLoopResult(episodes=[episode(0), episode(2), episode(4), episode(2)],
                                   latency_ms=np.arange(1.0, 101.0),
                                   inference_ms=np.full(100, 3.0), skipped_ticks=0, wall_s=1.0)
    row = result_row("LAPO", result)
    assert row["success_rate"] == 0.25 and row["stage_counts"] == [1, 0, 2, 0, 1]
    table = markdown_table([row], expert=1.0)
    assert "| LAPO (ONNX, policy_node over DDS) | 25% of 4 | 1/0/2/0/1 | 50.5 / 95.0 |" in table
    assert "| scripted expert (in-process reference) | 100% |" in table
    counts = AlohaDemoSettings(episodes=7).demo_config().counts
    assert sum(counts.values()) == 7 and counts["wrong_grasp"] == counts["drop"] == 1
    assert expert_reference(AlohaSimConfig(), episodes=2, seed=10_000) == 1.0
    insertion = AlohaDemoSettings(task="insertion").sim()
    assert insertion.task == "insertion"  # the demonstrations and the closed loop's scene
    assert expert_reference(insertion, episodes=1, seed=10_000) == 1.0
    for argv in (["--train-steps", "0"], ["--task", "stack_cubes"]):
        with pytest.raises(SystemExit):
            main(["--out", "unused", *argv])
