"""Random-batch sampling throughput of the replay buffer against a raw numpy memmap bound.

Writes a canonical HDF5 file (three 224x224 cameras, one frame per chunk, uncompressed)
and the same frames as raw ``.npy`` files, reads them once to warm the page cache, then
times random batches of 64 transitions (each transition reads 6 frames: s and s' of three
cameras) in one process, round-robin:

- ``numpy memmap bound`` (baseline): the same frames copied from ``np.load(mmap_mode='r')``
  arrays into a reused output buffer; nothing can read these bytes much faster.
- ``TransitionSampler``: the buffer's fast path (chunk byte offsets + mmap, reused buffers).
- ``TransitionSampler, action chunks of 8``: the same with 8-step action chunks, their
  rewards and the state after the chunk (``chunk_size`` 8, issue 16).
- ``TransitionSampler, lzf file``: the h5py fallback for compressed frames.
- ``h5py dset[i] per frame``: the naive way.
- ``MultimodalReplayBuffer.sample``: the fast path plus building the TransitionBatch
  (cameras stacked to [B,9,H,W] with a copy on the device, here the CPU).

Then the trainer's ``step_batches`` with 2 DataLoader workers (TransitionBatch on the CPU)
over the same file, timed over a stream of batches.

    python benchmarks/sampler.py [--quick] [--out FILE.md]
"""

from __future__ import annotations

import itertools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import (
    Table,
    add_repo_to_path,
    benchmark_parser,
    emit,
    machine_markdown,
    ratio,
    time_interleaved,
)

add_repo_to_path()

from lapo_ros.dataset.layout import Episode, write_episodes  # noqa: E402
from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer  # noqa: E402
from lapo_ros.lapo.data.step_batches import step_batches  # noqa: E402

CAMERAS = ("left", "right", "global")


@dataclass
class SamplerBenchmarkConfig:
    image_size: int = 224
    batch_size: int = 64
    num_steps: int = 1000  # frames per camera in the file
    episode_length: int = 100
    repeats: int = 20
    loader_batches: int = 60
    num_workers: int = 2

    @classmethod
    def quick(cls) -> SamplerBenchmarkConfig:
        return cls(num_steps=200, episode_length=50, repeats=5, loader_batches=12)


def write_data(folder: Path, config: SamplerBenchmarkConfig) -> dict[str, Path]:
    """The canonical file, an lzf-compressed copy, and raw .npy frames per camera."""
    rng = np.random.default_rng(0)
    size = config.image_size
    episodes = []
    for start in range(0, config.num_steps, config.episode_length):
        length = min(config.episode_length, config.num_steps - start)
        frames = [rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8)
                  for _ in CAMERAS]
        episodes.append(Episode(
            *frames, joint=rng.normal(size=(length, 16)).astype(np.float32),
            action=rng.normal(size=(length, 16)).astype(np.float32),
            reward=rng.normal(size=length).astype(np.float32), terminal=True,
        ))
    paths = {"canonical": folder / "data.hdf5", "lzf": folder / "data_lzf.hdf5"}
    names = [f"joint_{i}" for i in range(16)]
    write_episodes(paths["canonical"], episodes, joint_names=names, rate_hz=30.0)
    write_episodes(paths["lzf"], episodes, joint_names=names, rate_hz=30.0, compression="lzf")
    for camera in CAMERAS:
        paths[camera] = folder / f"{camera}.npy"
        np.save(paths[camera], np.concatenate([getattr(e, f"{camera}_image") for e in episodes]))
    for path in paths.values():  # warm the page cache: every reader starts hot
        path.read_bytes()
    return paths


def memmap_bound(paths: dict[str, Path], config: SamplerBenchmarkConfig):
    """Copy frames t and t+1 of each camera from numpy memmaps into a reused buffer."""
    arrays = [np.load(paths[camera], mmap_mode="r") for camera in CAMERAS]
    size = config.image_size
    out = np.empty((2, config.batch_size, 3, size, size, 3), np.uint8)
    rng = np.random.default_rng(1)

    def run() -> None:
        for row, step in enumerate(rng.integers(0, config.num_steps - 1, config.batch_size)):
            for camera, frames in enumerate(arrays):
                out[0, row, camera] = frames[step]
                out[1, row, camera] = frames[step + 1]

    return run


