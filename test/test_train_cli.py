"""training/train.py end to end: run dir, logs, checkpoints, kill -9 + resume, bad input."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lapo_ros.lapo.export import export_checkpoint
from lapo_ros.lapo.training.checkpoint import TrainingCheckpointError, read_training_record
from lapo_ros.lapo.training.config import TrainConfigError, load_train_config, resume_config
from lapo_ros.lapo.training.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import write_dataset  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(REPO / "training" / "train.py")]
TINY = ["--batch-size", "4", "--image-size", "32", "--device", "cpu", "--log-every", "1"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TRAIN, *args], capture_output=True, text=True, env=_env(), timeout=timeout, cwd=REPO
    )


def _train_module():
    """training/train.py as a module (faster than a subprocess)."""
    spec = importlib.util.spec_from_file_location("train_cli", REPO / "training" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main(*args: str) -> int:
    """training/train.py's main() in this process."""
    return _train_module().main(list(args))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "episodes.hdf5", episodes=5, steps=8)


def _steps(csv_path: Path, prefix: str) -> list[int]:
    with csv_path.open(newline="") as handle:
        return [
            int(row["step"])
            for row in csv.DictReader(handle)
            if any(v not in ("", None) for k, v in row.items() if k.startswith(prefix))
        ]


def test_cli_run_writes_config_logs_and_checkpoints(tmp_path, dataset):
    run_dir = tmp_path / "run"
    result = _run(
        "--data",
        str(dataset),
        "--out",
        str(run_dir),
        "--steps",
        "4",
        *TINY,
        "--val-every",
        "2",
        "--checkpoint-every",
        "4",
        "--num-workers",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert "done at step 4" in result.stdout
    assert "train lapo" in result.stderr  # the progress bar

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["steps"] == 4 and saved["batch_size"] == 4 and saved["image_size"] == 32
    assert saved["agent"]["expectile"] == 1.0  # from config/train.yaml
    assert saved["data"] == [str(dataset)]

    assert _steps(run_dir / "metrics.csv", "train/") == [1, 2, 3, 4]
    assert _steps(run_dir / "metrics.csv", "val/") == [2, 4]
    with (run_dir / "metrics.csv").open(newline="") as handle:
        header = next(csv.reader(handle))
    for column in (
        "train/critic_loss",
        "train/actor_loss",
        "val/action_mse",
        "val/action_mse_normalized",
        "val/q_mean",
        "val/v_mean",
    ):
        assert column in header
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    record = read_training_record(run_dir / "checkpoints" / "last.pt")
    assert record["step"] == 4 and record["algo"] == "lapo"
    assert "joint_names" not in record  # the agent's own, in its checkpoint
    assert record["best_step"] in (2, 4)
    best = read_training_record(run_dir / "checkpoints" / "best.pt")
    assert best["step"] == record["best_step"]
    payload = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert payload["step"] == 4  # the agent's own step agrees
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    # the held-out episodes are recorded, so evaluate.py --run checks exactly those
    held_out = record["val_episodes"]
    assert held_out and set(held_out) <= set(range(5)) and len(held_out) < 5
    policy = tmp_path / "policy.onnx"
    export_checkpoint(run_dir / "checkpoints" / "best.pt", policy)
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "evaluate.py"), "--policy", str(policy),
         "--run", str(run_dir), "--out", str(tmp_path / "eval")],
        capture_output=True, text=True, env=_env(), timeout=120, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert f"on {len(held_out)} episode(s)" in result.stdout
    assert f"episodes {held_out}" in (tmp_path / "eval" / "errors.md").read_text()


def _final_state(checkpoint: Path) -> dict:
    payload = torch.load(checkpoint, weights_only=True)
    return {
        "step": payload["step"],
        "modules": payload["modules"],
        "optimizers": payload["optimizers"],
        "generator": payload["generator"],
    }


