"""``tools/known_answer_trajectory.py``: the known-answer problems followed over training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "known_answer_trajectory.py"


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300, cwd=REPO)


def test_typed_overrides_and_scenes_reach_the_agent_and_each_count_prints_a_row():
    result = run_tool("bandit", "--updates", "1", "2", "--scenes", "8",
                      "--set", "seed=1", "--set", "fused_adam=true")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bandit, 8 scenes, overrides {'seed': 1, 'fused_adam': True}")
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and
            line.split("|")[1].strip().isdigit()]
    assert [int(row[0]) for row in rows] == [1, 2]
    assert all(float(row[1]) >= 0.0 for row in rows)  # the check's figure


def test_bad_arguments_are_refused_by_name():
    chain = run_tool("chain", "--updates", "1", "--scenes", "8")
    assert chain.returncode == 2 and "--scenes" in chain.stderr
    for setting, named in (("sead=1", "unknown option(s) sead"), ("seed=x", "seed must be int")):
        refused = run_tool("bandit", "--updates", "1", "--set", setting)
        assert refused.returncode == 2 and f"--set: LAPOConfig: {named}" in refused.stderr
        assert "Traceback" not in refused.stderr
