"""Test-wide settings: keep every ROS 2 participant on loopback, in its own domain."""

from __future__ import annotations

import os
import tempfile

# Set before any test imports rclpy: DDS discovery stays on this machine, logs go to a
# temporary folder, and concurrent test runs do not see each other's topics.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="lapo_ros_test_log_"))
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import pytest  # noqa: E402


@pytest.fixture
def ros_context():
    """An initialised rclpy context of its own, shut down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
