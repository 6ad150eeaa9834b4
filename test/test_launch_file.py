"""launch/policy.launch.py and config/policy.yaml agree with the node they start.

``launch``/``launch_ros`` are not installable here, so the launch file is read with ``ast``;
the YAML is loaded for real through ``--params-file``.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter
from synthetic_policy import make_metadata, write_onnx_policy

from lapo_ros.robot.node import COMMANDS, DIAGNOSTICS, JOINT_STATES, PolicyNode, camera_topic
from lapo_ros.robot.parameters import PolicyNodeParameters

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "policy.launch.py"
CONFIG = ROOT / "config" / "policy.yaml"


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name
    ]


def keyword(call: ast.Call, name: str) -> ast.expr:
    return next(k.value for k in call.keywords if k.arg == name)


def module_constant(tree: ast.Module, name: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{LAUNCH} defines no {name}")


def test_launch_file_declares_its_arguments(launch_tree):
    declared_by_name = {
        call.args[0].value: call
        for call in calls(launch_tree, "DeclareLaunchArgument")
        if isinstance(call.args[0], ast.Constant)
    }
    remapped = {
        *module_constant(launch_tree, "CAMERA_REMAPPINGS"),
        *module_constant(launch_tree, "TOPIC_REMAPPINGS"),
    }
    assert {"model_path", "params_file", "namespace"} <= set(declared_by_name)
    # one argument per remapped topic, declared in the remapping loop
    (loop,) = [n for n in ast.walk(launch_tree) if isinstance(n, ast.For)]
    assert [c.args[0].id for c in calls(loop, "DeclareLaunchArgument")] == [loop.target.elts[0].id]
    assert remapped == {
        "left_image", "right_image", "global_image", "joint_states", "commands", "diagnostics"
    }
    model_path = declared_by_name["model_path"]
    assert "default_value" not in {k.arg for k in model_path.keywords}  # required
    functions = [n.name for n in launch_tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in functions


def test_launch_file_starts_the_installed_executable(launch_tree):
    (node,) = calls(launch_tree, "Node")
    assert ast.literal_eval(keyword(node, "package")) == "lapo_ros"
    assert ast.literal_eval(keyword(node, "executable")) == "policy_node"
    assert ast.literal_eval(keyword(node, "name")) == "policy_node"
    # parameters: the params file first, then model_path from its argument
    parameters = keyword(node, "parameters")
    assert isinstance(parameters, ast.List) and len(parameters.elts) == 2
    assert ast.literal_eval(parameters.elts[1].keys[0]) == "model_path"
    # the default params file is config/policy.yaml of the package
    (default,) = [
        c for c in calls(launch_tree, "PathJoinSubstitution") if isinstance(c.args[0], ast.List)
    ]
    parts = [ast.literal_eval(e) for e in default.args[0].elts[1:]]
    assert ROOT.joinpath(*parts) == CONFIG and CONFIG.is_file()


def test_remapped_topics_are_the_nodes_topics(launch_tree):
    cameras = module_constant(launch_tree, "CAMERA_REMAPPINGS")
    topics = module_constant(launch_tree, "TOPIC_REMAPPINGS")
    assert sorted(cameras.values()) == sorted(
        camera_topic(camera, "raw") for camera in ("left", "right", "global")
    )
    for camera in ("left", "right", "global"):
        # the compressed topic is the raw one + "/compressed", which the launch file remaps
        assert camera_topic(camera, "compressed") == camera_topic(camera, "raw") + "/compressed"
    assert sorted(topics.values()) == sorted([JOINT_STATES, COMMANDS, DIAGNOSTICS])
    assert topics["diagnostics"] == "/diagnostics"  # where aggregators listen


def test_yaml_keys_are_the_node_parameters():
    document = yaml.safe_load(CONFIG.read_text())
    assert list(document) == ["/**"]
    keys = set(document["/**"]["ros__parameters"])
    names = {item.name for item in fields(PolicyNodeParameters)}
    assert keys <= names, keys - names
    text = CONFIG.read_text()
    for name in names - keys:  # left to the user: shown as commented examples
        assert f"# {name}:" in text, name


def test_yaml_loads_into_the_node_through_params_file(ros_context, tmp_path):
    metadata = make_metadata(joint_dim=3, action_dim=3)
    policy = write_onnx_policy(tmp_path / "p.onnx", metadata)
    node = PolicyNode(
        context=ros_context,
        cli_args=["--ros-args", "--params-file", str(CONFIG)],
        parameter_overrides=[
            Parameter("model_path", value=str(policy)),
            Parameter("joint_lower_limits", value=[-1.0] * 3),
            Parameter("joint_upper_limits", value=[1.0] * 3),
        ],
    )
    try:
        expected = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
        for name, value in expected.items():
            assert node.get_parameter(name).value == value, name
        assert not node.get_parameter("image_size").value  # checked only when set
    finally:
        node.destroy_node()


def test_aloha_config_loads_into_the_node_for_an_aloha_policy(ros_context, tmp_path):
    from lapo_ros.dataset.aloha import JOINT_NAMES

    aloha_config = ROOT / "config" / "aloha_policy.yaml"
    metadata = make_metadata(joint_dim=14, action_dim=14)
    metadata.joint_names, metadata.rate_hz = list(JOINT_NAMES), 50.0
    policy = write_onnx_policy(tmp_path / "aloha.onnx", metadata)
    node = PolicyNode(
        context=ros_context,
        cli_args=["--ros-args", "--params-file", str(aloha_config)],
        parameter_overrides=[Parameter("model_path", value=str(policy))],
    )
    try:
        expected = yaml.safe_load(aloha_config.read_text())["/**"]["ros__parameters"]
        assert set(expected) <= {item.name for item in fields(PolicyNodeParameters)}
        for name, value in expected.items():
            assert node.get_parameter(name).value == value, name
        assert len(expected["joint_lower_limits"]) == len(JOINT_NAMES) == 14
    finally:
        node.destroy_node()