def h5py_per_frame(path: Path, config: SamplerBenchmarkConfig):
    import h5py

    h5 = h5py.File(path, "r")
    datasets = [h5[f"observations/{camera}_image"] for camera in CAMERAS]
    size = config.image_size
    out = np.empty((2, config.batch_size, 3, size, size, 3), np.uint8)
    rng = np.random.default_rng(1)

    def run() -> None:
        for row, step in enumerate(rng.integers(0, config.num_steps - 1, config.batch_size)):
            for camera, dataset in enumerate(datasets):
                out[0, row, camera] = dataset[step]
                out[1, row, camera] = dataset[step + 1]

    return run


def sampler_fill(path: Path, config: SamplerBenchmarkConfig, chunk_size: int = 1):
    buffer = MultimodalReplayBuffer(image_size=config.image_size)
    buffer.load_from_hdf5(path)
    sampler = buffer.sampler(chunk_size=chunk_size)
    out = sampler.allocate(config.batch_size)
    rng = np.random.default_rng(1)
    return lambda: sampler.fill(sampler.sample_indices(rng, config.batch_size), out)


def buffer_sample(path: Path, config: SamplerBenchmarkConfig):
    buffer = MultimodalReplayBuffer(image_size=config.image_size, seed=1)
    buffer.load_from_hdf5(path)
    return lambda: buffer.sample(config.batch_size)


def loader_throughput(path: Path, config: SamplerBenchmarkConfig) -> float:
    """Transitions per second of step_batches with workers, after its first batches."""
    buffer = MultimodalReplayBuffer(image_size=config.image_size)
    buffer.load_from_hdf5(path)
    warm_up = 2 * config.num_workers  # workers started and their rings allocated
    stream = step_batches(buffer, seed=0, rank=0, batch_size=config.batch_size, first_step=0,
                          last_step=warm_up + config.loader_batches,
                          device=torch.device("cpu"), num_workers=config.num_workers)
    for _ in range(warm_up):
        next(stream)
    start = time.perf_counter()
    for batch in itertools.islice(stream, config.loader_batches):
        assert batch.image.shape[0] == config.batch_size
    return config.loader_batches * config.batch_size / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    config = SamplerBenchmarkConfig.quick() if args.quick else SamplerBenchmarkConfig()
    frame_bytes = config.image_size * config.image_size * 3
    transition_bytes = 6 * frame_bytes
    with tempfile.TemporaryDirectory(prefix="lapo_sampler_bench_") as folder:
        paths = write_data(Path(folder), config)
        variants = {
            "numpy memmap bound (baseline)": memmap_bound(paths, config),
            "TransitionSampler (chunk offsets + mmap)": sampler_fill(paths["canonical"], config),
            "TransitionSampler, action chunks of 8":
                sampler_fill(paths["canonical"], config, chunk_size=8),
            "TransitionSampler, lzf file (h5py fallback)": sampler_fill(paths["lzf"], config),
            "h5py dset[i] per frame": h5py_per_frame(paths["canonical"], config),
            "MultimodalReplayBuffer.sample (TransitionBatch on CPU)":
                buffer_sample(paths["canonical"], config),
        }
        timings = time_interleaved(variants, repeats=config.repeats, warmup=1)
        loader = loader_throughput(paths["canonical"], config)

    table = Table(
        f"Random-batch sampling, {config.image_size}x{config.image_size}, batch "
        f"{config.batch_size}, hot page cache",
        ["reader", "processes", "transitions/s", "MB/s (images)", "vs memmap bound"],
    )
    baseline = None
    for name, timing in timings.items():
        rate = config.batch_size / timing.p50
        baseline = baseline or rate
        table.add_row(name, 1, f"{rate:,.0f}", f"{rate * transition_bytes / 1e6:,.0f}",
                      ratio(rate, baseline))
    table.add_row(f"step_batches, {config.num_workers} workers (TransitionBatch on CPU)",
                  1 + config.num_workers, f"{loader:,.0f}",
                  f"{loader * transition_bytes / 1e6:,.0f}", ratio(loader, baseline))
    table.notes += [
        f"{config.num_steps} steps per camera, {config.num_steps * 3 * frame_bytes / 2**20:.0f}"
        f" MiB of frames; a transition reads 6 frames ({transition_bytes / 1e6:.2f} MB)",
        f"single-process rows: median of {config.repeats} batches, timed round-robin; "
        f"the loader row: {config.loader_batches} batches after warm-up",
        "TransitionBatch rows include stacking the cameras to [B,9,H,W] (a copy) on the "
        "device; with CUDA that copy runs on the GPU",
    ]
    emit([table], args.out, argv)
    print("\n" + machine_markdown())


if __name__ == "__main__":
    main()
