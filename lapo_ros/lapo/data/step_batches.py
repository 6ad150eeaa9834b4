"""Training batches indexed by step: batch ``t`` is a pure function of (seed, rank, t).

That makes a resumed run see exactly the batches the interrupted run would have seen,
whatever the number of loader workers, and gives every torchrun process its own stream.
With workers, worker ``w`` of ``W`` fills steps ``first + w, first + w + W, ...`` into a
small ring of shared-memory buffers it reuses (no new shared memory per batch), and the
DataLoader hands them back in step order.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lapo_ros.dataset.sampler import RawBatch, TransitionSampler
from lapo_ros.lapo.data.batch import TransitionBatch
from lapo_ros.lapo.data.buffer import MultimodalReplayBuffer, batch_tensors, raw_to_batch

PREFETCH_FACTOR = 2  # batches each worker keeps ready


def step_indices(sampler: TransitionSampler, seed: int, rank: int, step: int,
                 batch_size: int) -> np.ndarray:
    """Transition indices of batch ``step`` of process ``rank``."""
    return sampler.sample_indices(np.random.default_rng([seed, rank, step]), batch_size)


class _StepStream(IterableDataset):
    """This worker's share of steps ``first_step .. last_step - 1``, as dicts of tensors."""

    def __init__(self, sampler: TransitionSampler, seed: int, rank: int, batch_size: int,
                 first_step: int, last_step: int, ring: int) -> None:
        self.sampler = sampler
        self.seed, self.rank, self.batch_size = seed, rank, batch_size
        self.first_step, self.last_step, self.ring = first_step, last_step, ring

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        slots = [batch_tensors(self.sampler, self.batch_size, shared=worker is not None)
                 for _ in range(self.ring)]
        steps = range(self.first_step + worker_id, self.last_step, workers)
        for count, step in enumerate(steps):
            tensors, raw = slots[count % self.ring]
            self.sampler.fill(
                step_indices(self.sampler, self.seed, self.rank, step, self.batch_size), raw)
            yield tensors


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """Workers ignore SIGINT and SIGTERM: a signal to the whole process group (Ctrl-C,
    ``timeout``, systemd, SLURM) reaches the trainer, which finishes its step, writes its
    checkpoint and then shuts the workers down; a worker killed by it would end the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def step_batches(
    buffer: MultimodalReplayBuffer,
    *,
    seed: int,
    rank: int,
    batch_size: int,
    first_step: int,
    last_step: int,
    device: torch.device,
    num_workers: int = 0,
    discount: float | None = None,
    chunk_size: int = 1,
) -> Iterator[TransitionBatch]:
    """TransitionBatches for steps ``first_step .. last_step - 1`` on ``device``, in order;
    with a ``discount`` they carry each transition's return-to-go, with ``chunk_size`` > 1
    action chunks (``buffer.sampler``)."""
    sampler = buffer.sampler(discount=discount, chunk_size=chunk_size)
    pinned = device.type == "cuda"
    # a worker refills a slot only after the training process copied it: it runs at most
    # PREFETCH_FACTOR batches ahead of the one being consumed (+1 in the pin-memory thread)
    ring = PREFETCH_FACTOR + 3 if num_workers else 1
    stream = _StepStream(sampler, seed, rank, batch_size, first_step, last_step, ring)
    if num_workers == 0:
        for tensors in stream:
            yield raw_to_batch(RawBatch(**tensors), device, sampler.layout)
        return
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pinned,
                        prefetch_factor=PREFETCH_FACTOR, in_order=True,
                        worker_init_fn=_leave_stop_signals_to_the_trainer)
    for tensors in loader:
        yield raw_to_batch(RawBatch(**tensors), device, sampler.layout, non_blocking=pinned)
