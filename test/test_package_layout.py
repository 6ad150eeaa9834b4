"""The ament_python package is complete: manifest and dependencies, installed share files,
and executables where `ros2 run` and `ros2 launch` look for them."""

from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory, get_search_paths
from catkin_pkg.package import parse_package
from import_graph import ROOT, imported_modules

ROS_PACKAGES = ("rclpy", "sensor_msgs", "std_msgs", "std_srvs", "trajectory_msgs",
                "diagnostic_msgs", "builtin_interfaces", "rcl_interfaces", "launch", "launch_ros",
                "ament_index_python")
# Top-level module the code imports -> its key in package.xml (a ROS package: its own name);
# None: no rosdep key, installed with pip (requirements.txt).
DEPENDENCY_KEYS = {
    **{name: name for name in ROS_PACKAGES},
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "onnxruntime": "python3-onnxruntime-gpu-pip",
    "torch": "python3-torch",
    "torchvision": "python3-torchvision",
    "h5py": "python3-h5py",
    "rosbags": "python3-rosbags-pip",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "onnx": None,
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
    "catkin_pkg": "python3-catkin-pkg",
    # the optional extra lapo_ros[aloha] (the ALOHA sim): pip only, see setup.py
    "gym_aloha": None,
    "dm_control": None,
    "mujoco": None,
    "triton": None,  # comes with torch; the ALOHA sim loads it first when present
}
ROBOT_EXECUTABLES = ("policy_node", "sim_node")
ROBOT_OPTIONAL = {"torch"}  # policy_node imports it only for TorchScript (.pt) policies
TRAINING = {"LAPO_ROS_TRAINING": "1"}  # the condition of the training-only dependencies


def console_scripts() -> dict[str, tuple[str, str]]:
    """Executable name -> (module, function), from setup.py's entry points."""
    entries = re.findall(r'"(\w+) = ([\w.]+):(\w+)"', (ROOT / "setup.py").read_text())
    return {name: (module, function) for name, module, function in entries}


