"""The ament_python package is complete: manifest, installed share files, and executables
where `ros2 run` and `ros2 launch` look for them."""

from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory, get_search_paths

ROOT = Path(__file__).resolve().parents[1]
ROS_PACKAGES = {
    "rclpy",
    "sensor_msgs",
    "std_msgs",
    "std_srvs",
    "trajectory_msgs",
    "diagnostic_msgs",
    "builtin_interfaces",
    "ament_index_python",
    "launch",
    "launch_ros",
    "rcl_interfaces",
}


def console_scripts() -> dict[str, tuple[str, str]]:
    """Executable name -> (module, function), from setup.py's entry points."""
    entries = re.findall(r'"(\w+) = ([\w.]+):(\w+)"', (ROOT / "setup.py").read_text())
    return {name: (module, function) for name, module, function in entries}


def manifest() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def imported_top_level_modules(paths) -> set[str]:
    modules = set()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def test_manifest_is_format_3_ament_python():
    root = manifest()
    assert root.get("format") == "3"
    assert root.findtext("name") == "lapo_ros"
    assert root.findtext("export/build_type") == "ament_python"
    assert "python3-pytest" in {e.text for e in root.findall("test_depend")}


def test_every_imported_ros_package_is_an_exec_depend():
    sources = list((ROOT / "lapo_ros").rglob("*.py")) + list((ROOT / "launch").glob("*.py"))
    used = imported_top_level_modules(sources) & ROS_PACKAGES
    declared = {e.text for e in manifest().findall("exec_depend")}
    assert "rclpy" in used
    assert used <= declared, f"imported but not in package.xml: {sorted(used - declared)}"


def test_versions_agree():
    setup_py = (ROOT / "setup.py").read_text()
    version = re.search(r'version="([^"]+)"', setup_py).group(1)
    assert manifest().findtext("version") == version
    sys.path.insert(0, str(ROOT))
    import lapo_ros

    assert lapo_ros.__version__ == version


def test_scripts_install_where_ros2_run_looks():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["develop"]["script_dir"] == "$base/lib/lapo_ros"
    assert config["install"]["install_scripts"] == "$base/lib/lapo_ros"


def test_console_scripts_point_at_real_main_functions():
    setup_py = (ROOT / "setup.py").read_text()
    entries = re.findall(r'"(\w+) = ([\w.]+):(\w+)"', setup_py)
    assert {name for name, _, _ in entries} >= {"policy_node", "bag_to_hdf5", "lapo_hdf5"}
    for name, module, function in entries:
        path = ROOT / (module.replace(".", "/") + ".py")
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
}


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_installed_executable_starts(name):
    assert name in QUICK_RUNS, f"add a quick run of {name} to QUICK_RUNS"
    arguments, status, output = QUICK_RUNS[name]
    for prefix in lapo_ros_prefixes():
        result = subprocess.run([prefix / "lib" / "lapo_ros" / name, *arguments],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == status, result.stdout + result.stderr
        assert output in result.stdout + result.stderr
