"""Known answers, gradients and conventions of the differentiable alignment."""

import numpy as np
import pytest
import torch

from lowkey.align import align, box_crop_matrix, similarity_matrix, warp_affine
from lowkey.models.registry import ARCFACE_TEMPLATE_112


def _image(b=1, c=3, h=7, w=9, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g, dtype=dtype)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_identity_warp_is_exact(batch):
    image = _image(b=batch)
    eye = torch.eye(3, dtype=torch.float64).expand(batch, 3, 3)
    out = warp_affine(image, eye, (7, 9))
    assert torch.allclose(out, image, atol=1e-12)


def test_rotation_by_90_degrees_matches_rot90():
    image = _image(h=5, w=8)
    height = 5
    # Clockwise quarter turn: source (x, y) -> output (H - 1 - y, x); output is 5 wide, 8 high.
    m = torch.tensor([[0.0, -1.0, height - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)[None]
    out = warp_affine(image, m, (8, 5))
    expected = torch.rot90(image, k=-1, dims=(2, 3))
    assert torch.allclose(out, expected, atol=1e-12)


def test_integer_shift_and_zero_padding():
    image = _image(h=6, w=6)
    shift = torch.tensor([[1.0, 0, 2.0], [0, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64)[None]
    out = warp_affine(image, shift, (6, 6))
    assert torch.allclose(out[..., 2:], image[..., :4], atol=1e-12)
    # zero padding, up to float64 rounding (grid_sample leaves ~1e-16 on some CPUs' SIMD paths)
    assert out[..., :2].abs().max() < 1e-12


def test_warp_gradcheck_float64():
    image = _image(h=6, w=5).requires_grad_(True)
    angle = 0.3
    m = torch.tensor([[0.8 * np.cos(angle), -0.8 * np.sin(angle), 1.3],
                      [0.8 * np.sin(angle), 0.8 * np.cos(angle), -0.4], [0, 0, 1.0]],
                     dtype=torch.float64)[None]
    assert torch.autograd.gradcheck(lambda x: warp_affine(x, m, (4, 4)), (image,))


def test_align_gradcheck_float64_with_pooling():
    image = _image(h=24, w=20).requires_grad_(True)
    m = np.array([[0.3, 0.02, -0.5], [-0.02, 0.3, 0.7], [0, 0, 1.0]])  # 3x downscale -> pooling
    assert torch.autograd.gradcheck(lambda x: align(x[0], m, 5)[None], (image,))


def test_similarity_matrix_recovers_a_known_transform():
    template = np.asarray(ARCFACE_TEMPLATE_112)
    angle, scale, shift = 0.4, 3.5, np.array([400.0, 250.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = template @ rot.T + shift  # photo points
    m = similarity_matrix(landmarks, template)
    mapped = (m @ np.c_[landmarks, np.ones(5)].T).T[:, :2]
    assert np.allclose(mapped, template, atol=1e-9)


def test_box_crop_maps_box_edges_to_crop_edges():
    box = (100.0, 50.0, 180.0, 150.0)
    m = box_crop_matrix(box, margin=0, size=160, image_size=(640, 480))
    # Pixel-edge convention: source edge (left - 0.5) goes to output edge -0.5.
    corners = np.array([[99.5, 49.5, 1], [179.5, 149.5, 1]]).T
    out = (m @ corners)[:2].T
    assert np.allclose(out, [[-0.5, -0.5], [159.5, 159.5]])


def test_box_margin_follows_facenet_pytorch():
    box = (100.0, 100.0, 240.0, 240.0)
    m = box_crop_matrix(box, margin=20, size=160, image_size=(1000, 1000))
    # margin 20 px of a 160 crop: the box is widened by 20 * 140 / 140 = 20 px in all.
    assert m[0, 0] == pytest.approx(160 / 160)
    assert m[0, 2] == pytest.approx((0.5 - 90) - 0.5)


def test_align_downscaling_is_antialiased_and_reaches_every_pixel():
    g = torch.Generator().manual_seed(1)
    # 1-pixel stripes alias badly when sampled sparsely; a box filter averages them to 0.5.
    stripes = (torch.arange(600) % 2).float().expand(3, 600, 600).clone()
    m = np.array([[112 / 560, 0, -112 / 560 * 20], [0, 112 / 560, -112 / 560 * 20], [0, 0, 1.0]])
    crop = align(stripes, m, 112)
    assert crop[:, 2:-2, 2:-2].sub(0.5).abs().max() < 0.11  # 5x5 cell: mean of 0/1 stripes
    image = torch.rand(3, 600, 600, generator=g, requires_grad=True)
    align(image, m, 112).sum().backward()
    inside = image.grad[:, 30:570, 30:570]
    assert (inside != 0).float().mean() == 1.0


def test_align_matches_plain_warp_when_not_downscaling():
    image = _image(b=1, h=40, w=30, dtype=torch.float32)[0]
    m = np.array([[1.5, 0.1, -3.0], [-0.1, 1.5, 2.0], [0, 0, 1.0]])
    a = align(image, m, 16)
    b = warp_affine(image[None], torch.from_numpy(m)[None], (16, 16))[0]
    assert torch.allclose(a, b)


def test_crop_matches_facenet_pytorch_extract_face(astronaut_rgb):
    from facenet_pytorch.models.utils.detect_face import extract_face
    from PIL import Image

    box = np.array([181.0, 62.0, 268.0, 172.0])
    theirs = extract_face(Image.fromarray(astronaut_rgb), box, image_size=160, margin=20)
    image = torch.from_numpy(astronaut_rgb).permute(2, 0, 1).float() / 255
    m = box_crop_matrix(box, margin=20, size=160, image_size=(512, 512))
    ours = align(image, m, 160) * 255
    # Same crop, different resampling filters: close, far from a misplaced crop.
    diff = (ours - theirs.float()).abs().mean()
    shifted = (torch.roll(ours, 8, dims=2) - theirs.float()).abs().mean()
    assert diff < 6.0
    assert shifted > 2 * diff
