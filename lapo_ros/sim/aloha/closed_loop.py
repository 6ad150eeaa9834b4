"""Closed loop over DDS: the ALOHA sim node (this process) and ``policy_node`` (a child).

``policy_node`` runs with ALOHA's parameters (``config/aloha_policy.yaml``: joint ranges,
``max_step``) and gets the sim's cameras and ``joint_states`` over ROS 2 as on the robot.
The sim advances one 20 ms control step per tick, so both run at ``rate_hz`` (below the
data's 50 Hz where rendering cannot keep up on a CPU: slower than real time, the same
steps). Episodes start once commands flow; reward stages and success come from the sim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lapo_ros.sim.aloha.env import AlohaSimConfig
from lapo_ros.sim.closed_loop import drive_sim_node

ALOHA_POLICY_PARAMS = Path(__file__).resolve().parents[3] / "config" / "aloha_policy.yaml"


@dataclass
class AlohaClosedLoopConfig:
    """One closed-loop evaluation on the ALOHA sim."""

    model_path: Path
    episodes: int = 10
    seed: int = 10_000  # cube placement of the first episode; unseen by the demonstrations
    sim: AlohaSimConfig = field(default_factory=AlohaSimConfig)
    rate_hz: float = 10.0  # sim ticks and policy_node's rate
    params_file: Path = ALOHA_POLICY_PARAMS  # policy_node's base parameters
    max_sensor_age: float = 0.5  # s; generous on a loaded 2-core machine
    startup_timeout_s: float = 120.0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if not Path(self.params_file).is_file():
            raise ValueError(f"params_file {self.params_file} not found: pass the path of "
                             f"lapo_ros's config/aloha_policy.yaml")


@dataclass
class AlohaClosedLoopResult:
    """Per-episode reward stages (``AlohaEpisodeResult``) and the node's timing."""

    episodes: list  # AlohaEpisodeResult per episode
    latency_ms: np.ndarray
    inference_ms: np.ndarray
    skipped_ticks: int
    wall_s: float

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    def stage_counts(self) -> list[int]:
        """How many episodes reached each highest stage 0..4."""
        return np.bincount([e.max_stage for e in self.episodes], minlength=5).tolist()


def run_aloha_closed_loop(config: AlohaClosedLoopConfig,
                          progress: Callable[[bool], None] | None = None
                          ) -> AlohaClosedLoopResult:
    """``config.episodes`` episodes of the policy in ``config.model_path`` over DDS."""
    from rclpy.parameter import Parameter

    from lapo_ros.sim.aloha.node import AlohaSimNode

    sim = config.sim
    if sim.image_size is None:
        raise ValueError("the closed loop needs camera images: sim.image_size is None")

    def make_sim_node(context):
        return AlohaSimNode(context=context, parameter_overrides=[
            Parameter("task", value=sim.task), Parameter("rate_hz", value=float(config.rate_hz)),
            Parameter("image_size", value=list(sim.image_size)),
            Parameter("max_steps", value=int(sim.max_steps)),
            Parameter("shadows", value=bool(sim.shadows)),
            Parameter("seed", value=int(config.seed)), Parameter("auto_reset", value=True)])

    overrides = {"model_path": str(config.model_path), "rate_hz": float(config.rate_hz),
                 "enabled": True, "device": config.device,
                 "max_sensor_age": float(config.max_sensor_age),
                 "max_sensor_skew": float(config.max_sensor_age)}
    record = drive_sim_node(make_sim_node, overrides, config.episodes,
                            config.startup_timeout_s, progress,
                            base_params=Path(config.params_file))
    return AlohaClosedLoopResult(episodes=record.results, latency_ms=record.latency_ms,
                                 inference_ms=record.inference_ms,
                                 skipped_ticks=record.skipped_ticks, wall_s=record.wall_s)
