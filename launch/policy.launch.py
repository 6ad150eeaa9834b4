"""Start policy_node: ``ros2 launch lapo_ros policy.launch.py model_path:=/path/policy.onnx``.

Arguments: ``model_path`` (required), ``params_file`` (default: the installed
config/policy.yaml), ``namespace``, and one per topic to remap, e.g.
``left_image:=/cam_left/color/image_raw joint_states:=/robot/joint_states``.
A camera argument names the raw topic; with ``image_transport: compressed`` the node
subscribes to ``<that topic>/compressed``. ``diagnostics`` redirects the node's
``/diagnostics`` output (absolute, as diagnostic_updater's, so aggregators hear a
namespaced node too).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

CAMERA_REMAPPINGS = {
    "left_image": "left/image_raw",
    "right_image": "right/image_raw",
    "global_image": "global/image_raw",
}
"""Launch argument -> the node's camera topic (its ``/compressed`` twin follows)."""

TOPIC_REMAPPINGS = {
    "joint_states": "joint_states",
    "commands": "commands",
    "diagnostics": "/diagnostics",
}
"""Launch argument -> the node's joint state input, command and diagnostics output topics."""


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("model_path", description="exported policy (.onnx or .pt)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("lapo_ros"), "config", "policy.yaml"]
            ),
            description="policy_node parameters (YAML with /**: ros__parameters:)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ]
    remappings = []
    for argument, topic in {**CAMERA_REMAPPINGS, **TOPIC_REMAPPINGS}.items():
        arguments.append(
            DeclareLaunchArgument(argument, default_value=topic, description=f"remaps {topic}")
        )
        remappings.append((topic, LaunchConfiguration(argument)))
        if argument in CAMERA_REMAPPINGS:
            remappings.append(
                (f"{topic}/compressed", [LaunchConfiguration(argument), "/compressed"])
            )
    node = Node(
        package="lapo_ros",
        executable="policy_node",
        name="policy_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"model_path": LaunchConfiguration("model_path")},
        ],
        remappings=remappings,
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*arguments, node])
