"""The perceptual penalty: LPIPS with a loaded AlexNet backbone, and the SSIM fallback."""

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lowkey.errors import WeightsError
from lowkey.perceptual import LPIPSPenalty, SSIMPenalty, load_penalty


def _pair():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 64, 64, generator=g)
    b = (a + 0.1 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    return a, b


def test_lpips_loads_a_torchvision_alexnet_state_dict():
    state = torchvision.models.alexnet(weights=None).state_dict()
    penalty = LPIPSPenalty(state)
    conv = penalty.metric.net.slice2._modules["3"]
    assert torch.equal(conv.weight, state["features.3.weight"])
    a, b = _pair()
    assert penalty(a, a).item() == pytest.approx(0.0, abs=1e-6)
    b.requires_grad_(True)
    value = penalty(a, b)
    assert value.item() > 0
    value.sum().backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    assert penalty.name == "lpips-alex"


def test_lpips_refuses_something_that_is_not_alexnet():
    with pytest.raises(WeightsError):
        LPIPSPenalty({"features.0.weight": torch.zeros(1)})


def test_ssim_fallback_is_zero_for_equal_images_and_has_finite_gradients():
    penalty = SSIMPenalty()
    a, b = _pair()
    assert penalty(a, a).item() == pytest.approx(0.0, abs=1e-6)
    b.requires_grad_(True)
    value = penalty(a, b)
    value.sum().backward()
    assert value.item() > 0.05 and torch.isfinite(b.grad).all()


def test_without_backbone_weights_lpips_is_refused_and_nothing_is_downloaded(
        tmp_path, monkeypatch):
    from dataclasses import replace

    from lowkey.models import registry, store

    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("LOWKEY_OFFLINE", raising=False)
    no_local_copy = replace(registry.LPIPS_ALEX, sources=registry.LPIPS_ALEX.sources[1:])
    monkeypatch.setattr(registry, "LPIPS_ALEX", no_local_copy)
    downloads = []

    def record_download(*args, **kwargs):
        downloads.append(args)
        raise OSError("no download in this test")

    # fetch_source catches every exception of a source, so the guard records instead of raising
    monkeypatch.setattr(store, "_download_url", record_download)
    monkeypatch.setattr(store, "_from_wheel", record_download)
    with pytest.raises(WeightsError, match="lowkey models fetch lpips-alex"):
        load_penalty("lpips-alex")
    assert downloads == []
    assert load_penalty("1-ssim").name == "1-ssim"
    with pytest.raises(ValueError, match="unknown perceptual penalty"):
        load_penalty("mse")


def test_with_backbone_weights_in_the_cache_the_penalty_is_lpips(tmp_path, monkeypatch):
    from dataclasses import replace

    from lowkey.models import registry, store

    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path))
    weights = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    prefix = store.sha256_file(weights)[:8]
    local = replace(registry.LPIPS_ALEX, sha256_prefix=prefix,
                    sources=(registry.WeightSource("file", str(weights)),))
    monkeypatch.setattr(registry, "LPIPS_ALEX", local)
    assert load_penalty("lpips-alex").name == "lpips-alex"


def test_strip_wise_ssim_equals_whole_image_ssim():
    from pytorch_msssim import ssim

    from lowkey.measure import ssim_psnr

    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 300, 170, generator=g)
    b = (a + 0.05 * torch.randn(3, 300, 170, generator=g)).clamp(0, 1)
    whole = ssim(a[None], b[None], data_range=1.0).item()
    for rows in (37, 128, 1000):
        value, psnr = ssim_psnr(a, b, rows=rows)
        assert value == pytest.approx(whole, abs=1e-6)
    mse = torch.mean((a - b) ** 2).item()
    assert psnr == pytest.approx(10 * torch.log10(torch.tensor(1 / mse)).item(), rel=1e-5)
    assert ssim_psnr(a, a)[0] == pytest.approx(1.0) and ssim_psnr(a, a)[1] == float("inf")


