"""training/evaluate.py: a policy file on recorded episodes -> per-joint errors and plots."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg
from torch import nn

from lapo_ros.common.policy_file import PolicyMetadata
from lapo_ros.dataset.layout import Episode, write_episodes
from lapo_ros.lapo.evaluation import EvaluationError, evaluate_policy_file
from lapo_ros.lapo.export import export_policy

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import JOINT_NAMES, RATE_HZ  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning:torch.jit")

REPO = Path(__file__).resolve().parents[1]
POLICY_SIZE = 32


class AffinePolicy(nn.Module):
    """action = scale * joint + offset + (mean pixel of the global camera) * pixel_gain."""

    def __init__(self, scale: float, offset: float, pixel_gain: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset, self.pixel_gain = scale, offset, pixel_gain

    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        brightness = image[:, 6:9].float().mean(dim=(1, 2, 3)).unsqueeze(1) / 255.0
        return joint * self.scale + self.offset + brightness * self.pixel_gain


class FirstJoints(nn.Module):
    def forward(self, image: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        return joint[:, :4] + 0.0 * image[:, 0, 0, :1].float()


def _metadata() -> PolicyMetadata:
    return PolicyMetadata(
        joint_names=JOINT_NAMES,
        image_size=[POLICY_SIZE, POLICY_SIZE],
        action_dim=4,
        joint_dim=4,
        rate_hz=RATE_HZ,
    )


def _episodes(count: int, steps: int, image_size: int, seed: int = 0) -> list[Episode]:
    """Actions follow 2 * joint + 1 exactly; the global camera has constant brightness."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        joint = rng.normal(size=(steps, 4)).astype(np.float32)
        shape = (steps, image_size, image_size, 3)
        glob = np.full(shape, 51, dtype=np.uint8)  # 51 / 255 = 0.2 everywhere
        episodes.append(
            Episode(
                left_image=rng.integers(0, 256, shape, dtype=np.uint8),
                right_image=rng.integers(0, 256, shape, dtype=np.uint8),
                global_image=glob,
                joint=joint,
                action=2.0 * joint + 1.0,
                reward=np.zeros(steps, np.float32),
                terminal=True,
            )
        )
    return episodes


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "held_out.hdf5"
    # stored at 48 px: evaluation must resize to the policy's 32 px
    write_episodes(path, _episodes(3, 7, 48), joint_names=JOINT_NAMES, rate_hz=RATE_HZ)
    return path


def _main(*args: str) -> int:
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO / "training" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_oracle_policy_has_zero_error(tmp_path, data, suffix):
    # brightness 0.2 * gain -1 cancels offset 0.2 -> exactly 2 * joint + 1
    policy = export_policy(
        AffinePolicy(2.0, 1.2, pixel_gain=-1.0), _metadata(), tmp_path / f"oracle{suffix}"
    )
    report = evaluate_policy_file(policy, data, tmp_path / "eval")
    assert report.episodes == ["episode 0", "episode 1", "episode 2"]
    assert [e.name for e in report.errors] == JOINT_NAMES
    assert max(e.max_abs for e in report.errors) < 1e-5


def test_error_table_matches_numpy_and_plot_is_written(tmp_path, data):
    policy = export_policy(AffinePolicy(1.0, 0.0), _metadata(), tmp_path / "policy.pt")
    out = tmp_path / "eval"
    assert (
        _main(
            "--policy",
            str(policy),
            "--data",
            str(data),
            "--out",
            str(out),
            "--episodes",
            "0",
            "2",
            "--plots",
            "2",
        )
        == 0
    )

    recorded = np.concatenate([e.action for i, e in enumerate(_episodes(3, 7, 48)) if i in (0, 2)])
    joint = (recorded - 1.0) / 2.0
    error = joint - recorded
    with (out / "errors.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["joint"] for row in rows] == JOINT_NAMES
    for j, row in enumerate(rows):
        assert float(row["mae"]) == pytest.approx(np.abs(error[:, j]).mean(), rel=1e-5)
        assert float(row["rmse"]) == pytest.approx(np.sqrt((error[:, j] ** 2).mean()), rel=1e-5)
        assert float(row["max_abs"]) == pytest.approx(np.abs(error[:, j]).max(), rel=1e-5)
    assert "| left_shoulder |" in (out / "errors.md").read_text()
    for index in (0, 2):
        picture = mpimg.imread(out / f"episode_{index}.png")
        assert picture.ndim == 3 and picture.shape[0] > 100 and picture.shape[1] > 300
    assert not (out / "episode_1.png").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "episode_0.png",
        "episode_2.png",
        "errors.csv",
        "errors.md",
    ]