def module_file(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def package_files(module: str) -> list[Path]:
    """The repository files Python runs to import ``module`` (its packages' __init__ too)."""
    parts = module.split(".")
    candidates = []
    for depth in range(1, len(parts) + 1):
        base = ROOT.joinpath(*parts[:depth])
        candidates += [base / "__init__.py", base.with_suffix(".py")]
    return [path for path in candidates if path.is_file()]


def third_party_imports(roots) -> set[str]:
    """Top-level modules from outside the repository that ``roots`` import, following the
    package modules they import (at any depth, including imports inside functions)."""
    local = {path.stem for path in [*ROOT.glob("test/*.py"), *ROOT.glob("benchmarks/*.py")]}
    seen, pending, found = set(), list(roots), set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "lapo_ros":
                pending += package_files(name)
            elif top not in sys.stdlib_module_names and top not in local:
                found.add(top)
    return found


def dependency_keys(modules: set[str]) -> set[str]:
    unknown = modules - DEPENDENCY_KEYS.keys()
    assert not unknown, (f"imported {sorted(unknown)}: add its rosdep key to package.xml and "
                         f"DEPENDENCY_KEYS here (None if it has none)")
    return {DEPENDENCY_KEYS[module] for module in modules} - {None}


def declared(kind: str, context: dict[str, str]) -> set[str]:
    manifest = parse_package(ROOT / "package.xml")  # validates; raises InvalidPackage
    manifest.evaluate_conditions(context)
    return {d.name for d in getattr(manifest, kind) if d.evaluated_condition}


def test_manifest_is_valid_format_3_ament_python():
    manifest = parse_package(ROOT / "package.xml")
    assert manifest.package_format == 3
    assert manifest.name == "lapo_ros"
    assert manifest.get_build_type() == "ament_python"


def test_exec_depends_are_exactly_what_the_package_imports():
    sources = [*ROOT.glob("lapo_ros/**/*.py"), *ROOT.glob("launch/*.py"),
               *ROOT.glob("training/*.py")]
    used = dependency_keys(third_party_imports(sources))
    assert "rclpy" in used and "python3-torch" in used
    exec_depends = declared("exec_depends", TRAINING)
    assert used <= exec_depends, f"imported but not in package.xml: {sorted(used - exec_depends)}"
    assert exec_depends <= used, f"in package.xml but not imported: {sorted(exec_depends - used)}"


def test_a_robot_rosdep_install_pulls_what_the_nodes_need_and_no_training_stack():
    scripts = console_scripts()
    roots = [module_file(scripts[name][0]) for name in ROBOT_EXECUTABLES]
    robot = third_party_imports([*roots, *ROOT.glob("launch/*.py")])
    assert "onnxruntime" in robot and robot >= ROBOT_OPTIONAL
    needed = dependency_keys(robot - ROBOT_OPTIONAL)
    assert declared("exec_depends", {}) == needed, "set `condition` in package.xml to match"


def test_test_depends_are_what_the_tests_import_beyond_the_exec_depends():
    used = dependency_keys(third_party_imports(ROOT.glob("test/*.py")))
    assert used - declared("exec_depends", TRAINING) == declared("test_depends", TRAINING)


def test_versions_agree():
    version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    assert parse_package(ROOT / "package.xml").version == version
    sys.path.insert(0, str(ROOT))
    import lapo_ros

    assert lapo_ros.__version__ == version


def test_colcon_installs_scripts_where_ros2_run_looks():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["develop"]["script_dir"] == "$base/lib/lapo_ros"
    assert config["install"]["install_scripts"] == "$base/lib/lapo_ros"


def test_console_scripts_point_at_real_main_functions():
    scripts = console_scripts()
    assert scripts.keys() >= {"policy_node", "bag_to_hdf5", "lapo_hdf5"}
    for name, (module, function) in scripts.items():
        path = module_file(module)
        assert path.is_file(), f"console script {name}: {path} does not exist"
        tree = ast.parse(path.read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in functions, f"console script {name}: {module} has no {function}()"


def lapo_ros_prefixes() -> list[Path]:
    """Every ament prefix on AMENT_PREFIX_PATH that registers lapo_ros (the venv after
    `make setup`, install/lapo_ros after colcon build)."""
    prefixes = [Path(p) for p in get_search_paths()
                if (Path(p) / "share/ament_index/resource_index/packages/lapo_ros").is_file()]
    assert prefixes, "lapo_ros is not in the ament index: run `make setup`, or set " \
                     "AMENT_PREFIX_PATH to the venv or install/lapo_ros"
    return prefixes


def test_share_directory_is_found_through_the_ament_index():
    prefixes = lapo_ros_prefixes()
    assert Path(get_package_share_directory("lapo_ros")) == prefixes[0] / "share" / "lapo_ros"
    for prefix in prefixes:
        share = prefix / "share" / "lapo_ros"
        assert (share / "package.xml").read_text() == (ROOT / "package.xml").read_text(), \
            f"{share}/package.xml is out of date: make setup (or colcon build)"
        for launch_file in (ROOT / "launch").glob("*.launch.py"):
            assert (share / "launch" / launch_file.name).is_file()
        for config_file in (ROOT / "config").iterdir():
            assert (share / "config" / config_file.name).is_file()


def test_every_executable_is_where_ros2_run_and_launch_look_and_runs_this_python():
    for prefix in lapo_ros_prefixes():
        libexec = prefix / "lib" / "lapo_ros"  # ros2run, launch_ros: prefix/lib/<package>
        for name in console_scripts():
            path = libexec / name
            assert path.is_file() and os.access(path, os.X_OK), f"{path}: no executable"
            interpreter = path.read_text().splitlines()[0].removeprefix("#!").split()
            result = subprocess.run([*interpreter, "-c", "import sys; print(sys.prefix)"],
                                    capture_output=True, text=True, check=True)
            assert result.stdout.strip() == sys.prefix, f"{path} runs {interpreter}"


# Each executable started with arguments that end it at once: (arguments, status, output).
QUICK_RUNS = {
    "bag_to_hdf5": (["--help"], 0, "usage: bag_to_hdf5"),
    "lapo_hdf5": (["--help"], 0, "usage: lapo_hdf5"),
    "policy_node": ([], 1, "parameter 'model_path' is required"),
    "sim_node": (["--ros-args", "-p", "max_steps:=0"], 1, "parameter 'max_steps' must be >= 1"),
    "aloha_sim_node": (["--ros-args", "-p", "max_steps:=0"], 1,
                       "parameter 'max_steps' must be >= 1"),
}
OPTIONAL_EXTRAS = {"aloha_sim_node": "gym_aloha"}  # executable -> module of its extra


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_installed_executable_starts(name):
    assert name in QUICK_RUNS, f"add a quick run of {name} to QUICK_RUNS"
    if name in OPTIONAL_EXTRAS:
        pytest.importorskip(OPTIONAL_EXTRAS[name],
                            reason=f"{name} needs an optional extra of lapo_ros")
    arguments, status, output = QUICK_RUNS[name]
    for prefix in lapo_ros_prefixes():
        result = subprocess.run([prefix / "lib" / "lapo_ros" / name, *arguments],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == status, result.stdout + result.stderr
        assert output in result.stdout + result.stderr
