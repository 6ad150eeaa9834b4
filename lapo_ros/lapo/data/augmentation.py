"""Random-shift image augmentation for training batches (DrQ: Kostrikov et al., ICLR 2021;
DrQ-v2: Yarats et al., 2021).

Each sample of a ``[B, C, H, W]`` batch moves by its own whole-pixel offset of up to
``pad`` pixels along each axis, the border pixels repeated (DrQ's replicate pad, then a
random ``H x W`` crop). All channels of a sample move together: the three stacked cameras
of one observation share the offset. Works on uint8 and float tensors, on any device.
"""

from __future__ import annotations

import torch


def shift_pixels(fraction: float, image_size: int) -> int:
    """The shift bound in pixels for ``fraction`` of the image side (DrQ: 4 of 84 px)."""
    return int(round(fraction * image_size))


def random_shift(image: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """``image`` with every sample shifted by offsets drawn uniformly from [-pad, pad]."""
    if pad <= 0:
        return image
    batch, channels, height, width = image.shape
    offsets = torch.randint(-pad, pad + 1, (2, batch), generator=generator,
                            device=generator.device).to(image.device)
    rows = (torch.arange(height, device=image.device) + offsets[0, :, None]).clamp(0, height - 1)
    cols = (torch.arange(width, device=image.device) + offsets[1, :, None]).clamp(0, width - 1)
    shifted = image.gather(2, rows[:, None, :, None].expand(batch, channels, height, width))
    return shifted.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
