"""Real ROS 2 over loopback: a publisher process and a subscriber exchange Image/JointState."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

JOINT_NAMES = [f"joint_{i}" for i in range(16)]
HEIGHT, WIDTH = 4, 6


def expected_pixels() -> np.ndarray:
    return np.arange(HEIGHT * WIDTH * 3, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)


def publish_forever() -> None:
    """Runs in the child process: publish one Image and one JointState at 20 Hz."""
    rclpy.init()
    node = rclpy.create_node("transport_test_publisher")
    image_pub = node.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
    joint_pub = node.create_publisher(JointState, "joint_states", 10)

    def tick() -> None:
        stamp = node.get_clock().now().to_msg()
        image = Image(height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3)
        image.header.stamp = stamp
        image.header.frame_id = "camera"
        image.data = expected_pixels().tobytes()
        joints = JointState(name=JOINT_NAMES, position=[0.1 * i for i in range(16)])
        joints.header.stamp = stamp
        image_pub.publish(image)
        joint_pub.publish(joints)

    node.create_timer(0.05, tick)
    with contextlib.suppress(KeyboardInterrupt):
        rclpy.spin(node)


def test_image_and_joint_state_cross_process(ros_context):
    child = subprocess.Popen([sys.executable, __file__, "--publish"])
    node = rclpy.create_node("transport_test_subscriber", context=ros_context)
    received: dict[str, object] = {}
    done = threading.Event()

    def store(key):
        def callback(msg):
            received.setdefault(key, msg)
            if len(received) == 2:
                done.set()

        return callback

    node.create_subscription(Image, "camera/image_raw", store("image"), qos_profile_sensor_data)
    node.create_subscription(JointState, "joint_states", store("joint"), 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 30.0
        while not done.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert done.is_set(), "no Image/JointState arrived from the publisher process in 30 s"
    finally:
        child.terminate()
        child.wait(timeout=10)
        executor.shutdown()
        node.destroy_node()

    image = received["image"]
    assert (image.height, image.width, image.encoding, image.step) == (HEIGHT, WIDTH, "rgb8", 18)
    pixels = np.frombuffer(bytes(image.data), dtype=np.uint8).reshape(HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(pixels, expected_pixels())
    joint = received["joint"]
    assert list(joint.name) == JOINT_NAMES
    np.testing.assert_allclose(joint.position, [0.1 * i for i in range(16)])


if __name__ == "__main__" and "--publish" in sys.argv:
    publish_forever()
