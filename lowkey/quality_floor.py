"""A floor under what a person sees: each face keeps looking like the original.

After the attack, the change on each window is scaled down (by the largest factor k / 2**steps
in [0, 1], found by :func:`largest_scale`) until every face region in it meets the floor:
ColorVideoVDP at least
``jod``, FLIP at most ``flip``, SSIM at least ``ssim`` (see :mod:`lowkey.measure`), measured on
what will be written: each trial is encoded like the output (same format and quality, the crop
aligned to the codec's blocks) and decoded again, since re-encoding alone can cost a grainy
photo's face a few hundredths of SSIM. Protection is then as strong as the look allows: a filter
nobody dares to post protects nobody.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from lowkey.faces import Face
from lowkey.image_decode import Photo, load_photo
from lowkey.image_encode import encode_photo
from lowkey.image_formats import DEFAULT_QUALITY
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
    """The worst look a face region may have after protection (JOD, FLIP, SSIM) and the
    precision of the scale: a multiple of 2**-steps (within 2**-steps of the largest)."""

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
        return self.excess(original, written, region) <= 1

    def excess(self, original: torch.Tensor, written: torch.Tensor,
               region: tuple[int, int, int, int]) -> float:
        """How far the region is from the floor: at most 1 when it meets it (see
        :meth:`holds`), over 1 when not. Each figure as a multiple of what the floor allows,
        made to grow about in proportion to the change: FLIP / ``flip``, (10 - JOD) / (10 -
        ``jod``), and the square root of (1 - SSIM) / (1 - ``ssim``). Measured in order of
        cost; a failing trial gives its first failing figure's, a met one the largest."""
        a, b = region_pair(original, written, region)
        ssim = ssim_psnr(a, b)[0]
        worst = _excess(math.sqrt(max(0.0, 1 - ssim)), math.sqrt(max(0.0, 1 - self.ssim)),
                        ssim >= self.ssim)
        if worst > 1:
            return worst
        a, b = as_viewed(a, b)
        flip = flip_error(a, b)
        worst = max(worst, _excess(flip, self.flip, flip <= self.flip))
        if worst > 1:
            return worst
        jod = cvvdp_jod(a, b)
        return max(worst, _excess(10 - jod, 10 - self.jod, jod >= self.jod))


def _excess(deficit: float, allowed: float, met: bool) -> float:
    """``deficit / allowed``, kept at most 1 when the figure meets the floor (``met``, decided
    by the figure itself) and over 1 when it does not."""
    ratio = deficit / allowed if allowed > 0 else math.inf
    return min(ratio, 1.0) if met else max(ratio, math.nextafter(1.0, 2.0))


#: Trials of :func:`largest_scale` guided by the measured excess before it only halves (the
#: excess is noisy near 1: on faces-dev, 4 to 6 trials found bisection's scale, against its 7).
GUIDED_TRIALS = 6


def largest_scale(excess: Callable[[float], float], steps: int) -> tuple[float, int]:
    """The largest scale ``k / 2**steps`` (k in 0..2**steps) whose ``excess`` is at most 1
    (the floor is met; scale 0 always meets it), and how many scales were tried.

    When the floor is met at every scale below one that meets it, this is what bisection finds,
    in fewer trials: the next scale tried is where a straight line crosses 1, through the
    bracket's two ends once a trial has met the floor, through the last two failed trials
    before (at first, through the origin); rounded down and kept inside the bracket. After
    :data:`GUIDED_TRIALS` trials, plain halving.
    """
    n = 2 ** steps
    met, failed = 0, n + 1  # scale indices known to meet the floor / to fail it
    met_value = failed_value = math.nan
    tried: list[tuple[int, float]] = []
    probe = n
    while True:
        value = excess(probe / n)
        tried.append((probe, value))
        if value <= 1:
            met, met_value = probe, value
        else:
            failed, failed_value = probe, value
        if failed - met <= 1:
            return met / n, len(tried)
        if not math.isnan(met_value):
            (i1, v1), (i2, v2) = (met, met_value), (failed, failed_value)
        else:
            (i1, v1), (i2, v2) = ((0, 0.0), tried[-1]) if len(tried) == 1 else tried[-2:]
        if len(tried) < GUIDED_TRIALS and math.isfinite(v1 - v2) and v1 != v2:
            probe = math.floor(i2 + (1 - v2) * (i1 - i2) / (v1 - v2))
        else:
            probe = (met + failed) // 2
        probe = min(max(probe, met + 1), failed - 1)


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
    :func:`~lowkey.image_encode.encode_photo`).

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

        def excess(scale: float, before: torch.Tensor = before,
                   crop: tuple = (y0, y1, x0, x1), inside: tuple = inside,
                   window_before: torch.Tensor = window_before, change: torch.Tensor = change,
                   local: list = local) -> float:
            trial = out[:, crop[0]:crop[1], crop[2]:crop[3]].clone()
            trial[inside] = window_before + scale * change
            written = _as_written(photo, trial, format, quality)
            worst = 0.0
            for r in local:
                worst = max(worst, floor.excess(before, written, r))
                if worst > 1:
                    break
            return worst

        scale, trials = largest_scale(excess, floor.steps)
        logger.debug("quality floor: scale %.4f after %d trials", scale, trials)
        out[:, w.y0:w.y1, w.x0:w.x1] = window_before + scale * change
        scales.append(scale)
    logger.debug("quality floor: window scales %s", scales)
    return out, scales
