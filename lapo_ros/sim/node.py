"""ROS 2 node running the simulated dual arm with the robot's topics.

Publishes ``left/image_raw``, ``right/image_raw``, ``global/image_raw`` (sensor_msgs/Image,
rgb8), ``joint_states`` (sensor_msgs/JointState) and ``reward`` (std_msgs/Float64) every
control period; applies the newest ``commands`` (std_msgs/Float64MultiArray, 16 joint
position targets in ``JOINT_NAMES`` order) like a position controller, holding the last
target when none arrives. Finished episodes are reported on ``~/episode_result``
(std_msgs/String, JSON) and, with ``auto_reset``, the next one starts with the next seed.
``~/reset`` (std_srvs/Trigger) starts a new episode at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, Float64MultiArray, Header, String
from std_srvs.srv import Trigger

from lapo_ros.common.images import CAMERA_ORDER
from lapo_ros.sim import JOINT_NAMES, NUM_JOINTS, DualArmReachEnv, SimConfig


@dataclass
class EpisodeResult:
    """How one simulated episode ended."""

    episode: int
    seed: int
    success: bool
    failure: bool
    steps: int
    episode_return: float


class SimNode(Node):
    """The simulated arm behind the same topics as the real one."""

    def __init__(self, **kwargs):
        super().__init__("sim_node", **kwargs)
        rate_hz = self.declare_parameter("rate_hz", 10.0).value
        image_size = list(self.declare_parameter("image_size", [64, 64]).value)
        max_steps = self.declare_parameter("max_steps", 80).value
        self.seed = int(self.declare_parameter("seed", 0).value)
        self.auto_reset = bool(self.declare_parameter("auto_reset", True).value)
        check_episode_parameters(rate_hz, image_size, max_steps)
        self.env = DualArmReachEnv(SimConfig(
            image_size=(int(image_size[0]), int(image_size[1])), rate_hz=float(rate_hz),
            max_steps=int(max_steps)))
        self.results: list[EpisodeResult] = []
        self._topics = SimTopics(self, JOINT_NAMES, self._on_command, self._on_reset)
        self._command: np.ndarray | None = None
        self._return = 0.0
        self._episode_done = False
        self.start_episode()
        self.create_timer(1.0 / rate_hz, self._tick)

    def start_episode(self) -> None:
        """Home pose and the layout of seed ``seed + len(results)``."""
        self._episode_seed = self.seed + len(self.results)
        self._obs, _ = self.env.reset(self._episode_seed)
        self._command = None
        self._return = 0.0
        self._episode_done = False
        self._publish(self._obs, 0.0)

    def _on_command(self, msg: Float64MultiArray) -> None:
        command = np.asarray(msg.data, dtype=np.float64)
        if command.shape != (NUM_JOINTS,) or not np.all(np.isfinite(command)):
            self.get_logger().error(
                f"ignored a message on 'commands': need {NUM_JOINTS} finite joint positions "
                f"({', '.join(JOINT_NAMES)}), got {command.size} values",
                throttle_duration_sec=5.0)
            return
        self._command = command

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        if not self._episode_done:
            self._finish(success=False, failure=False)
        self.start_episode()
        response.success = True
        response.message = f"episode {len(self.results)} started with seed {self._episode_seed}"
        return response

    def _tick(self) -> None:
        if self._episode_done:
            if self.auto_reset:
                self.start_episode()
            else:
                self._publish(self._obs, 0.0)
            return
        command = self.env.joints if self._command is None else self._command
        self._obs, reward, terminated, truncated, info = self.env.step(command)
        self._return += reward
        self._publish(self._obs, reward)
        if terminated or truncated:
            self._finish(success=info["success"], failure=info["failure"])

    def _finish(self, *, success: bool, failure: bool) -> None:
        result = EpisodeResult(
            episode=len(self.results), seed=self._episode_seed, success=bool(success),
            failure=bool(failure), steps=self.env.steps, episode_return=float(self._return))
        self.results.append(result)
        self._episode_done = True
        self._topics.report(result)
        self.get_logger().info(
            f"episode {result.episode} (seed {result.seed}): "
            f"{'success' if success else 'failure' if failure else 'timeout'} "
            f"after {result.steps} steps")

    def _publish(self, obs: dict[str, np.ndarray], reward: float) -> None:
        self._topics.publish(obs, reward)


def check_episode_parameters(rate_hz: float, image_size: Sequence[int], max_steps: int) -> None:
    """The parameters every sim node has, each named in its error."""
    if rate_hz <= 0:
        raise ValueError(f"parameter 'rate_hz' must be > 0, got {rate_hz}")
    if len(image_size) != 2 or min(image_size) <= 0:
        raise ValueError(f"parameter 'image_size' must be [H, W] > 0, got {image_size}")
    if max_steps < 1:
        raise ValueError(f"parameter 'max_steps' must be >= 1, got {max_steps}")


class SimTopics:
    """A sim node's side of the robot's topics: three camera images, ``joint_states`` and
    ``reward`` out, ``commands`` and ``~/reset`` in, and one JSON ``~/episode_result`` per
    episode."""

    def __init__(self, node: Node, joint_names: Sequence[str],
                 on_command: Callable[[Float64MultiArray], None],
                 on_reset: Callable[[Trigger.Request, Trigger.Response], Trigger.Response]
                 ) -> None:
        self._node, self._joint_names = node, list(joint_names)
        self._images = {cam: node.create_publisher(Image, f"{cam}/image_raw", 10)
                        for cam in CAMERA_ORDER}
        self._joints = node.create_publisher(JointState, "joint_states", 10)
        self._reward = node.create_publisher(Float64, "reward", 10)
        self._result = node.create_publisher(String, "~/episode_result", 10)
        node.create_subscription(Float64MultiArray, "commands", on_command, 10)
        node.create_service(Trigger, "~/reset", on_reset)

    def publish(self, obs: dict[str, np.ndarray], reward: float) -> None:
        """One observation, all messages with the same stamp."""
        stamp = self._node.get_clock().now().to_msg()
        for camera in CAMERA_ORDER:
            self._images[camera].publish(
                rgb_image_msg(obs[camera], Header(stamp=stamp, frame_id=f"{camera}_camera")))
        self._joints.publish(
            joint_state_msg(obs["joint"], Header(stamp=stamp), self._joint_names))
        self._reward.publish(Float64(data=float(reward)))

    def report(self, result) -> None:
        """An episode's result dataclass as JSON on ``~/episode_result``."""
        self._result.publish(String(data=json.dumps(asdict(result))))


def rgb_image_msg(pixels: np.ndarray, header: Header) -> Image:
    """An rgb8 sensor_msgs/Image of an HxWx3 uint8 frame."""
    msg = Image()
    msg.header = header
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = "rgb8"
    msg.step = pixels.shape[1] * 3
    msg.data = pixels.tobytes()
    return msg


def joint_state_msg(positions: np.ndarray, header: Header, names: Sequence[str]) -> JointState:
    """A sensor_msgs/JointState with ``positions`` under ``names``."""
    msg = JointState()
    msg.header = header
    msg.name = list(names)
    msg.position = np.asarray(positions, dtype=np.float64).tolist()
    return msg


def spin(node_class: Callable[[], Node], args=None) -> None:
    """Initialise rclpy, spin one ``node_class()`` until Ctrl-C or shutdown, clean up."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def main(args=None) -> None:
    spin(SimNode, args)


if __name__ == "__main__":
    main()