def _assert_same(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, where


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, dataset):
    steps, every = 6, 2
    options = [
        "--data",
        str(dataset),
        "--steps",
        str(steps),
        *TINY,
        "--val-every",
        "6",
        "--checkpoint-every",
        str(every),
    ]
    # reference: the same run without interruption (in this process, no loader workers)
    reference = tmp_path / "reference"
    config = load_train_config(
        REPO / "config" / "train.yaml",
        {
            "data": [str(dataset)],
            "out": str(reference),
            "steps": steps,
            "batch_size": 4,
            "image_size": 32,
            "device": "cpu",
            "log_every": 1,
            "val_every": 6,
            "checkpoint_every": every,
            "num_workers": 0,
        },
    )
    # the same thread count as the subprocesses (OMP_NUM_THREADS=1): float reductions then
    # happen in the same order, so the comparison below can be bit-exact
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train(config).step == steps
    finally:
        torch.set_num_threads(threads)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*TRAIN, *options, "--out", str(killed), "--num-workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=REPO,
        start_new_session=True,
    )
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not (last.exists() and read_training_record(last)["step"] >= every):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    killed_at = read_training_record(last)["step"]
    assert every <= killed_at < steps

    result = _run("--out", str(killed), "--resume", "--num-workers", "1")
    assert result.returncode == 0, result.stderr
    assert f"done at step {steps}" in result.stdout
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    assert _steps(killed / "metrics.csv", "train/") == list(range(1, steps + 1))
    resumed, uninterrupted = (
        _final_state(d / "checkpoints" / "last.pt") for d in (killed, reference)
    )
    assert resumed["step"] == steps
    # Adam's per-parameter step count proves the optimizer state was restored, not reset
    adam = resumed["optimizers"]["critic_optimizer"]["state"][0]["step"]
    assert int(adam) == steps
    _assert_same(resumed, uninterrupted)


def test_bad_input_gives_clear_errors_and_no_run(tmp_path, dataset, capsys):
    missing = tmp_path / "missing.hdf5"
    assert _main("--data", str(missing), "--out", str(tmp_path / "a"), "--steps", "2", *TINY) == 2
    error = capsys.readouterr().err
    assert str(missing) in error and error.startswith("train.py: error:")
    assert not (tmp_path / "a" / "checkpoints").exists()

    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("steps: 3\nlearning_rate: 0.1\n")
    assert (
        _main("--data", str(dataset), "--out", str(tmp_path / "b"), "--config", str(bad_config))
        == 2
    )
    assert "bad.yaml: unknown option(s) learning_rate" in capsys.readouterr().err

    agent_typo = tmp_path / "agent.yaml"
    agent_typo.write_text("agent:\n  expectille: 0.8\n")
    with pytest.raises(TrainConfigError, match="agent.yaml: agent.*expectille"):
        load_train_config(agent_typo, {"data": [str(dataset)], "out": str(tmp_path / "c")})
    with pytest.raises(TrainConfigError, match="invalid steps=0"):
        load_train_config(None, {"data": [str(dataset)], "out": "x", "steps": 0})
    wrong_type = tmp_path / "type.yaml"
    wrong_type.write_text("batch_size: many\n")
    with pytest.raises(TrainConfigError, match="type.yaml: batch_size must be int"):
        load_train_config(wrong_type, {"data": [str(dataset)], "out": "x"})

    assert _main("--out", str(tmp_path / "nothing"), "--resume") == 2
    assert "holds no run to resume" in capsys.readouterr().err

    one_episode = write_dataset(tmp_path / "one.hdf5", episodes=1, steps=4)
    assert _main("--data", str(one_episode), "--out", str(tmp_path / "d"), *TINY) == 2
    assert "at least 2 are needed" in capsys.readouterr().err


def test_resume_refuses_other_settings_and_changed_data(tmp_path):
    data = write_dataset(tmp_path / "data.hdf5", episodes=3, steps=5)
    run_dir = tmp_path / "run"
    config = load_train_config(
        None,
        {
            "data": [str(data)],
            "out": str(run_dir),
            "steps": 2,
            "batch_size": 2,
            "image_size": 32,
            "device": "cpu",
            "num_workers": 0,
            "val_batches": 1,
        },
    )
    train(config)
    with pytest.raises(TrainConfigError, match=r"batch_size \(run: 2, now: 8\)"):
        resume_config(run_dir, {"batch_size": 8})
    with pytest.raises(TrainConfigError, match="already holds a run"):
        train(config)

    longer = resume_config(run_dir, {"steps": 3})
    assert longer.steps == 3 and longer.batch_size == 2
    write_dataset(data, episodes=4, steps=5, seed=1)  # the data changed under the run
    with pytest.raises(TrainingCheckpointError, match="trained on other episodes"):
        train(longer, resume=True)


