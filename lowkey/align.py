"""Differentiable face alignment: full-resolution photo -> each model's aligned input crop.

Conventions (as in kornia): a matrix ``dst_from_src`` is a (3, 3) homogeneous affine map that
takes a pixel coordinate ``(x, y, 1)`` of the source photo to the output crop; pixel ``(row i,
column j)`` has its centre at ``x = j, y = i``. Warps use ``affine_grid``/``grid_sample`` with
``align_corners=False`` and zero padding outside the photo, so the gradient of anything computed
on the crop reaches the full-resolution photo's pixels.

A face much larger than the model input (a 4000 px photo, a 112 px crop) would alias if sampled
directly: bilinear sampling would read, and send gradient to, only ~4 of every (scale^2) pixels.
:func:`align` therefore first average-pools the face's region by the integer factor
``floor(scale)`` (an exact box filter, differentiable, spreading the gradient over every pixel),
then warps.

The transform itself is computed from the detector's landmarks or box, which are constants (the
detector is not differentiable), with scikit-image's least-squares similarity estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import SimilarityTransform

from lowkey.models.registry import InputContract
from lowkey.windows import source_region


def similarity_matrix(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``landmarks`` to ``template``.

    Both are (5, 2) arrays of (x, y) pixel coordinates. Returns ``dst_from_src`` (3, 3) float64.
    """
    src = np.asarray(landmarks, np.float64).reshape(-1, 2)
    dst = np.asarray(template, np.float64).reshape(-1, 2)
    if src.shape != dst.shape:
        raise ValueError(f"landmarks {src.shape} and template {dst.shape} differ in shape")
    transform = SimilarityTransform.from_estimate(src, dst)
    if not transform:
        raise ValueError("degenerate landmarks: no similarity transform fits them")
    return np.asarray(transform.params, np.float64)


