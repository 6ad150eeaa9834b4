"""What the training loop adds around the LAPO update: checkpoints and batch supply.

1. Checkpoint write/read: ``save_training_checkpoint`` (the agent's file plus the
   training record as one more zip entry) against the baseline of putting the record
   into the pickled payload (``agent.save`` + ``torch.load`` + ``torch.save``); reading
   the record with ``read_training_record`` against a full ``torch.load``.
2. Batch supply: the trainer's step-indexed batches (``step_batches``, 0 and 2 loader
   workers) against the buffer's own ``sample`` (the seed's ``agent.train`` path).

    python benchmarks/trainer_io.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

from common import (
    QUICK_NOTE,
    Table,
    add_repo_to_path,
    benchmark_parser,
    emit,
    mebibytes,
    milliseconds,
    quick_threads,
    ratio,
    speedup,
    time_interleaved,
)

add_repo_to_path()

JOINT_DIM = 16


def _write_data(path: Path, image_size: int, episodes: int, steps: int) -> Path:
    import numpy as np

    from lapo_ros.dataset.layout import Episode, write_episodes

    rng = np.random.default_rng(0)
    shape = (steps, image_size, image_size, 3)

    def episode() -> Episode:
        joint = rng.normal(size=(steps, JOINT_DIM)).astype(np.float32)
        return Episode(*(rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)),
                       joint=joint, action=joint + 0.1, reward=np.zeros(steps, np.float32),
                       terminal=True)

    write_episodes(path, [episode() for _ in range(episodes)],
                   joint_names=[f"j{i}" for i in range(JOINT_DIM)], rate_hz=10.0)
    return path


def checkpoint_table(agent, folder: Path, repeats: int) -> Table:
    import torch

    from lapo_ros.lapo.training.checkpoint import read_training_record, save_training_checkpoint

    record = {"step": 1, "config": {"batch_size": 64}, "joint_names": ["j"] * JOINT_DIM}
    ours, baseline = folder / "ours.pt", folder / "baseline.pt"

    def write_baseline() -> None:
        agent.save(baseline)
        payload = torch.load(baseline, map_location="cpu", weights_only=True)
        payload["training"] = record
        torch.save(payload, baseline)

    writes = time_interleaved({
        "payload": write_baseline,
        "zip": lambda: save_training_checkpoint(agent, ours, record),
    }, repeats=repeats)
    reads = time_interleaved({
        "payload": lambda: torch.load(baseline, map_location="cpu",
                                      weights_only=True)["training"],
        "zip": lambda: read_training_record(ours),
    }, repeats=repeats)
    size = ours.stat().st_size
    table = Table("Training checkpoint, MultimodalLatent (p50 over round-robin repeats)",
                  ["operation", "variant", "ms", "speed-up", "file MiB"])
    for operation, timings in (("write", writes), ("read training record", reads)):
        base = timings["payload"].p50
        table.add_row(operation, "record in the pickled payload (baseline)",
                      milliseconds(base), "1.00x", mebibytes(size))
        table.add_row(operation, "record as a zip entry (trainer)",
                      milliseconds(timings["zip"].p50), speedup(timings["zip"].p50, base),
                      mebibytes(size))
    table.notes.append("The file holds online + target networks, 3 Adam states and the "
                       "statistics; the page cache is hot (the same file is rewritten).")
    return table


def batch_table(data: Path, image_size: int, batch_size: int, batches: int) -> Table:
    import torch

    from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer
    from lapo_ros.lapo.data.step_batches import step_batches

    device = torch.device("cpu")
    buffer = MultimodalReplayBuffer(JOINT_DIM, JOINT_DIM, device, image_size)
    buffer.load_from_hdf5(data)

    def rate(make) -> float:
        iterator = make()
        next(iterator)  # worker start-up and first-touch excluded
        start = time.perf_counter()
        for _ in itertools.islice(iterator, batches):
            pass
        return batches * batch_size / (time.perf_counter() - start)

    def steps(workers: int):
        return lambda: step_batches(buffer, seed=0, rank=0, batch_size=batch_size,
                                    first_step=0, last_step=batches + 1, device=device,
                                    num_workers=workers)

    variants = {
        "buffer.sample (baseline, agent.train's path)":
            lambda: (buffer.sample(batch_size) for _ in range(batches + 1)),
        "step_batches, 0 workers": steps(0),
        "step_batches, 2 workers": steps(2),
    }
    rates = {name: rate(make) for name, make in variants.items()}
    base = next(iter(rates.values()))
    table = Table(f"Training batches to the device, {image_size}x{image_size}, batch "
                  f"{batch_size} (CPU)", ["source", "transitions/s", "vs baseline"])
    for name, value in rates.items():
        table.add_row(name, f"{value:,.0f}", ratio(value, base))
    table.notes.append("step_batches makes batch t a function of (seed, rank, t): exact "
                       "resume and per-rank streams; workers only add throughput.")
    return table


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    quick_threads(args.quick)
    import torch

    from lapo_ros.lapo.algorithms.lapo import MultimodalLatent
    from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer

    image_size = 64 if args.quick else 224
    with tempfile.TemporaryDirectory(prefix="lapo_trainer_io_") as tmp:
        folder = Path(tmp)
        data = _write_data(folder / "data.hdf5", image_size, episodes=4,
                           steps=20 if args.quick else 60)
        buffer = MultimodalReplayBuffer(JOINT_DIM, JOINT_DIM, "cpu", image_size)
        buffer.load_from_hdf5(data)
        agent = MultimodalLatent(action_dim=JOINT_DIM, replay_buffer=buffer,
                                 device=torch.device("cpu"))
        agent.train(iterations=1, batch_size=2)  # optimizer state exists, as in a run
        tables = [
            checkpoint_table(agent, folder, repeats=3 if args.quick else 7),
            batch_table(data, image_size, batch_size=16 if args.quick else 64,
                        batches=5 if args.quick else 40),
        ]
    if args.quick:
        for table in tables:
            table.notes.append(QUICK_NOTE)
    emit(tables, args.out)


if __name__ == "__main__":
    main()
