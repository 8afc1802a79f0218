"""Image filters whose gradient is fast on a CPU: a separable Gaussian blur, and
:func:`without_onednn`, which runs a function's forward and backward pass without oneDNN; and
:func:`jpeg_compressed`, JPEG with a gradient (what every platform does to an upload).

Blurs and models of human vision filter each colour channel on its own: convolutions of one
input channel. On a CPU, oneDNN (mkldnn, PyTorch's default there) runs their backward pass 10-40
times slower than their forward pass (a 13-tap Gaussian on three 256 x 256 channels, one
thread: 190 ms forward and backward; as two one-dimensional passes without oneDNN, 4 ms), while
the face models' convolutions are faster with it. Which convolution code runs is chosen again
in the backward pass, so a function that should run without oneDNN has its own backward pass
(:func:`without_onednn`). The switch is process-wide: other threads' convolutions during it
run without oneDNN too, slower but with the same values to float rounding.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torchvision.transforms.functional as TF
from torch import nn

#: One thread at a time turns oneDNN off (re-entrant: a filter inside another is fine), so the
#: switch is always restored to what it was.
_ONEDNN_SWITCH = threading.RLock()


@contextmanager
def onednn_off() -> Iterator[None]:
    """oneDNN (mkldnn) convolutions off inside, restored after; one thread at a time."""
    with _ONEDNN_SWITCH:
        was = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            yield
        finally:
            torch.backends.mkldnn.enabled = was


class _WithoutOneDNN(torch.autograd.Function):
    """``fn(*inputs)`` run, and differentiated, with oneDNN off (see :func:`without_onednn`).
    The graph made in the forward pass is kept for the backward pass (no recomputation); it
    is differentiated once."""

    @staticmethod
    def forward(ctx: Any, fn: Callable[..., torch.Tensor],  # type: ignore[override]
                *inputs: torch.Tensor) -> torch.Tensor:
        leaves = [x.detach().requires_grad_(x.requires_grad) for x in inputs]
        with torch.enable_grad(), onednn_off():
            out = fn(*leaves)
        ctx.graph = (out, leaves)
        return out.detach()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor | None, ...]:
        out, leaves = ctx.graph
        del ctx.graph
        wanted = [x for x in leaves if x.requires_grad]
        with onednn_off():
            grads = iter(torch.autograd.grad(out, wanted, grad_out))
        return (None, *(next(grads) if x.requires_grad else None for x in leaves))


def without_onednn(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``fn(*inputs)``, one tensor, computed, and (when a gradient is wanted) differentiated,
    with oneDNN convolutions off; the same values as ``fn(*inputs)`` to float rounding. For
    functions made of one-channel convolutions (blurs, :class:`lowkey.perceptual.CVVDPPenalty`)
    on a CPU; on a GPU it changes nothing and costs one more autograd node."""
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs)):
        with onednn_off():
            return fn(*inputs)
    return _WithoutOneDNN.apply(fn, *inputs)


def separable_gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """torchvision's :func:`~torchvision.transforms.functional.gaussian_blur` with a square
    ``kernel_size`` and one ``sigma`` (reflect padding) as two one-dimensional passes: the
    same values to float rounding; (..., C, H, W) -> (..., C, H, W)."""
    blurred = TF.gaussian_blur(image, [kernel_size, 1], [sigma, sigma])
    return TF.gaussian_blur(blurred, [1, kernel_size], [sigma, sigma])


class SeparableGaussianBlur(nn.Module):
    """:func:`separable_gaussian_blur` as a module, standing in for torchvision's
    :class:`~torchvision.transforms.GaussianBlur` with a fixed sigma."""

    def __init__(self, kernel_size: int, sigma: float) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.sigma = sigma

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return separable_gaussian_blur(image, self.kernel_size, self.sigma)


def jpeg_compressed(image: torch.Tensor, quality: float) -> torch.Tensor:
    """``J``: (B, 3, H, W) RGB, sRGB values in [0, 1] (clipped to it), through a JPEG encoder
    and decoder at ``quality`` (1-100), with a gradient: kornia's ``jpeg_codec_differentiable``
    (Reich et al., "Differentiable JPEG: The Devil is in the Details", WACV 2024): YCbCr, 4:2:0
    chroma, 8 x 8 DCT, the standard's quantisation tables scaled by quality, with rounding and
    clipping approximated so that the gradient passes. Any H and W (padded inside); its output
    is within ~44-48 dB PSNR of Pillow's at qualities 60-90 (tests/test_filters.py). kornia is
    imported on first use (its import takes seconds)."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(image.shape)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    from kornia.enhance import jpeg_codec_differentiable

    q = torch.full((image.shape[0],), float(quality), dtype=image.dtype, device=image.device)
    return jpeg_codec_differentiable(image.clamp(0.0, 1.0), q)


__all__ = ["SeparableGaussianBlur", "jpeg_compressed", "onednn_off", "separable_gaussian_blur",
           "without_onednn"]