def test_whole_photo_distance_pools_large_photos_like_the_objective():
    from lowkey.perceptual import whole_photo_distance

    g = torch.Generator().manual_seed(2)
    a = torch.rand(3, 40, 3100, generator=g)
    b = (a + 0.1 * torch.randn(3, 40, 3100, generator=g)).clamp(0, 1)
    penalty = SSIMPenalty()
    pooled = penalty(torch.nn.functional.avg_pool2d(a[None], 3),
                     torch.nn.functional.avg_pool2d(b[None], 3)).item()
    assert whole_photo_distance(penalty, a, b, max_side=1536) == pytest.approx(pooled, abs=1e-6)
    full = penalty(a[None], b[None]).item()
    assert whole_photo_distance(penalty, a, b, max_side=4000) == pytest.approx(full, abs=1e-6)
    assert pooled < full  # pooling averages the noise away: the factor really was applied
    assert whole_photo_distance(penalty, a, a) == pytest.approx(0.0, abs=1e-6)


def test_ssim_penalty_is_pytorch_msssims_value_and_gradient():
    """The penalty's one-convolution SSIM is pytorch-msssim's SSIM: same values per image of a
    batch and the same gradient (it only regroups the filtering, for speed)."""
    from pytorch_msssim import ssim

    g = torch.Generator().manual_seed(3)
    a = torch.rand(2, 3, 90, 70, generator=g)
    b = (a + 0.08 * torch.randn(2, 3, 90, 70, generator=g)).clamp(0, 1)
    ours_in, theirs_in = b.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ours = SSIMPenalty()(a, ours_in)
    theirs = 1 - ssim(a, theirs_in, data_range=1.0, size_average=False)
    assert ours.shape == (2,) and torch.allclose(ours, theirs, atol=1e-6)
    assert abs(ours[0].item() - ours[1].item()) > 1e-4  # per image, not averaged
    ours.sum().backward()
    theirs.sum().backward()
    assert torch.allclose(ours_in.grad, theirs_in.grad, atol=1e-7, rtol=1e-4)


def test_cvvdp_penalty_is_the_measured_jod_and_charges_a_colour_blotch_more_than_ssim():
    """The in-loop ColorVideoVDP penalty is (10 - JOD) / 10 of the metric the face is measured
    with, has gradients, and (unlike 1 - SSIM) charges a smooth colour blotch more than fine
    luma speckle of the same energy."""
    from lowkey.measure import cvvdp_jod

    penalty = load_penalty("cvvdp")
    g = torch.Generator().manual_seed(0)
    original = torch.rand(1, 3, 64, 64, generator=g) * 0.4 + 0.3
    assert penalty(original, original).item() == pytest.approx(0.0, abs=1e-4)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 12.0**2))
    blotch = torch.stack([blob, -blob, 0 * blob]) * 0.06           # smooth red-green shift
    speckle = torch.randn(1, 64, 64, generator=g).expand(3, 64, 64)  # luma noise
    speckle = speckle * blotch.square().mean().sqrt() / speckle.square().mean().sqrt()
    blotched = (original + blotch).clamp(0, 1).requires_grad_(True)
    speckled = (original + speckle).clamp(0, 1)
    value = penalty(original, blotched)
    assert value.item() == pytest.approx((10 - cvvdp_jod(original[0], blotched[0])) / 10,
                                         abs=1e-4)
    value.sum().backward()
    assert torch.isfinite(blotched.grad).all() and blotched.grad.abs().sum() > 0
    ssim = SSIMPenalty()
    assert penalty(original, blotched).item() > penalty(original, speckled).item()
    assert ssim(original, blotched).item() < ssim(original, speckled).item()
    assert penalty.name == "cvvdp"


def test_ssim_and_cvvdp_penalty_is_the_sum_of_both():
    g = torch.Generator().manual_seed(1)
    original = torch.rand(2, 3, 48, 40, generator=g) * 0.5 + 0.25
    changed = (original + 0.03 * torch.randn(original.shape, generator=g)).clamp(0, 1)
    both = load_penalty("ssim+cvvdp")
    value = both(original, changed)
    assert value.shape == (2,)
    parts = load_penalty("1-ssim")(original, changed) + load_penalty("cvvdp")(original, changed)
    assert torch.allclose(value, parts, atol=1e-5)
    assert both(original, original).abs().max().item() < 1e-4