def box_crop_matrix(box: Sequence[float], margin: float, size: int,
                    image_size: tuple[int, int]) -> np.ndarray:
    """facenet-pytorch's crop: the box widened by ``margin`` output pixels, clipped, resized.

    ``box`` is (x1, y1, x2, y2) in photo pixels, ``image_size`` is (width, height). The crop
    ``[x1 - m_x/2, x2 + m_x/2]`` with ``m_x = margin * (x2 - x1) / (size - margin)`` (same in y),
    clipped to the photo and rounded to whole pixels as facenet-pytorch does, is mapped onto
    ``size`` x ``size`` output pixels. Returns ``dst_from_src`` (3, 3) float64.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = image_size
    mx = margin * (x2 - x1) / (size - margin)
    my = margin * (y2 - y1) / (size - margin)
    left, top = int(max(x1 - mx / 2, 0)), int(max(y1 - my / 2, 0))
    right, bottom = int(min(x2 + mx / 2, width)), int(min(y2 + my / 2, height))
    if right <= left or bottom <= top:
        raise ValueError(f"empty crop for box {box} in a {width}x{height} photo")
    sx, sy = size / (right - left), size / (bottom - top)
    # Pixel edges: source edge `left - 0.5` maps to output edge -0.5.
    return np.array(
        [[sx, 0.0, (0.5 - left) * sx - 0.5], [0.0, sy, (0.5 - top) * sy - 0.5], [0, 0, 1.0]]
    )


def alignment_matrix(contract: InputContract, landmarks: np.ndarray, box: Sequence[float],
                     image_size: tuple[int, int]) -> np.ndarray:
    """``dst_from_src`` (3, 3) for a model's input contract, from one face's landmarks and box."""
    if contract.alignment == "template5":
        if contract.template is None:
            raise ValueError("template5 alignment needs a template")
        return similarity_matrix(landmarks, np.asarray(contract.template))
    if contract.alignment == "box":
        return box_crop_matrix(box, contract.box_margin, contract.size, image_size)
    raise ValueError(f"unknown alignment {contract.alignment!r}")


def _normaliser(width: int, height: int) -> torch.Tensor:
    """(3, 3) map from pixel coordinates to grid_sample's [-1, 1] (align_corners=False)."""
    return torch.tensor(
        [[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0],
         [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )


def _theta(dst_from_src: torch.Tensor, in_hw: tuple[int, int],
           out_hw: tuple[int, int]) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices for ``dst_from_src`` (B, 3, 3) from an ``in_hw`` image
    to an ``out_hw`` crop, in grid_sample's normalised coordinates (float64)."""
    src_norm = _normaliser(in_hw[1], in_hw[0])
    dst_norm_inv = torch.linalg.inv(_normaliser(out_hw[1], out_hw[0]))
    src_from_dst = torch.linalg.inv(dst_from_src.to(torch.float64))
    return (src_norm @ src_from_dst @ dst_norm_inv)[:, :2]


def warp_affine(image: torch.Tensor, dst_from_src: torch.Tensor,
                out_size: tuple[int, int]) -> torch.Tensor:
    """Warp ``image`` (B, C, H, W) by ``dst_from_src`` (B, 3, 3) into (B, C, out_h, out_w).

    Bilinear, zero outside the image, differentiable in ``image``. ``out_size`` is (h, w).
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    if dst_from_src.shape != (image.shape[0], 3, 3):
        raise ValueError(f"dst_from_src must be ({image.shape[0]}, 3, 3), "
                         f"got {tuple(dst_from_src.shape)}")
    out_h, out_w = out_size
    theta = _theta(dst_from_src, tuple(image.shape[-2:]), out_size)
    grid = F.affine_grid(theta.to(image.dtype), [image.shape[0], image.shape[1], out_h, out_w],
                         align_corners=False)
    return F.grid_sample(image, grid.to(image.device), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


@dataclass(frozen=True)
class AlignPlan:
    """How one crop is read from one image size, computed once and reused every attack step
    (the matrices never change during an attack): average-pool ``rows`` x ``cols`` of the image
    by ``factor`` (1: no pooling), then ``grid_sample`` at ``grid`` (1, S, S, 2), which already
    lives on the image's device in its dtype."""

    rows: slice
    cols: slice
    factor: int
    grid: torch.Tensor


def _region_and_theta(dst_from_src: np.ndarray, size: int, image_hw: tuple[int, int]
                      ) -> tuple[slice, slice, int, torch.Tensor]:
    """Where a crop reads (rows, columns, pooling factor) and its (2, 3) float64 theta."""
    matrix = np.asarray(dst_from_src, np.float64)
    height, width = image_hw
    scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))  # output pixels per source pixel
    factor = int(math.floor(1.0 / scale)) if scale > 0 else 1
    x0, y0, x1, y1 = 0, 0, width, height
    if factor >= 2:
        # Source region seen by the crop, padded by one pooled pixel.
        left, top, right, bottom = source_region(matrix, size)
        x0 = max(int(math.floor(left)) - factor, 0)
        y0 = max(int(math.floor(top)) - factor, 0)
        x1 = min(int(math.ceil(right)) + factor + 1, width)
        y1 = min(int(math.ceil(bottom)) + factor + 1, height)
        if x1 - x0 < factor or y1 - y0 < factor:  # the crop lies outside the image
            factor, x0, y0, x1, y1 = 1, 0, 0, width, height
        else:
            # Whole pooling cells only: trim the region to a multiple of the factor.
            x1 = x0 + (x1 - x0) // factor * factor
            y1 = y0 + (y1 - y0) // factor * factor
            # Pooled pixel (x', y') has its centre at source (x0 + k x' + (k-1)/2, y0 + ...).
            matrix = matrix @ np.array([[factor, 0, x0 + (factor - 1) / 2],
                                        [0, factor, y0 + (factor - 1) / 2], [0, 0, 1.0]])
    else:
        factor = 1
    in_hw = ((y1 - y0) // factor, (x1 - x0) // factor)
    theta = _theta(torch.from_numpy(matrix)[None], in_hw, (size, size))[0]
    return slice(y0, y1), slice(x0, x1), factor, theta


def plan_alignments(crops: Sequence[tuple[np.ndarray, int, tuple[int, int]]],
                    device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> list[AlignPlan]:
    """The :class:`AlignPlan` of each ``(dst_from_src (3, 3), size, image_hw (H, W))``: a
    ``size`` x ``size`` crop of an image of ``image_hw``, anti-aliased when downscaling.

    The region of the image that a crop sees is cut out, average-pooled by the integer factor
    ``k = floor(source pixels per output pixel)`` when ``k >= 2``, then warped; gradients reach
    every pixel of that region. The geometry is computed on the CPU and sent to ``device`` in
    one transfer (one wait for the device, however many crops)."""
    if not crops:
        return []
    geometry = [_region_and_theta(matrix, size, hw) for matrix, size, hw in crops]
    thetas = torch.stack([g[3] for g in geometry]).to(device=device, dtype=dtype)
    return [AlignPlan(rows, cols, factor,
                      F.affine_grid(thetas[i:i + 1], [1, 1, size, size], align_corners=False))
            for i, ((rows, cols, factor, _), (_, size, _)) in enumerate(zip(geometry, crops,
                                                                           strict=True))]


def plan_alignment(dst_from_src: np.ndarray, size: int, image_hw: tuple[int, int],
                   device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> AlignPlan:
    """:func:`plan_alignments` of one crop."""
    return plan_alignments([(dst_from_src, size, image_hw)], device, dtype)[0]


def aligned(image: torch.Tensor, plan: AlignPlan) -> torch.Tensor:
    """The crop (C, S, S) of ``image`` (C, H, W) that ``plan`` describes; differentiable."""
    region = image[None, :, plan.rows, plan.cols]
    if plan.factor > 1:
        region = F.avg_pool2d(region, plan.factor)
    return F.grid_sample(region, plan.grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def align(image: torch.Tensor, dst_from_src: np.ndarray, size: int) -> torch.Tensor:
    """One aligned crop (C, size, size) of ``image`` (C, H, W), anti-aliased when downscaling
    (see :func:`plan_alignment`); gradients reach every pixel the crop reads."""
    return aligned(image, plan_alignment(dst_from_src, size, tuple(image.shape[-2:]),
                                         image.device, image.dtype))
