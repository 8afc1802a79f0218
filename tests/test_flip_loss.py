"""The differentiable LDR-FLIP (lowkey/flip_loss.py) against NVIDIA's flip-evaluator, and the
FLIP penalty that reads it pooled like ColorVideoVDP."""

import math

import pytest
import torch
import torch.nn.functional as F

from lowkey.flip_loss import FLIP_PPD, flip_loss, flip_map
from lowkey.measure import flip_error
from lowkey.perceptual import (
    FLIPPenalty,
    SSIMAndCVVDPAndFLIPPenalty,
    SSIMAndCVVDPPenalty,
    load_penalty,
)


def _scene(side: int = 96, seed: int = 0) -> torch.Tensor:
    """(3, side, side) a smooth random scene with a few hard edges, sRGB in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(side, side),
                           mode="bicubic", align_corners=False)[0]
    image = 0.15 + 0.7 * smooth.clamp(0, 1)
    image[:, side // 4: side // 2, side // 3: 2 * side // 3] *= 0.4  # a dark block: edges
    return image.clamp(0, 1)


def _changes(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The kinds of change the attack makes, each rounded to 8 bits as a written photo is."""
    g = torch.Generator().manual_seed(1)
    side = image.shape[-1]
    blotch = F.interpolate(torch.randn(1, 3, 5, 5, generator=g), size=(side, side),
                           mode="bilinear", align_corners=False)[0]
    changed = {
        "noise": image + 0.02 * torch.randn(image.shape, generator=g),
        "blotch": image + 0.05 * blotch,
        "tint": image + torch.tensor([0.04, 0.0, -0.03]).view(3, 1, 1),
        "blur": F.avg_pool2d(image[None], 3, 1, 1, count_include_pad=False)[0],
    }
    return {name: (c.clamp(0, 1) * 255).round() / 255 for name, c in changed.items()}


@pytest.mark.parametrize("ppd", [FLIP_PPD, 22.0])
def test_flip_loss_is_flip_evaluators_value(ppd):
    import flip_evaluator

    image = (_scene() * 255).round() / 255
    for name, changed in _changes(image).items():
        hwc = [x.permute(1, 2, 0).contiguous().numpy() for x in (image, changed)]
        _, expected, _ = flip_evaluator.evaluate(*hwc, "LDR", inputsRGB=True, applyMagma=False,
                                                 parameters={"ppd": ppd})
        ours = flip_loss(image[None], changed[None], ppd).item()
        assert expected > 0.01, name
        assert ours == pytest.approx(expected, rel=2e-3, abs=2e-5), name
    assert flip_error(image, changed) == pytest.approx(
        flip_loss(image[None], changed[None], FLIP_PPD).item(), rel=2e-3)


def test_flip_map_is_near_zero_for_equal_images_and_its_gradient_is_finite():
    image = _scene()[None]
    same = image.clone().requires_grad_(True)
    error = flip_map(image, same, FLIP_PPD)
    assert error.shape == (1, 1, 96, 96)
    assert error.max().item() < 1e-2
    error.mean().backward()
    assert torch.isfinite(same.grad).all()

    changed = _changes(image[0])["noise"][None].requires_grad_(True)
    value = flip_loss(image, changed, FLIP_PPD)
    value.sum().backward()
    assert value.item() > 0.02
    assert torch.isfinite(changed.grad).all() and changed.grad.abs().sum() > 0
    # a step against the gradient lowers the error
    with torch.no_grad():
        stepped = changed - 0.002 * changed.grad / changed.grad.abs().max()
        assert flip_loss(image, stepped, FLIP_PPD).item() < value.item()


def test_flip_loss_charges_visible_changes_more():
    image = (_scene() * 255).round() / 255
    small = ((image + 0.004 * torch.randn(image.shape, generator=torch.Generator().manual_seed(2)))
             .clamp(0, 1) * 255).round() / 255
    big = _changes(image)["noise"]
    assert flip_loss(image[None], small[None], FLIP_PPD) < flip_loss(image[None], big[None],
                                                                     FLIP_PPD)


def test_flip_loss_refuses_mismatched_shapes_and_bad_ppd():
    with pytest.raises(ValueError):
        flip_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9), FLIP_PPD)
    with pytest.raises(ValueError):
        flip_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), FLIP_PPD)
    with pytest.raises(ValueError):
        flip_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), 0.0)


def test_flip_penalty_reads_pooled_under_its_side_at_the_photos_size_on_the_display():
    image = _scene(600)
    changed = _changes(image)["blotch"]
    penalty = FLIPPenalty()
    factor = math.ceil(600 / FLIPPenalty.MAX_SIDE)
    assert factor > 1
    pooled = [F.avg_pool2d(x[None], factor) for x in (image, changed)]
    assert penalty(image[None], changed[None]).item() == pytest.approx(
        flip_loss(*pooled, FLIP_PPD / factor).item(), rel=1e-5)
    assert penalty(image[None], changed[None], pixel_size=2).item() == pytest.approx(
        flip_loss(*pooled, FLIP_PPD / (2 * factor)).item(), rel=1e-5)
    small = _scene(FLIPPenalty.MAX_SIDE)
    assert penalty(small[None], _changes(small)["noise"][None]).item() == pytest.approx(
        flip_loss(small[None], _changes(small)["noise"][None], FLIP_PPD).item(), rel=1e-5)


def test_ssim_cvvdp_and_flip_penalty_is_the_sum_of_its_parts():
    image = _scene(64)[None]
    changed = _changes(image[0])["blotch"][None]
    three = load_penalty("ssim+cvvdp+flip")
    assert isinstance(three, SSIMAndCVVDPAndFLIPPenalty)
    flip = FLIPPenalty()(image, changed)
    expected = SSIMAndCVVDPPenalty()(image, changed) + SSIMAndCVVDPAndFLIPPenalty.FLIP_WEIGHT * flip
    assert three(image, changed).item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0 < SSIMAndCVVDPAndFLIPPenalty.FLIP_WEIGHT <= 1


def test_flip_penalty_computes_an_originals_view_once_and_never_reuses_a_stale_one():
    image = _scene(64)[None]
    changed = _changes(image[0])["noise"][None]
    penalty = FLIPPenalty()
    first = penalty(image, changed).item()
    assert len(penalty._views) == 1
    assert penalty(image.clone(), changed).item() == first  # equal values: the kept view
    assert len(penalty._views) == 1
    other = image.flip(-1)  # new values: a new view, not the kept one
    assert penalty(other, changed).item() == pytest.approx(
        flip_loss(other, changed, FLIP_PPD).item(), rel=1e-6)
    assert len(penalty._views) == 2
    for seed in range(FLIPPenalty.CACHED_VIEWS + 2):
        penalty(_scene(64, seed)[None], changed)
    assert len(penalty._views) == FLIPPenalty.CACHED_VIEWS
