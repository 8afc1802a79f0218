"""Where a change to a photo would be seen: a per-pixel change budget from a simple visibility
model, for the attack's projection.

Contrast masking: the eye misses a change more easily where the image already has texture (hair,
beard, eyebrows, edges) than on flat skin or sky. The budget is ``low`` on flat areas and rises
with the local contrast (standard deviation of luminance over a small neighbourhood) to ``high``
on textured ones. It is feathered to zero at the border of the window it is computed for, so the
changed region fades into the untouched photo instead of ending in a visible rectangle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Rec. 709 luma weights of (R, G, B).
LUMA = (0.2126, 0.7152, 0.0722)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Luma (1, H, W) of ``rgb`` (3, H, W) sRGB values in [0, 1]."""
    weights = torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return (rgb * weights).sum(0, keepdim=True)


def local_contrast(rgb: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Standard deviation (1, H, W) of luma over a (2 radius + 1)^2 neighbourhood (reflected at
    the border) of ``rgb`` (3, H, W) in [0, 1]."""
    size = 2 * radius + 1
    y = luminance(rgb)
    y = F.pad((y - y.mean())[None], (radius,) * 4, mode="reflect")  # centred: no cancellation
    mean = F.avg_pool2d(y, size, stride=1)
    mean_sq = F.avg_pool2d(y * y, size, stride=1)
    return (mean_sq - mean * mean).clamp_min(0).sqrt()[0]


def feather(height: int, width: int, ramp: int, device: torch.device | None = None
            ) -> torch.Tensor:
    """(1, H, W) weights: 0 on the outermost pixel ring, rising linearly to 1 over ``ramp``
    pixels inwards (a smooth edge for a changed window)."""
    if ramp <= 0:
        return torch.ones(1, height, width, device=device)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    dy = torch.minimum(ys, height - 1 - ys).clamp(max=ramp) / ramp
    dx = torch.minimum(xs, width - 1 - xs).clamp(max=ramp) / ramp
    return torch.minimum(dy[:, None], dx[None, :])[None]


def change_budget(rgb: torch.Tensor, low: float, high: float, texture: float = 0.06,
                  radius: int = 2, ramp: int = 0) -> torch.Tensor:
    """Per-pixel largest change (1, H, W) in [0, 1] units for a window ``rgb`` (3, H, W).

    ``low`` on flat areas, rising linearly with the local luma contrast to ``high`` where it
    reaches ``texture``; multiplied by :func:`feather` with ``ramp`` pixels.
    """
    if not 0 <= low <= high:
        raise ValueError("need 0 <= low <= high")
    amount = (local_contrast(rgb, radius) / texture).clamp(0, 1)
    budget = low + (high - low) * amount
    return budget * feather(rgb.shape[-2], rgb.shape[-1], ramp, rgb.device)
