"""Test-wide settings: keep every ROS 2 participant on loopback, in its own domain; with
pytest-xdist workers (``make test``), one domain and one CPU thread per worker."""

from __future__ import annotations

import os
import tempfile

# Set before any test imports rclpy or torch: DDS discovery stays on this machine, logs go
# to a temporary folder, and concurrent test runs do not see each other's topics. Each
# xdist worker ("gw0", "gw1", ...) takes the next domain and one thread (its subprocesses
# inherit both), so N workers use N cores and never hear each other's nodes.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="lapo_ros_test_log_"))
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    domain = int(os.environ["ROS_DOMAIN_ID"]) + int(_WORKER.removeprefix("gw"))
    os.environ["ROS_DOMAIN_ID"] = str(domain % 233)  # Fast DDS ports allow domains 0..232
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``long`` first (in their order): workers that take tests in
    collection order then start with them instead of ending on them."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


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
