"""The package's import rules are folder rules: what each sub-package may import.

Read from the syntax tree of every module (imports inside functions included), plus a real
import of the robot side in a fresh interpreter to show it runs without torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from import_graph import ROOT, imported_modules

PACKAGE = ROOT / "lapo_ros"
ROS = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "std_srvs", "trajectory_msgs",
       "diagnostic_msgs", "builtin_interfaces", "launch", "launch_ros"}
TORCH = {"torch", "torchvision"}
# Only these modules talk ROS 2: the nodes, the node's parameter declarations and the
# closed-loop harness that runs the sim node next to the policy node.
ROS_MODULES = {"robot/node.py", "robot/parameters.py", "sim/node.py", "sim/closed_loop.py",
               "sim/aloha/node.py", "sim/aloha/closed_loop.py"}
# Sub-package -> (the lapo_ros sub-packages it may import, third-party modules it must not).
FOLDER_RULES = {
    "common": ({"common"}, TORCH | {"h5py", "rosbags", "onnxruntime"}),
    "bags": ({"common", "dataset", "bags"}, TORCH),
    "dataset": ({"common", "dataset"}, TORCH | {"rosbags"}),
    "robot": ({"common", "robot"}, {"h5py", "rosbags", "torchvision"}),
    "sim": ({"common", "sim"}, TORCH | {"h5py"}),
    # export checks each policy file through the node's runtime
    "lapo": ({"common", "dataset", "robot", "lapo"}, {"rosbags"}),
    "demo": ({"common", "bags", "dataset", "sim", "lapo", "demo"}, set()),
}
# Inside the learning core, data flows one way: a layer imports only layers before it.
LAPO_LAYERS = ("compute", "data", "models", "algorithms", "training", "export", "evaluation")


def modules_of(folder: str):
    return sorted((PACKAGE / folder).rglob("*.py"))


def lapo_ros_parts(names: set[str]) -> set[tuple[str, ...]]:
    return {tuple(name.split(".")[1:]) for name in names
            if name.startswith("lapo_ros.") and name.count(".") >= 1}


def test_every_module_lives_in_a_ruled_sub_package():
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    assert top == {"__init__.py"}, f"modules outside a sub-package: {sorted(top)}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == FOLDER_RULES.keys()


@pytest.mark.parametrize("folder", sorted(FOLDER_RULES))
def test_sub_package_imports_only_what_its_rule_allows(folder):
    allowed, forbidden = FOLDER_RULES[folder]
    for path in modules_of(folder):
        where = path.relative_to(PACKAGE).as_posix()
        names = imported_modules(path)
        tops = {name.split(".")[0] for name in names}
        assert not tops & forbidden, f"{where} imports {sorted(tops & forbidden)}"
        if where not in ROS_MODULES:
            assert not tops & ROS, f"{where} imports ROS 2 ({sorted(tops & ROS)})"
        used = {parts[0] for parts in lapo_ros_parts(names) if parts}
        assert used <= allowed, f"{where} imports lapo_ros.{sorted(used - allowed)}"


def test_robot_imports_torch_only_inside_the_torchscript_backend():
    for path in modules_of("robot"):
        tops = {n.split(".")[0] for n in imported_modules(path, module_level_only=True)}
        assert not tops & TORCH, f"{path.relative_to(PACKAGE)} imports torch at module level"


def test_learning_core_layers_import_only_earlier_layers():
    for path in modules_of("lapo"):
        parts = path.relative_to(PACKAGE / "lapo").with_suffix("").parts
        if parts[0] == "__init__":
            continue
        layer = LAPO_LAYERS.index(parts[0])
        for used in lapo_ros_parts(imported_modules(path)):
            if len(used) > 1 and used[0] == "lapo" and used[1] in LAPO_LAYERS:
                assert LAPO_LAYERS.index(used[1]) <= layer, \
                    f"lapo/{'/'.join(parts)} imports lapo.{used[1]} (a later layer)"


def test_the_robot_side_and_the_converter_import_without_torch():
    code = ("import sys; import lapo_ros.robot.node, lapo_ros.sim.node, lapo_ros.bags.convert, "
            "lapo_ros.dataset.inspect; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "importing them loaded torch"
