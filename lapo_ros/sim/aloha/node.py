"""ROS 2 node running gym-aloha's bimanual scene behind the robot's topics (``aloha_sim_node``).

Publishes ``left/image_raw``, ``right/image_raw``, ``global/image_raw`` (sensor_msgs/Image,
rgb8: the scene's ``left_wrist``, ``right_wrist`` and ``top`` cameras), ``joint_states``
(sensor_msgs/JointState, ALOHA's 14 joint names, grippers normalised 0..1) and ``reward``
(std_msgs/Float64, the reward stage 0..4) every tick; applies the newest ``commands``
(std_msgs/Float64MultiArray, 14 absolute joint position targets in ``JOINT_NAMES`` order),
holding the last target when none arrives. Each tick advances the scene by one 20 ms control
step, so ``rate_hz`` 50 is real time where rendering keeps up (three 96x128 cameras cost
about 40 ms on one CPU core with EGL/Mesa: lower ``rate_hz`` there to keep a steady rate).
An episode's clock starts with the first command after its reset: until then the scene
stands still and its observation is republished each tick, so a policy node that takes
seconds to start misses nothing. Finished episodes (stage 4 reached, or ``max_steps``) are
reported on ``~/episode_result`` (std_msgs/String, JSON: success, highest and final stage,
steps spent in each stage); with ``auto_reset`` the next one starts with the next seed.
``~/reset`` (std_srvs/Trigger) starts a new episode at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from lapo_ros.sim.aloha.env import MAX_STAGE, AlohaSimConfig, AlohaSimEnv
from lapo_ros.sim.aloha.scene import JOINT_NAMES, NUM_JOINTS, RATE_HZ, TASKS
from lapo_ros.sim.node import SimTopics, check_episode_parameters, spin


@dataclass
class AlohaEpisodeResult:
    """How one episode ended, in gym-aloha's reward stages."""

    episode: int
    seed: int
    task: str
    success: bool  # stage 4 reached
    max_stage: int
    final_stage: int
    steps: int
    stage_steps: list[int]  # control steps spent in stage 0, 1, .., 4


class AlohaSimNode(Node):
    """The ALOHA sim behind the same topics as the robot."""

    def __init__(self, **kwargs):
        super().__init__("aloha_sim_node", **kwargs)
        task = self.declare_parameter("task", "transfer_cube").value
        rate_hz = self.declare_parameter("rate_hz", RATE_HZ).value
        image_size = list(self.declare_parameter("image_size", [96, 128]).value)
        max_steps = self.declare_parameter("max_steps", 400).value
        shadows = bool(self.declare_parameter("shadows", False).value)
        self.seed = int(self.declare_parameter("seed", 0).value)
        self.auto_reset = bool(self.declare_parameter("auto_reset", True).value)
        if task not in TASKS:
            raise ValueError(f"parameter 'task' must be one of {', '.join(TASKS)}, got {task!r}")
        check_episode_parameters(rate_hz, image_size, max_steps)
        self.env = AlohaSimEnv(AlohaSimConfig(
            task=task, image_size=(int(image_size[0]), int(image_size[1])),
            max_steps=int(max_steps), shadows=shadows))
        self.results: list[AlohaEpisodeResult] = []
        self._topics = SimTopics(self, JOINT_NAMES, self._on_command, self._on_reset)
        self._command: np.ndarray | None = None
        self._started = False
        self._episode_done = False
        self.start_episode()
        self.create_timer(1.0 / rate_hz, self._tick)

    def destroy_node(self) -> None:
        self.env.close()
        super().destroy_node()

    def start_episode(self) -> None:
        """ACT's start pose and the cube placement of seed ``seed + len(results)``."""
        self._episode_seed = self.seed + len(self.results)
        self._obs, _ = self.env.reset(self._episode_seed)
        self._command = self._obs["joint"].astype(np.float64)  # hold the start pose
        self._stage_steps = [0] * (MAX_STAGE + 1)
        self._started = False
        self._episode_done = False
        self._publish(0.0)

    def _on_command(self, msg: Float64MultiArray) -> None:
        command = np.asarray(msg.data, dtype=np.float64)
        if command.shape != (NUM_JOINTS,) or not np.all(np.isfinite(command)):
            self.get_logger().error(
                f"ignored a message on 'commands': need {NUM_JOINTS} finite joint positions "
                f"({', '.join(JOINT_NAMES)}), got {command.size} values",
                throttle_duration_sec=5.0)
            return
        self._command = command
        self._started = True

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        if not self._episode_done:
            self._finish()
        self.start_episode()
        response.success = True
        response.message = f"episode {len(self.results)} started with seed {self._episode_seed}"
        return response

    def _tick(self) -> None:
        if self._episode_done and self.auto_reset:
            self.start_episode()
            return
        if self._episode_done or not self._started:
            self._publish(float(self.env.stage))
            return
        self._obs, stage, terminated, truncated, _ = self.env.step(self._command)
        self._stage_steps[self.env.stage] += 1
        self._publish(stage)
        if terminated or truncated:
            self._finish()

    def _finish(self) -> None:
        env = self.env
        result = AlohaEpisodeResult(
            episode=len(self.results), seed=self._episode_seed, task=env.config.task,
            success=env.max_stage == MAX_STAGE, max_stage=env.max_stage,
            final_stage=env.stage, steps=env.steps, stage_steps=list(self._stage_steps))
        self.results.append(result)
        self._episode_done = True
        self._topics.report(result)
        self.get_logger().info(
            f"episode {result.episode} (seed {result.seed}): "
            f"{'success' if result.success else 'failure'}, highest stage {result.max_stage} "
            f"of {MAX_STAGE}, after {result.steps} steps")

    def _publish(self, stage: float) -> None:
        self._topics.publish(self._obs, stage)


def main(args=None) -> None:
    spin(AlohaSimNode, args)


if __name__ == "__main__":
    main()
