"""Make a pip-installed prefix an ament prefix that `ros2 run` and `ros2 launch` can use.

pip puts a package's console scripts in <prefix>/bin; ros2run and launch_ros look for them
in <prefix>/lib/<package>/ (where colcon installs them, through setup.cfg). This links every
console script of the installed distribution there, and removes links it no longer has:

    .venv/bin/python tools/link_ros_executables.py lapo_ros
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path


def link_executables(package: str) -> None:
    """Link <prefix>/lib/<package>/<name> -> <prefix>/bin/<name> for each console script."""
    try:
        names = {entry.name for entry in distribution(package).entry_points
                 if entry.group == "console_scripts"}
    except PackageNotFoundError:
        sys.exit(f"{package} is not installed for {sys.executable}: run `pip install .` first")
    scripts = Path(sysconfig.get_path("scripts"))
    libexec = Path(sysconfig.get_path("data")) / "lib" / package
    libexec.mkdir(parents=True, exist_ok=True)
    for entry in libexec.iterdir():
        if entry.name not in names:
            entry.unlink()
    for name in sorted(names):
        if not (scripts / name).is_file():
            sys.exit(f"console script {name} of {package} is missing from {scripts}")
        link = libexec / name
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(scripts / name, libexec))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", help="installed distribution, e.g. lapo_ros")
    link_executables(parser.parse_args().package)


if __name__ == "__main__":
    main()