def test_ssim_and_cvvdp_reads_ssim_as_given_and_cvvdp_pooled_under_256_px():
    """Over 256 px a side, SSIM still sees every pixel (its cost is a fraction of
    ColorVideoVDP's) while ColorVideoVDP reads the images average-pooled under 256 px, seen at
    the display's pixels per degree / the pooling factor times the given pixel size."""
    g = torch.Generator().manual_seed(4)
    smooth = torch.rand(1, 3, 30, 26, generator=g) * 0.5 + 0.25
    original = F.interpolate(smooth, size=(300, 260), mode="bilinear")
    changed = (original + 0.03 * torch.randn(original.shape, generator=g)).clamp(0, 1)
    both = load_penalty("ssim+cvvdp")
    pooled = F.avg_pool2d(original, 2), F.avg_pool2d(changed, 2)
    expected = (load_penalty("1-ssim")(original, changed)
                + load_penalty("cvvdp")(*pooled, pixel_size=6))
    assert torch.allclose(both(original, changed, pixel_size=3), expected, atol=1e-5)
    # SSIM on the pooled images would miss much of this fine noise on a smooth face
    ssim = load_penalty("1-ssim")
    assert ssim(original, changed).item() > 1.5 * ssim(*pooled).item()


def test_cvvdp_penalty_sees_pooled_images_at_the_photos_size_on_the_display():
    """A change read on images average-pooled by k, seen at the display's pixels per degree / k
    (``pixel_size=k``), costs about what it costs at full resolution; seen as if the pooled
    image were the photo (pixel_size 1), it would look a fraction of a JOD less visible."""
    from skimage import data

    photo = torch.from_numpy(data.astronaut()[:256, 128:384].copy()).permute(2, 0, 1)[None]
    photo = photo.float() / 255
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    wave = torch.sin(xx / 20)
    blotch = torch.stack([wave, -wave, 0 * wave])[None] * 0.03  # red-green waves
    speckle = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.02
    speckle = F.interpolate(speckle, scale_factor=4, mode="nearest").expand(1, 3, 256, 256)
    penalty = load_penalty("cvvdp")
    for change in (blotch, speckle):
        changed = (photo + change).clamp(0, 1)
        full = penalty(photo, changed).item()
        a, b = F.avg_pool2d(photo, 4), F.avg_pool2d(changed, 4)
        assert penalty(a, b, 4).item() == pytest.approx(full, abs=0.015)  # 0.15 JOD
        assert penalty(a, b).item() < full - 0.04  # 0.4 JOD too few
    with pytest.raises(ValueError, match="pixel_size"):
        penalty(photo, photo, 0)


def test_cvvdp_penalty_is_pycvvdps_own_loss_with_its_blurs_and_without_onednn():
    """The penalty runs ColorVideoVDP with separable blurs and without oneDNN, for speed: the
    value and the gradient are pycvvdp's own (its two-dimensional blurs, oneDNN as it is)."""
    import pycvvdp
    from torchvision.transforms import GaussianBlur

    from lowkey.filters import SeparableGaussianBlur
    from lowkey.perceptual import CVVDP_DISPLAY

    g = torch.Generator().manual_seed(4)
    original = torch.rand(1, 3, 80, 72, generator=g) * 0.5 + 0.25
    changed = (original + 0.03 * torch.randn(original.shape, generator=g)).clamp(0, 1)
    ours_in, theirs_in = changed.clone().requires_grad_(True), changed.clone().requires_grad_(True)
    penalty = load_penalty("cvvdp")
    ours = penalty(original, ours_in)
    metric = pycvvdp.cvvdp(display_name=CVVDP_DISPLAY, quiet=True)
    assert isinstance(metric.pu_blur, GaussianBlur)
    assert isinstance(penalty.metrics[1].pu_blur, SeparableGaussianBlur)
    theirs = metric.loss(theirs_in[0], original[0], dim_order="CHW") / 10
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-4, abs=1e-7)
    ours.sum().backward()
    theirs.backward()
    assert torch.allclose(ours_in.grad, theirs_in.grad, rtol=1e-3, atol=1e-7)
    assert ours_in.grad.abs().sum() > 0
