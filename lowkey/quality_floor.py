"""A floor under what a person sees: each face keeps looking like the original.

After the attack, the change on each window is scaled down (by the largest factor in [0, 1],
found by bisection) until every face region in it meets the floor: ColorVideoVDP at least
``jod``, FLIP at most ``flip``, SSIM at least ``ssim`` (see :mod:`lowkey.measure`), measured on
what will be written: each trial is encoded like the output (same format and quality, the crop
aligned to the codec's blocks) and decoded again, since re-encoding alone can cost a grainy
photo's face a few hundredths of SSIM. Protection is then as strong as the look allows: a filter
nobody dares to post protects nobody.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch

from lowkey.faces import Face
from lowkey.image_io import DEFAULT_QUALITY, Photo, encode_photo, load_photo
from lowkey.measure import (
    RegionQuality,
    as_viewed,
    cvvdp_jod,
    face_region,
    flip_error,
    region_pair,
    ssim_psnr,
)
from lowkey.windows import Window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityFloor:
    """The worst look a face region may have after protection (JOD, FLIP, SSIM) and how many
    bisection steps find the scale (the scale is then within 2**-steps of the largest)."""

    jod: float = 9.5
    flip: float = 0.05
    ssim: float = 0.95
    steps: int = 6

    def met(self, quality: RegionQuality) -> bool:
        return (quality.jod >= self.jod and quality.flip <= self.flip
                and quality.ssim >= self.ssim)

    def holds(self, original: torch.Tensor, written: torch.Tensor,
              region: tuple[int, int, int, int]) -> bool:
        """``met(region_quality(original, written, region))``, measured in order of cost (SSIM,
        then FLIP, then ColorVideoVDP, which takes most of the time) and stopping at the first
        figure that fails: the same answer, without the slow figures of a trial that is lost."""
        a, b = region_pair(original, written, region)
        if ssim_psnr(a, b)[0] < self.ssim:
            return False
        a, b = as_viewed(a, b)
        return flip_error(a, b) <= self.flip and cvvdp_jod(a, b) >= self.jod


#: Trial crops start on multiples of this many pixels, so that a block codec (JPEG's 8 or 16 px
#: blocks, WebP's 16 px macroblocks, HEIF's 64 px units) codes them as it codes the whole photo.
BLOCK = 64


def _as_written(photo: Photo, pixels: torch.Tensor, format: str | None,
                quality: int) -> torch.Tensor:
    """``pixels`` (3, h, w), a crop of ``photo``, after encoding as the output will be (in
    ``format``, default ``photo``'s own, at ``quality``) and decoding."""
    crop = replace(photo, pixels=pixels, alpha=None, exif=None, xmp=None, source=None)
    return load_photo(encode_photo(crop, pixels.clamp(0, 1), quality=quality,
                                   format=format)).pixels


def apply_floor(photo: Photo, protected: torch.Tensor, windows: list[Window],
                faces: list[Face], floor: QualityFloor, *, format: str | None = None,
                quality: int = DEFAULT_QUALITY) -> tuple[torch.Tensor, list[float]]:
    """``protected`` (3, H, W) RGB in [0, 1] on the CPU with each window's change from
    ``photo``'s pixels scaled so that every face region in the window meets ``floor``, as the
    output will be written (``format`` and ``quality`` as for
    :func:`~lowkey.image_io.encode_photo`).

    Returns the new pixels and the scale of each window (1.0: untouched).
    """
    original = photo.pixels
    size = photo.size
    out = protected.clone()
    scales = []
    for w in windows:
        regions = [face_region(f.box, size) for f in faces
                   if w.x0 <= (f.box[0] + f.box[2]) / 2 < w.x1
                   and w.y0 <= (f.box[1] + f.box[3]) / 2 < w.y1]
        # everything measured lies in this crop: the window and its faces' regions
        x0 = min([w.x0] + [r[0] for r in regions]) // BLOCK * BLOCK
        y0 = min([w.y0] + [r[1] for r in regions]) // BLOCK * BLOCK
        x1 = max([w.x1] + [r[2] for r in regions])
        y1 = max([w.y1] + [r[3] for r in regions])
        before = original[:, y0:y1, x0:x1]
        # this window's change alone; the rest of the crop as it stands (other windows)
        inside = (slice(None), slice(w.y0 - y0, w.y1 - y0), slice(w.x0 - x0, w.x1 - x0))
        window_before = original[:, w.y0:w.y1, w.x0:w.x1]
        change = protected[:, w.y0:w.y1, w.x0:w.x1] - window_before
        local = [(a - x0, b - y0, c - x0, d - y0) for a, b, c, d in regions]

        def meets(scale: float, before: torch.Tensor = before, crop: tuple = (y0, y1, x0, x1),
                  inside: tuple = inside, window_before: torch.Tensor = window_before,
                  change: torch.Tensor = change, local: list = local) -> bool:
            trial = out[:, crop[0]:crop[1], crop[2]:crop[3]].clone()
            trial[inside] = window_before + scale * change
            written = _as_written(photo, trial, format, quality)
            return all(floor.holds(before, written, r) for r in local)

        if meets(1.0):
            scale = 1.0
        else:
            low, high = 0.0, 1.0
            for _ in range(floor.steps):
                middle = (low + high) / 2
                low, high = (middle, high) if meets(middle) else (low, middle)
            scale = low
        out[:, w.y0:w.y1, w.x0:w.x1] = window_before + scale * change
        scales.append(scale)
    logger.debug("quality floor: window scales %s", scales)
    return out, scales