def test_cli_runs_as_a_script(tmp_path, data):
    policy = export_policy(AffinePolicy(1.0, 0.5), _metadata(), tmp_path / "policy.pt")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "training" / "evaluate.py"),
            "--policy",
            str(policy),
            "--data",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "| right_gripper |" in result.stdout
    assert (tmp_path / "policy_evaluation" / "episode_0.png").is_file()


def test_bad_input_is_refused_without_output(tmp_path, data, capsys):
    module = AffinePolicy(1.0, 0.0)
    example = (torch.zeros(2, 9, POLICY_SIZE, POLICY_SIZE, dtype=torch.uint8), torch.zeros(2, 4))
    bare = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.trace(module, example), str(bare))
    out = tmp_path / "eval"
    assert _main("--policy", str(bare), "--data", str(data), "--out", str(out)) == 2
    assert "bare.pt: no 'lapo_ros' metadata" in capsys.readouterr().err
    assert not out.exists()

    renamed = _metadata()
    renamed.joint_names = list(reversed(JOINT_NAMES))
    policy = export_policy(module, renamed, tmp_path / "renamed.pt")
    with pytest.raises(EvaluationError, match="order matters"):
        evaluate_policy_file(policy, data, out)

    wider = PolicyMetadata(
        joint_names=[*JOINT_NAMES, "extra"], image_size=[32, 32], action_dim=4, joint_dim=5
    )
    wide_policy = export_policy(FirstJoints(), wider, tmp_path / "wide.pt")
    with pytest.raises(EvaluationError, match="4 joints.*the policy expects 5"):
        evaluate_policy_file(wide_policy, data, out)
    policy = export_policy(module, _metadata(), tmp_path / "policy.pt")
    assert (
        _main("--policy", str(policy), "--data", str(data), "--out", str(out), "--episodes", "5")
        == 2
    )
    assert "no episode(s) [5]; it holds 3" in capsys.readouterr().err
    assert (
        _main("--policy", str(policy), "--data", str(tmp_path / "none.hdf5"), "--out", str(out))
        == 2
    )
    assert "none.hdf5" in capsys.readouterr().err
    assert not out.exists()


def test_aloha_files_get_the_joint_names_option(tmp_path, capsys):
    from hdf5_test_data import write_aloha_file

    folder = tmp_path / "act"
    folder.mkdir()
    for index, episode in enumerate(_episodes(2, 5, POLICY_SIZE)):
        write_aloha_file(folder / f"episode_{index}.hdf5", episode,
                         {"left": "left_wrist", "right": "right_wrist", "global": "top"})
    policy = export_policy(AffinePolicy(1.0, 0.5), _metadata(), tmp_path / "policy.pt")
    out = tmp_path / "eval"
    given = ["--policy", str(policy), "--data", str(folder), "--out", str(out)]
    assert _main(*given, "--aloha-joint-names", ",".join(reversed(JOINT_NAMES))) == 2
    assert "differ from the policy's" in capsys.readouterr().err and not out.exists()
    assert _main(*given, "--aloha-rate-hz", "0") == 2
    assert capsys.readouterr().err.startswith("evaluate.py: error: --aloha-rate-hz HZ")
    assert _main(*given, "--aloha-joint-names", ",".join(JOINT_NAMES)) == 0
    assert "| right_gripper |" in capsys.readouterr().out
