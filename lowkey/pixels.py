"""Pixels between tensors and integer samples: LowKey's photos are ``(3, H, W)`` float32 RGB in
[0, 1]; files, Pillow, dlib and OpenCV-style code hold ``(H, W, C)`` 8- or 16-bit integers.
Floats are quantised by rounding (half to even).
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8_hwc(pixels: torch.Tensor) -> np.ndarray:
    """8-bit samples of ``pixels``, as Pillow, dlib and OpenCV-style code read them.

    ``pixels``: ``(3, H, W)`` float RGB in [0, 1], on any device, with or without gradient.
    Returns ``(H, W, 3)`` uint8 RGB (same channel order), C-contiguous, on the CPU: each value
    clamped to [0, 1], times 255, rounded half to even; the same levels :func:`encode_photo`
    writes into an 8-bit file. The rounding runs on ``pixels``' device, so only bytes travel.
    """
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels must be (3, H, W), got {tuple(pixels.shape)}")
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be floats in [0, 1], not {pixels.dtype}")
    levels = round_to_levels(pixels.detach(), 8)
    return np.ascontiguousarray(levels.permute(1, 2, 0).cpu().numpy())


def round_to_levels(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``(C, H, W)`` floats -> integer levels of the same shape and device: clamped to [0, 1]
    (+-inf to 1 and 0, NaN stays NaN), times 255 or 65535, rounded half to even; uint8 for 8
    bits, int32 for 16 (torch has few uint16 operations). ``x`` is not modified."""
    top = 65535 if bits == 16 else 255
    levels = x.clamp(0.0, 1.0).mul_(top).round_()  # clamp made a copy: in place from here
    return levels.to(torch.int32 if bits == 16 else torch.uint8)


def samples_to_tensor(colour: np.ndarray, bit_depth: int) -> torch.Tensor:
    """``(H, W, 1 or 3)`` uint8/uint16 -> ``(3, H, W)`` float32 in [0, 1] (gray replicated)."""
    # Reorder while the samples are small integers: a strided copy of floats is 4x the memory.
    chw = colour.transpose(2, 0, 1).copy()  # C order, and writable (Pillow's buffer is not)
    if bit_depth == 16:
        chw = chw.astype(np.int32)  # torch has few uint16 operations
    pixels = torch.from_numpy(chw).to(torch.float32).div_(65535.0 if bit_depth == 16 else 255.0)
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1).contiguous()
    return pixels
