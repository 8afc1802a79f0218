"""Objective (1) of the LowKey paper, term by term.

For original photo ``x``, perturbed photo ``x'``, ensemble ``f_1..f_n``, detection + alignment
``A`` and Gaussian smoothing ``G``::

    (1 / 2n) sum_i [ ||f_i(A(x)) - f_i(A(x'))|| + ||f_i(A(x)) - f_i(A(G(x')))|| ] / ||f_i(A(x))||
        - alpha * P(x, x')

averaged over every protected face, with ``P`` the perceptual penalty (LPIPS in the paper) on the
whole photo. ``G`` is a Gaussian blur (sigma 3, window 7) of the photo before alignment.

The photo is handled as *windows*: disjoint rectangles around the faces (the region every model's
alignment reads, plus a margin). Pixels outside them never change, so the whole-photo penalty is
the area-weighted sum of the windows' penalties (exact up to the metric's border effects, since
the margin gives it context), and nothing scales with the photo's full size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torchvision.transforms.functional as TF

from lowkey.align import align
from lowkey.models.recognizer import FaceRecognizer
from lowkey.perceptual import PerceptualPenalty, pooled_under


@dataclass(frozen=True)
class FaceInWindow:
    """One face to protect: the window holding it and each model's window-relative alignment."""

    window: int
    matrices: dict[str, np.ndarray]  # model name -> dst_from_src (3, 3) in window pixels


def normalised_distance(original: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """``||original - perturbed|| / ||original||`` per row; (N, D), (N, D) -> (N,)."""
    return (original - perturbed).norm(dim=1) / original.norm(dim=1)


def gaussian_smoothing(image: torch.Tensor, sigma: float, window: int) -> torch.Tensor:
    """``G``: Gaussian blur of (B, C, H, W) with reflect padding (torchvision)."""
    return TF.gaussian_blur(image, [window, window], [sigma, sigma])


class LowKeyObjective:
    """Computes objective (1) on windows of a photo; larger is better for the attacker.

    ``models``: the ensemble; ``penalty``: P; ``alpha``: its weight; ``blur_sigma`` and
    ``blur_window``: G's parameters; ``penalty_max_side``: windows larger than this are
    average-pooled (by an integer factor) before P, which bounds time and memory on big photos.
    """

    def __init__(self, models: list[FaceRecognizer], penalty: PerceptualPenalty,
                 alpha: float = 0.05, blur_sigma: float = 3.0, blur_window: int = 7,
                 penalty_max_side: int = 1536) -> None:
        if not models:
            raise ValueError("the ensemble needs at least one model")
        self.models = models
        self.penalty = penalty
        self.alpha = alpha
        self.blur_sigma = blur_sigma
        self.blur_window = blur_window
        self.penalty_max_side = penalty_max_side

    def embeddings(self, windows: list[torch.Tensor],
                   faces: list[FaceInWindow]) -> dict[str, torch.Tensor]:
        """Each model's raw embeddings (N, D) of every face, from windows (3, h, w) RGB [0, 1]."""
        out = {}
        for model in self.models:
            size = model.input_size
            crops = torch.stack([align(windows[f.window], f.matrices[model.name], size)
                                 for f in faces])
            out[model.name] = model(crops)
        return out

    def feature_terms(self, original: dict[str, torch.Tensor], windows: list[torch.Tensor],
                      faces: list[FaceInWindow]) -> dict[str, torch.Tensor]:
        """Per model, (N,) mean of the plain and the smoothed normalised distance per face."""
        blurred = [gaussian_smoothing(w[None], self.blur_sigma, self.blur_window)[0]
                   for w in windows]
        # One model call per step for both views (faces of x' then of G(x')): half the kernel
        # launches, which is what bounds a step on a GPU (the models are in eval mode, so the
        # batch does not change any embedding).
        n = len(faces)
        both = self.embeddings(windows + blurred,
                               faces + [replace(f, window=f.window + len(windows)) for f in faces])
        return {
            name: 0.5 * (normalised_distance(original[name], both[name][:n])
                         + normalised_distance(original[name], both[name][n:]))
            for name in original
        }

    def perceptual(self, originals: list[torch.Tensor], windows: list[torch.Tensor],
                   photo_area: int) -> torch.Tensor:
        """P(x, x') on the whole photo: the windows' penalties weighted by their area share."""
        total = windows[0].new_zeros(())
        for before, after in zip(originals, windows, strict=True):
            height, width = before.shape[-2:]
            a, b = pooled_under(before[None], after[None], self.penalty_max_side)
            total = total + self.penalty(a, b).sum() * (height * width / photo_area)
        return total

    def __call__(self, original_embeddings: dict[str, torch.Tensor],
                 originals: list[torch.Tensor], windows: list[torch.Tensor],
                 faces: list[FaceInWindow], photo_area: int
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective (a scalar) and its terms as floats (for progress and reports)."""
        per_model = self.feature_terms(original_embeddings, windows, faces)
        feature = torch.stack([v.mean() for v in per_model.values()]).mean()
        perceptual = self.perceptual(originals, windows, photo_area)
        value = feature - self.alpha * perceptual
        terms = {"objective": value.item(), "feature": feature.item(),
                 "perceptual": perceptual.item()}
        terms.update({f"feature/{k}": v.mean().item() for k, v in per_model.items()})
        return value, terms
