"""What may happen to a (protected) photo before a recognition system sees it.

Each counter-measure maps ``(3, H, W)`` float RGB in [0, 1] to ``(3, H', W')`` float RGB in
[0, 1], deterministically (so its result can be cached by the source file's hash and the
counter-measure's :attr:`Countermeasure.key`):

- ``none``: the photo as it is.
- ``blur``: Gaussian blur, sigma 2 (the paper's smoothing defence, section 6.2), kernel 13 px,
  reflected borders.
- ``jpeg75``: re-encoded as JPEG, quality 75 (Pillow, 4:2:0 chroma), and decoded.
- ``half``: downscaled to half size (Lanczos, anti-aliased).
- ``platform``: what a social platform does on upload: long side at most 2048 px (Lanczos),
  then JPEG quality 85 (4:2:0).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from lowkey.pixels import to_uint8_hwc


def _to_uint8_image(pixels: torch.Tensor) -> Image.Image:
    """``pixels`` (3, H, W) RGB in [0, 1] as an 8-bit RGB Pillow image (:func:`to_uint8_hwc`)."""
    return Image.fromarray(to_uint8_hwc(pixels), "RGB")


def _from_image(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _check(pixels: torch.Tensor) -> None:
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels must be (3, H, W), got {tuple(pixels.shape)}")


def jpeg_bytes(pixels: torch.Tensor, quality: int) -> bytes:
    """``pixels`` (3, H, W) in [0, 1] encoded as a JPEG of ``quality`` (1-95), 4:2:0 chroma."""
    _check(pixels)
    buffer = io.BytesIO()
    _to_uint8_image(pixels).save(buffer, format="JPEG", quality=quality, subsampling=2)
    return buffer.getvalue()


def jpeg_reencode(pixels: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """``pixels`` after a JPEG round trip at ``quality``: (3, H, W) in [0, 1]."""
    with Image.open(io.BytesIO(jpeg_bytes(pixels, quality))) as image:
        return _from_image(image)


def gaussian_blur(pixels: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Gaussian blur of ``pixels`` (3, H, W), kernel side 2 ceil(3 sigma) + 1, reflected edges."""
    _check(pixels)
    from torchvision.transforms.v2.functional import gaussian_blur as blur

    size = 2 * math.ceil(3 * sigma) + 1
    return blur(pixels.float(), kernel_size=[size, size], sigma=[sigma, sigma]).clamp(0, 1)


def downscale(pixels: torch.Tensor, factor: float = 0.5) -> torch.Tensor:
    """``pixels`` (3, H, W) resized to (3, round(H x factor), round(W x factor)), Lanczos."""
    _check(pixels)
    height, width = pixels.shape[-2:]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return _from_image(_to_uint8_image(pixels).resize(size, Image.Resampling.LANCZOS))


def platform_reprocess(pixels: torch.Tensor, max_side: int = 2048,
                       quality: int = 85) -> torch.Tensor:
    """A social platform's upload path: long side at most ``max_side``, then JPEG ``quality``."""
    _check(pixels)
    height, width = pixels.shape[-2:]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        pixels = downscale(pixels, scale)
    return jpeg_reencode(pixels, quality)


@dataclass(frozen=True)
class Countermeasure:
    """A named, deterministic image transformation; ``key`` names its parameters (cache key)."""

    name: str
    key: str
    description: str
    apply: Callable[[torch.Tensor], torch.Tensor]


COUNTERMEASURES: dict[str, Countermeasure] = {
    c.name: c for c in (
        Countermeasure("none", "none", "the photo as posted", lambda x: x),
        Countermeasure("blur", "blur-s2", "Gaussian blur, sigma 2", gaussian_blur),
        Countermeasure("jpeg75", "jpeg-q75", "JPEG re-encoding, quality 75", jpeg_reencode),
        Countermeasure("half", "scale-0.5", "downscaled to half size", downscale),
        Countermeasure("platform", "platform-2048-q85",
                       "platform re-processing: long side <= 2048 px, JPEG quality 85",
                       platform_reprocess),
    )
}


def get_countermeasures(names: list[str] | None = None) -> list[Countermeasure]:
    """Counter-measures by name (default: all); ``none`` is always first."""
    names = list(COUNTERMEASURES) if names is None else ["none"] + [n for n in names
                                                                     if n != "none"]
    unknown = [n for n in names if n not in COUNTERMEASURES]
    if unknown:
        raise ValueError(f"unknown counter-measure(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(COUNTERMEASURES)}")
    return [COUNTERMEASURES[n] for n in names]