def test_bc_baseline_trains_validates_and_reloads(tmp_path):
    from lapo_ros.lapo.algorithms.bc import BehaviorCloning
    from lapo_ros.lapo.training.checkpoint import load_trained_agent
    from lapo_ros.lapo.training.log import read_metrics

    data = write_dataset(tmp_path / "data.hdf5", episodes=3, steps=5)
    config = load_train_config(
        None,
        {
            "data": [str(data)],
            "out": str(tmp_path / "bc"),
            "algo": "bc",
            "steps": 2,
            "batch_size": 2,
            "image_size": 32,
            "device": "cpu",
            "num_workers": 0,
            "val_batches": 1,
            "log_every": 1,
        },
    )
    result = train(config)
    rows = read_metrics(result.run_dir / "metrics.csv")
    assert [row["step"] for row in rows] == [1, 2, 2]
    assert "train/bc_loss" in rows[0] and "val/action_mse" in rows[2]
    assert "val/q_mean" not in rows[2]  # no critic in BC
    agent, record = load_trained_agent(result.last_checkpoint)
    assert isinstance(agent, BehaviorCloning) and record["algo"] == "bc"
    assert agent.total_it == 2


def test_sigterm_finishes_the_step_writes_last_and_stops(tmp_path):
    from lapo_ros.lapo.training.trainer import Trainer

    data = write_dataset(tmp_path / "data.hdf5", episodes=3, steps=5)
    config = load_train_config(
        None,
        {
            "data": [str(data)],
            "out": str(tmp_path / "run"),
            "steps": 50,
            "batch_size": 2,
            "image_size": 32,
            "device": "cpu",
            "num_workers": 0,
            "val_every": 100,
            "checkpoint_every": 100,
            "log_every": 1,
        },
    )
    trainer = Trainer(config)
    original = trainer.agent.train_step

    def step_then_terminate(batch):
        metrics = original(batch)
        if trainer.agent.total_it == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a cluster pre-emption
        return metrics

    trainer.agent.train_step = step_then_terminate
    result = trainer.run()
    assert result.interrupted and result.step == 2
    assert read_training_record(result.last_checkpoint)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_process_group_stops_cleanly_with_loader_workers(tmp_path, dataset,
                                                                         stop):
    """``timeout``/systemd/SLURM signal the whole group, loader workers included."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [*TRAIN, "--data", str(dataset), "--steps", "100000", *TINY, "--val-every", "100000",
         "--checkpoint-every", "100000", "--num-workers", "2", "--out", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO,
        start_new_session=True,
    )
    metrics = run_dir / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no training steps within 120 s"
        time.sleep(0.05)
    os.killpg(process.pid, stop)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted at step" in stdout and "killed by signal" not in stderr
    step = read_training_record(run_dir / "checkpoints" / "last.pt")["step"]
    assert 3 <= step < 100000


def test_act_episode_files_train_once_labelled_and_export_alohas_names_and_rate(tmp_path,
                                                                               capsys):
    from hdf5_test_data import coded_episodes, write_aloha_file

    from lapo_ros.dataset.aloha import JOINT_NAMES

    folder = tmp_path / "act"
    folder.mkdir()
    cameras = {"left": "left_wrist", "right": "right_wrist", "global": "top"}  # ACT's sim
    for index, episode in enumerate(coded_episodes([6, 5, 6], [True] * 3)):
        episode.joint, episode.action = episode.joint[:, :14], episode.action[:, :14]
        write_aloha_file(folder / f"episode_{index}.hdf5", episode, cameras)
    options = ["--data", str(folder), "--steps", "2", *TINY, "--num-workers", "0"]
    assert _main(*options, "--out", str(tmp_path / "refused")) == 2
    assert "3 ALOHA episode file(s) say nothing of success" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    labels = tmp_path / "labels.yaml"
    labels.write_text("episode_0: true\nepisode_1: false\nepisode_2: true\n")
    assert _main(*options, "--labels", str(labels), "--out", str(tmp_path / "run")) == 0
    policy = tmp_path / "policy.onnx"
    metadata = export_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", policy)
    assert metadata.joint_names == JOINT_NAMES and metadata.rate_hz == 50.0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["labels"] == str(labels) and saved["assume_success"] is False


def _evaluate_main(*args: str) -> int:
    """training/evaluate.py's main() in this process."""
    spec = importlib.util.spec_from_file_location("evaluate_cli", REPO / "training" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


def test_aloha_joint_names_and_rate_options_reach_the_policy_and_evaluation(tmp_path, capsys):
    from hdf5_test_data import coded_episodes, write_aloha_file

    folder = tmp_path / "act"
    folder.mkdir()
    cameras = {"left": "left_wrist", "right": "right_wrist", "global": "top"}
    for index, episode in enumerate(coded_episodes([5, 5, 5], [True] * 3)):
        episode.joint, episode.action = episode.joint[:, :14], episode.action[:, :14]
        write_aloha_file(folder / f"episode_{index}.hdf5", episode, cameras, success=True)
    names = [f"{side}_joint_{i}" for side in ("left", "right") for i in range(7)]
    options = ["--data", str(folder), "--steps", "2", *TINY, "--num-workers", "0",
               "--algo", "bc"]
    for bad, expected in ((["--aloha-rate-hz", "0"], "--aloha-rate-hz HZ"),
                          (["--aloha-joint-names", "a,b"], "--aloha-joint-names NAME,NAME,...")):
        assert _main(*options, *bad, "--out", str(tmp_path / "refused")) == 2
        error = capsys.readouterr().err
        assert error.startswith("train.py: error: ") and expected in error
        assert error.count("\n") == 1 and not (tmp_path / "refused").exists()

    run_dir = tmp_path / "run"
    assert _main(*options, "--aloha-joint-names", ",".join(names), "--aloha-rate-hz", "20",
                 "--out", str(run_dir)) == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["aloha_joint_names"] == names and saved["aloha_rate_hz"] == 20.0
    assert _main("--out", str(run_dir), "--resume", "--steps", "3",  # the same names, no
                 "--aloha-joint-names", ",".join(names)) == 0  # conflict with the saved list
    policy = tmp_path / "policy.pt"
    metadata = export_checkpoint(run_dir / "checkpoints" / "last.pt", policy)
    assert metadata.joint_names == names and metadata.rate_hz == 20.0
    capsys.readouterr()
    evaluate = ["--policy", str(policy), "--run", str(run_dir), "--out", str(tmp_path / "eval")]
    assert _evaluate_main(*evaluate) == 0  # the run's names, not ALOHA's
    capsys.readouterr()
    assert _evaluate_main(*evaluate, "--aloha-joint-names", ",".join(reversed(names))) == 2
    assert "differ from the policy's" in capsys.readouterr().err


def test_aloha_joint_names_and_rate_config_keys_are_typed(tmp_path):
    names = [f"joint_{i}" for i in range(14)]
    settings = tmp_path / "aloha.yaml"
    settings.write_text(yaml.safe_dump({"aloha_joint_names": names, "aloha_rate_hz": 30}))
    config = load_train_config(settings, {"data": "d.hdf5", "out": "run"})
    assert config.aloha_joint_names == names and config.aloha_rate_hz == 30.0
    config = load_train_config(settings, {"data": "d.hdf5", "out": "run",
                                          "aloha_joint_names": "a, b"})
    assert config.aloha_joint_names == ["a", "b"]  # NAME,NAME,... means that list
    settings.write_text("aloha_rate_hz: fast\n")
    with pytest.raises(TrainConfigError, match="aloha.yaml: aloha_rate_hz must be float"):
        load_train_config(settings, {"data": "d.hdf5", "out": "run"})
    settings.write_text("aloha_joint_names: 5\n")
    with pytest.raises(TrainConfigError, match="aloha.yaml: aloha_joint_names must be"):
        load_train_config(settings, {"data": "d.hdf5", "out": "run"})


def test_the_shipped_config_runs_the_default_agent():
    """config/train.yaml spells out LAPOConfig's and BCConfig's defaults: the benchmarked
    default is what a user who trains with the shipped file gets."""
    from lapo_ros.lapo.algorithms.config import BCConfig, LAPOConfig
    from lapo_ros.lapo.training.config import read_yaml_settings

    settings = read_yaml_settings(REPO / "config" / "train.yaml")
    for section, config_class in (("agent", LAPOConfig), ("bc", BCConfig)):
        defaults = config_class().to_dict()
        assert {key: defaults[key] for key in settings[section]} == settings[section]


@pytest.mark.parametrize("algo", ["lapo", "bc"])
def test_the_compute_flags_set_the_agents_compute_options(algo):
    module = _train_module()
    required = ["--data", "d.hdf5", "--out", "run", "--algo", algo]
    names = ("autocast_dtype", "channels_last", "fused_adam", "compile_encoders")

    def compute_options(*flags: str) -> tuple:
        compute = module.compute_overrides(module.parse_args([*required, *flags]))
        config = load_train_config(module.DEFAULT_CONFIG,  # validated as the agent's config
                                   {"data": "d.hdf5", "out": "run", "algo": algo, **compute})
        options = config.agent_overrides()
        return tuple(options[name] for name in names)

    assert compute_options("--precision", "bfloat16", "--channels-last", "--fused-adam",
                           "--compile") == ("bfloat16", True, True, True)
    assert compute_options() == (None, False, False, False)  # the shipped file's
