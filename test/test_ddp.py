"""Data-parallel training on CPU: gloo, 2 processes (gradient averaging, then torchrun)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lapo_ros.lapo.training import distributed
from lapo_ros.lapo.training.checkpoint import read_training_record

sys.path.insert(0, str(Path(__file__).parent))
from training_fixtures import write_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORLD = 2


def _gloo_threads() -> list[str]:
    """Names of this process's gloo threads (Linux: /proc/self/task/*/comm)."""
    names = [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]
    return [name for name in names if "gloo" in name]


def _two_optimizer_worker(rank: int, init_file: str, results: str) -> None:
    """Each rank: its own data, two optimizers (one network in two losses, as LAPO)."""
    # a file rendezvous (no port to clash with concurrent runs); a dead peer fails the other
    # rank in a minute instead of gloo's default 30
    distributed.init_process_group(backend="gloo", init_method=f"file://{init_file}", rank=rank,
                                   world_size=WORLD, timeout=timedelta(seconds=60))
    context = distributed.DistributedContext(rank=rank, world_size=WORLD)
    torch.manual_seed(100 + rank)  # different initial weights: broadcast must fix them
    encoder, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
    distributed.broadcast_modules([encoder, head], context)
    first = torch.optim.SGD(list(encoder.parameters()) + list(head.parameters()), lr=0.1)
    second = torch.optim.SGD(head.parameters(), lr=0.1)
    distributed.average_gradients_before_step([first, second], context)
    x = torch.arange(6, dtype=torch.float32).view(2, 3) * (rank + 1)  # per-rank batch
    for optimizer, loss_of in (
        (first, lambda f: head(f).pow(2).mean()),
        (second, lambda f: -head(f.detach()).mean()),
    ):
        optimizer.zero_grad()
        loss_of(encoder(x)).backward()
        optimizer.step()
    drift = distributed.parameter_drift([encoder, head], context)
    threads_in_use = _gloo_threads()
    distributed.shutdown_distributed(context)
    torch.save(
        {
            "state": {
                **encoder.state_dict(),
                **{f"head.{k}": v for k, v in head.state_dict().items()},
            },
            "drift": drift,
            "gloo_threads": (threads_in_use, _gloo_threads()),
        },
        f"{results}.{rank}",
    )


def _single_process_reference() -> dict[str, torch.Tensor]:
    """The same two updates with each gradient averaged over the two ranks' batches."""
    torch.manual_seed(100)
    encoder, head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
    params = list(encoder.parameters()) + list(head.parameters())
    batches = [torch.arange(6, dtype=torch.float32).view(2, 3) * (r + 1) for r in range(WORLD)]
    for group, loss_of in (
        (params, lambda f: head(f).pow(2).mean()),
        (list(head.parameters()), lambda f: -head(f.detach()).mean()),
    ):
        grads = [torch.zeros_like(p) for p in group]
        for x in batches:
            parts = torch.autograd.grad(loss_of(encoder(x)), group)
            grads = [g + part / WORLD for g, part in zip(grads, parts, strict=True)]
        with torch.no_grad():
            for p, g in zip(group, grads, strict=True):
                p -= 0.1 * g
    return {**encoder.state_dict(), **{f"head.{k}": v for k, v in head.state_dict().items()}}


def test_gradients_are_averaged_before_every_optimizer_step(tmp_path):
    results = str(tmp_path / "result")
    mp.start_processes(
        _two_optimizer_worker,
        args=(str(tmp_path / "init"), results),
        nprocs=WORLD,
        join=True,
        start_method="spawn",
    )
    outcome = [torch.load(f"{results}.{rank}", weights_only=True) for rank in range(WORLD)]
    expected = _single_process_reference()
    for rank in range(WORLD):
        assert outcome[rank]["drift"] == 0.0
        for key, value in expected.items():
            torch.testing.assert_close(outcome[rank]["state"][key], value, rtol=0, atol=1e-6)
        # the group ends at shutdown, not in interpreter exit, racing the other rank's exit
        in_use, after_shutdown = outcome[rank]["gloo_threads"]
        assert in_use and not after_shutdown, f"rank {rank}: gloo threads {after_shutdown} " \
            "outlived shutdown_distributed: something still references the process group"


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_and_stay_in_sync(tmp_path):
    data = write_dataset(tmp_path / "data.hdf5", episodes=4, steps=6)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={WORLD}",
            str(REPO / "training" / "train.py"),
            "--data",
            str(data),
            "--out",
            str(run_dir),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--image-size",
            "32",
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--log-every",
            "1",
            "--val-every",
            "3",
            "--checkpoint-every",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done at step 3") == 1  # rank 0 reports; the drift check passed
    record = read_training_record(run_dir / "checkpoints" / "last.pt")
    assert record["world_size"] == WORLD and record["step"] == 3
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "3"]  # rank 0 logs once
