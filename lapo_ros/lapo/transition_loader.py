"""Training-side sampling: an endless stream of TransitionBatch from DataLoader workers.

```python
loader = make_loader(train_buffer, batch_size=64, num_workers=2, seed=0)
for step, batch in zip(range(num_steps), loader):   # TransitionBatch on buffer.device
    metrics = agent.update(batch)
```
Each worker gets its own copy of the buffer's ``TransitionSampler`` (files reopened in the
worker, never shared across a fork), its own seeded random stream, and a small ring of
shared-memory output batches that it refills instead of allocating new shared memory per
batch. Batches are pinned when the device is CUDA and copied to it without blocking; the
uint8 images become float only on the training device, inside the agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lapo_ros.lapo.batch import TransitionBatch
from lapo_ros.lapo.replay_buffer import MultimodalReplayBuffer, batch_tensors, raw_to_batch
from lapo_ros.lapo.transition_sampler import RawBatch, TransitionSampler


@dataclass
class LoaderConfig:
    """How batches are produced for training."""

    batch_size: int = 64
    num_workers: int = 2  # 0 samples in the training process
    seed: int = 0
    prefetch_factor: int = 2  # batches each worker keeps ready
    pin_memory: bool | None = None  # None: pin when the device is CUDA

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.num_workers < 0 or self.prefetch_factor < 1:
            raise ValueError(
                f"LoaderConfig: batch_size >= 1, num_workers >= 0 and prefetch_factor >= 1 "
                f"required, got {self}"
            )


class _BatchStream(IterableDataset):
    """Endless random batches from one sampler, written into a reused ring of buffers."""

    def __init__(self, sampler: TransitionSampler, batch_size: int, seed: int, ring: int):
        self.sampler = sampler
        self.batch_size = batch_size
        self.seed = seed
        self.ring = ring

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        worker_id = worker.id if worker is not None else 0
        rng = np.random.default_rng([self.seed, worker_id])
        slots = [batch_tensors(self.sampler, self.batch_size, shared=worker is not None)
                 for _ in range(self.ring)]
        step = 0
        while True:
            tensors, raw = slots[step % self.ring]
            self.sampler.fill(self.sampler.sample_indices(rng, self.batch_size), raw)
            yield tensors
            step += 1


class TransitionLoader:
    """Iterable over TransitionBatch on ``device``; endless (stop with ``zip``/``islice``)."""

    def __init__(
        self,
        buffer: MultimodalReplayBuffer,
        config: LoaderConfig,
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else buffer.device
        # Workers copy frames as stored (one memcpy each); the cameras are stacked into
        # [B, 9, H, W] by raw_to_batch, on the device.
        sampler = buffer.sampler()
        self.layout = sampler.layout
        self.pinned = (config.pin_memory if config.pin_memory is not None
                       else self.device.type == "cuda") and torch.cuda.is_available()
        workers = config.num_workers
        # A worker may refill a slot only after the training process has copied it: it runs
        # at most prefetch_factor batches ahead of the batch being consumed.
        ring = config.prefetch_factor + 2 if workers else 1
        self._loader = DataLoader(
            _BatchStream(sampler, config.batch_size, config.seed, ring),
            batch_size=None,
            num_workers=workers,
            pin_memory=self.pinned,
            prefetch_factor=config.prefetch_factor if workers else None,
            persistent_workers=workers > 0,
            in_order=False,
        )

    def __iter__(self) -> Iterator[TransitionBatch]:
        for tensors in self._loader:
            yield raw_to_batch(RawBatch(**tensors), self.device, self.layout,
                               non_blocking=self.pinned)


def make_loader(
    buffer: MultimodalReplayBuffer,
    batch_size: int = 64,
    num_workers: int = 2,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    prefetch_factor: int = 2,
    pin_memory: bool | None = None,
) -> TransitionLoader:
    """An endless TransitionBatch stream from ``buffer`` (see the module docstring)."""
    config = LoaderConfig(batch_size, num_workers, seed, prefetch_factor, pin_memory)
    return TransitionLoader(buffer, config, device)
