"""Where and how the learning core computes: the device resolver, mixed precision, Adam,
image memory layout and target networks (one helper each, used by every agent and tool)."""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class DeviceError(ValueError):
    """A device name this machine cannot provide; the message names it."""


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0
                   ) -> torch.device:
    """``auto`` (or None) -> CUDA when torch sees it, else CPU; a bare ``cuda`` -> this
    process's GPU (``local_rank`` under torchrun); anything else as given."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else name
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) is None:
        raise DeviceError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but torch sees no CUDA device")
    return torch.device(name if ":" in name else f"cuda:{local_rank}")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU with bf16 (Ampere on), a
    CPU with AVX512-BF16 or AMX (elsewhere bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)()
               for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def autocast_dtype(setting: str | None, device: torch.device) -> str | None:
    """The mixed-precision dtype an agent's ``autocast_dtype`` setting means on ``device``:
    ``auto`` -> ``bfloat16`` where it is native (``native_bf16``), else float32 (None);
    ``float32`` (or None) -> None; ``bfloat16``/``float16`` as given."""
    if setting == "auto":
        return "bfloat16" if native_bf16(device) else None
    return None if setting in (None, "float32") else setting


def autocast(dtype: str | None, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision in ``dtype`` (``bfloat16``/``float16``) on ``device``, CUDA or CPU (CPUs
    with AVX512-BF16 or AMX run bfloat16 convolutions natively); None: float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def adam(params: Any, lr: float, fused: bool) -> torch.optim.Adam:
    """Adam (``fused``: one kernel per step instead of foreach)."""
    return torch.optim.Adam(params, lr=lr, fused=True if fused else None)


def memory_layout(image: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """NHWC images when ``channels_last``."""
    return image.contiguous(memory_format=torch.channels_last) if channels_last else image


def encoder_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                 pairs: Sequence[tuple[nn.Module, nn.Module]],
                 max_grad_norm: float | None) -> torch.Tensor:
    """One step of ``optimizer`` (which holds every (encoder, head) pair) on ``loss``, each
    pair's gradient norm clipped to ``max_grad_norm`` when set; returns the first encoder's
    gradient norm before clipping (a diagnostic of what reaches the images)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    encoder_grad_norm = torch.nn.utils.get_total_norm(
        [p.grad for p in pairs[0][0].parameters() if p.grad is not None])
    if max_grad_norm is not None:
        for encoder, head in pairs:
            torch.nn.utils.clip_grad_norm_([*head.parameters(), *encoder.parameters()],
                                           max_grad_norm)
    optimizer.step()
    return encoder_grad_norm.detach()


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a deep copy in eval mode that takes no gradients."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target.eval()


@torch.no_grad()
def polyak_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, for parameters and floating buffers.

    Integer buffers (BatchNorm's ``num_batches_tracked``) are copied.
    """
    parameters = list(target.parameters())
    if parameters:
        torch._foreach_lerp_(parameters, list(online.parameters()), tau)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers(), strict=True):
        if target_buffer.is_floating_point():
            target_buffer.lerp_(online_buffer, tau)
        else:
            target_buffer.copy_(online_buffer)
