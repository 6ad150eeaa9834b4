"""The ament_python package is complete: manifest, installed share files, console scripts."""

from __future__ import annotations

import ast
import configparser
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

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


def test_share_directory_is_found_through_the_ament_index():
    ament = pytest.importorskip("ament_index_python.packages")
    try:
        share = Path(ament.get_package_share_directory("lapo_ros"))
    except ament.PackageNotFoundError:
        pytest.fail("lapo_ros not in the ament index: is AMENT_PREFIX_PATH set (make setup)?")
    assert (share / "package.xml").is_file()
    for launch_file in (ROOT / "launch").glob("*.launch.py"):
        assert (share / "launch" / launch_file.name).is_file()
    for config_file in (ROOT / "config").iterdir():
        assert (share / "config" / config_file.name).is_file()
