"""Filters with a fast gradient on a CPU: the same values and gradients as the plain ones."""

import pytest
import torch
import torchvision.transforms.functional as TF

from lowkey.filters import (
    SeparableGaussianBlur,
    jpeg_compressed,
    onednn_off,
    separable_gaussian_blur,
    without_onednn,
)


@pytest.mark.parametrize(("size", "kernel", "sigma"), [((37, 52), 7, 3.0), ((64, 40), 13, 3.0),
                                                      ((20, 20), 5, 0.8)])
def test_the_separable_blur_is_torchvisions_blur(size, kernel, sigma):
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    theirs = TF.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
    assert torch.allclose(separable_gaussian_blur(image, kernel, sigma), theirs, atol=1e-6)
    assert torch.allclose(SeparableGaussianBlur(kernel, sigma)(image), theirs, atol=1e-6)
    assert not torch.allclose(theirs, image, atol=1e-2)  # it does blur


def _filtered(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Something made of one-channel convolutions, non-linear in ``image``."""
    out = torch.nn.functional.conv2d(image.reshape(-1, 1, *image.shape[-2:]), weight[None, None])
    return out.square().mean() + (image * weight.mean()).sum()


def test_without_onednn_gives_the_same_value_and_gradients_and_restores_the_switch():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 40, 30, generator=g, requires_grad=True)
    weight = torch.rand(5, 5, generator=g, requires_grad=True)
    expected = _filtered(image, weight)
    want_image, want_weight = torch.autograd.grad(expected, (image, weight))
    was = torch.backends.mkldnn.enabled
    value = without_onednn(_filtered, image, weight)
    assert torch.backends.mkldnn.enabled == was
    assert value.grad_fn is not None and torch.allclose(value, expected, rtol=1e-5)
    got_image, got_weight = torch.autograd.grad(2 * value, (image, weight))
    assert torch.backends.mkldnn.enabled == was
    assert torch.allclose(got_image, 2 * want_image, rtol=1e-4, atol=1e-7)
    assert torch.allclose(got_weight, 2 * want_weight, rtol=1e-4, atol=1e-7)


def test_without_onednn_differentiates_only_what_wants_it_and_runs_without_grad():
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 16, 16, generator=g, requires_grad=True)
    weight = torch.rand(3, 3, generator=g)  # no gradient wanted
    (grad,) = torch.autograd.grad(without_onednn(_filtered, image, weight), (image,))
    assert grad.shape == image.shape and grad.abs().sum() > 0
    with torch.no_grad():
        value = without_onednn(_filtered, image, weight)
    assert value.grad_fn is None
    assert torch.allclose(value, _filtered(image, weight).detach(), rtol=1e-5)


def test_the_switch_is_restored_after_an_error():
    was = torch.backends.mkldnn.enabled
    with pytest.raises(RuntimeError, match="inside"), onednn_off():
        assert torch.backends.mkldnn.enabled is False
        raise RuntimeError("inside")
    assert torch.backends.mkldnn.enabled == was
    # and the lock was released: it can be taken again
    with onednn_off():
        pass


def test_a_filter_inside_another_runs_and_the_switch_comes_back():
    image = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3),
                       requires_grad=True)
    was = torch.backends.mkldnn.enabled

    def outer(x: torch.Tensor) -> torch.Tensor:
        assert torch.backends.mkldnn.enabled is False
        return without_onednn(lambda y: separable_gaussian_blur(y, 5, 1.0), x).square().sum()

    (grad,) = torch.autograd.grad(without_onednn(outer, image), (image,))
    assert grad.abs().sum() > 0 and torch.backends.mkldnn.enabled == was


def _photo_like(size: int = 96) -> torch.Tensor:
    """(1, 3, size, size) in [0, 1]: smooth shading, edges and some texture (JPEG's three cases)."""
    g = torch.Generator().manual_seed(5)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.3 + 0.4 * x, 0.5 - 0.2 * y, 0.4 + 0.3 * x * y])
    base[:, size // 3: 2 * size // 3, size // 4: size // 2] += 0.25  # a block with edges
    noise = TF.gaussian_blur(torch.rand(1, 3, size, size, generator=g), 3, 0.8)[0] - 0.5
    return (base + 0.15 * noise).clamp(0, 1)[None]


@pytest.mark.parametrize("quality", [60, 75, 90])
def test_jpeg_compressed_is_close_to_pillows_jpeg_and_passes_a_gradient(quality):
    import io

    import numpy as np
    from PIL import Image

    image = _photo_like(100)  # not a multiple of 8 or 16
    pixels = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    image = torch.from_numpy(pixels.astype(np.float32) / 255).permute(2, 0, 1)[None]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)  # 4:2:0, as kornia
    pillow = torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).astype(np.float32)
                              / 255).permute(2, 0, 1)[None]
    x = image.clone().requires_grad_()
    ours = jpeg_compressed(x, quality)
    assert ours.shape == image.shape

    def psnr(a, b):
        return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))

    # what JPEG loses, and how close the two codecs are: much closer than either to the input
    assert psnr(ours.detach(), pillow) > psnr(pillow, image) + 6
    assert psnr(ours.detach(), pillow) > 40
    ours.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="quality"):
        jpeg_compressed(image, 0)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        jpeg_compressed(image[:, :1], quality)


def test_lower_quality_loses_more():
    image = _photo_like()
    errors = [float((jpeg_compressed(image, q) - image).abs().mean()) for q in (95, 75, 40)]
    assert errors[0] < errors[1] < errors[2]

