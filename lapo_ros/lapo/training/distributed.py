"""Data-parallel training under ``torchrun``, for agents that own several optimizers.

LAPO updates three optimizers per step, with one network (the critic) used in more than one
loss, which ``DistributedDataParallel``'s reducer does not support. Instead every rank
starts from rank 0's weights and, right before each ``optimizer.step()``, the gradients
of that optimizer's parameters are averaged over the ranks in one flat all-reduce. Ranks
run the same code, so they step the same optimizers in the same order and stay identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_process_group(**kwargs) -> None:
    """``dist.init_process_group`` such that ``destroy_process_group`` really ends the group.

    torch.distributed.nn's collectives take ``group=group.WORLD`` as a default argument,
    evaluated on import, and torch._dynamo imports that module with the first optimizer.
    Imported after the group exists, the defaults keep it alive past destroy_process_group:
    its gloo threads and sockets then last into interpreter shutdown and race the other
    ranks' exit there. Imported before, the defaults are None.
    """
    import torch._dynamo  # noqa: F401  (imports torch.distributed.nn)

    dist.init_process_group(**kwargs)


def init_distributed(device_type: str) -> DistributedContext:
    """Join the ``torchrun`` job described by the environment (nccl on CUDA, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_modules(modules: list[nn.Module], context: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers into every rank."""
    if not context.enabled:
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dense = tensor.data.contiguous()  # channels_last weights: gloo needs dense
            dist.broadcast(dense, src=0)
            if dense.data_ptr() != tensor.data.data_ptr():
                tensor.data.copy_(dense)


def average_gradients_before_step(
    optimizers: list[torch.optim.Optimizer], context: DistributedContext
) -> list:
    """Register pre-step hooks averaging gradients over ranks; return the hook handles."""
    if not context.enabled:
        return []
    return [optimizer.register_step_pre_hook(_make_hook(context.world_size))
            for optimizer in optimizers]


def _make_hook(world_size: int):
    def average(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    return average


def all_ranks_mean(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average scalar metrics over ranks (every rank must pass the same keys)."""
    if not context.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


def parameter_drift(modules: list[nn.Module], context: DistributedContext) -> float:
    """Largest |parameter - rank 0's parameter| over all ranks (0.0 when in sync)."""
    if not context.enabled:
        return 0.0
    drift = torch.zeros((), dtype=torch.float64)
    for module in modules:
        for parameter in module.parameters():
            reference = parameter.detach().clone(memory_format=torch.contiguous_format)
            dist.broadcast(reference, src=0)
            drift = torch.maximum(drift, (parameter.detach() - reference).abs().max().double()
                                  .cpu())
    if dist.get_backend() == "nccl":
        drift = drift.cuda()
    dist.all_reduce(drift, op=dist.ReduceOp.MAX)
    return float(drift)


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on any rank (a stop request, say)."""
    if not context.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)
