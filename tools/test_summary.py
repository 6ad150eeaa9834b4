"""Print the closing line of a colcon test run from pytest's JUnit XML: 'N passed, N failed'."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "build/lapo_ros/pytest.xml")
    if not path.is_file():
        print(f"{path}: no test report; colcon test did not run pytest", file=sys.stderr)
        return 1
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites)
              for key in ("tests", "failures", "errors", "skipped")}
    failed = counts["failures"] + counts["errors"]
    passed = counts["tests"] - failed - counts["skipped"]
    print(f"tests: {passed} passed, {failed} failed, {counts['skipped']} skipped")
    return 1 if failed or counts["tests"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
