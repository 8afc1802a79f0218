"""MTCNN detection: real faces, no face, several faces, large photos detected on a small copy."""

import numpy as np
import pytest
import torch
from PIL import Image

from lowkey.faces import FaceDetector, detection_copy, select_faces


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255


def test_astronaut_has_one_face_with_sane_landmarks(detector, astronaut_rgb):
    faces = detector.detect(_tensor(astronaut_rgb))
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert face.score > 0.99
    assert 150 < x1 < x2 < 300 and 40 < y1 < y2 < 200
    lm = face.landmarks_array()
    assert lm.shape == (5, 2)
    left_eye, right_eye, nose, mouth_l, mouth_r = lm
    assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in lm)


def test_no_face_gives_empty_list(detector):
    g = np.random.default_rng(0)
    noise = g.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert detector.detect(_tensor(noise)) == []
    assert detector.detect(torch.full((3, 200, 200), 0.5)) == []


def test_large_photo_is_detected_on_a_small_copy_and_mapped_back(astronaut_rgb):
    small = FaceDetector(max_side=512, smallest_face=80)  # 2048 px are searched at 512 px
    assert small.scale_for((2048, 2048)) == 0.25
    base = small.detect(_tensor(astronaut_rgb))[0]
    big = np.asarray(Image.fromarray(astronaut_rgb).resize((2048, 2048), Image.BICUBIC))
    face = small.detect(_tensor(big))[0]
    # Landmarks come back in full-resolution coordinates (4x), within a few big-photo pixels.
    assert np.abs(face.landmarks_array() - 4 * base.landmarks_array()).max() < 8
    assert np.allclose(face.box, 4 * np.asarray(base.box), atol=12)


def test_every_face_of_a_group_photo_and_largest_selection(detector, multi_face_dir):
    couple = np.asarray(Image.open(multi_face_dir / "couple.jpg").convert("RGB"))
    faces = detector.detect(_tensor(couple))
    assert len(faces) == 2
    assert faces[0].area >= faces[1].area
    assert select_faces(faces, "largest") == faces[:1]
    assert select_faces(faces, "all") == faces
    many = np.asarray(Image.open(multi_face_dir / "selfie-many-people.jpg").convert("RGB"))
    assert len(detector.detect(_tensor(many))) >= 3


def test_bad_shapes_are_refused(detector):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        detector.detect(torch.zeros(1, 3, 10, 10))
    with pytest.raises(ValueError):
        select_faces([], "biggest")


def test_a_small_face_in_a_big_photo_is_found_and_the_limit_is_stated(astronaut_rgb):
    """A face of about 50 px in a 5000x3000 photo: a 1024 px copy shrinks it to 10 px, below
    MTCNN's 20 px minimum; the detector searches a copy where 40 px faces stay 20 px."""
    face_patch = Image.fromarray(astronaut_rgb).resize((256, 256), Image.BICUBIC)
    canvas = Image.new("RGB", (5000, 3000), (90, 110, 130))
    canvas.paste(face_patch, (3100, 1700))
    pixels = _tensor(np.asarray(canvas))
    old_way = FaceDetector(smallest_face=round(20 * 5000 / 1024))  # a plain 1024 px copy
    assert old_way.scale_for((5000, 3000)) == pytest.approx(1024 / 5000)
    assert old_way.detect(pixels) == []
    detector = FaceDetector()
    assert detector.smallest_face_px((5000, 3000)) == 40
    assert detector.smallest_face_px((800, 600)) == 20  # small photos: full resolution
    (face,) = detector.detect(pixels)
    x1, y1, x2, y2 = face.box
    assert 3100 + 60 < x1 < x2 < 3100 + 160 and 1700 < y1 < y2 < 1700 + 120
    assert 35 < x2 - x1 < 70


def test_detection_copy_sizes_and_the_factors_that_map_back():
    image = Image.new("RGB", (1001, 333), (10, 20, 30))
    copy, sx, sy = detection_copy(image, 0.25)
    assert copy.size == (250, 83) and copy.mode == "RGB"
    # The real ratios (1001 / 250, 333 / 83), not 1 / 0.25: the copy's far corner maps back
    # onto the photo's far corner.
    assert (sx, sy) == (1001 / 250, 333 / 83)
    assert (copy.width * sx, copy.height * sy) == pytest.approx((1001, 333), abs=1e-9)
    assert detection_copy(image, 1.0) == (image, 1.0, 1.0)  # no copy at all
    assert detection_copy(image, 1.5)[0] is image
    sliver, _, sy = detection_copy(Image.new("L", (4000, 2)), 0.1)  # a side never reaches 0
    assert sliver.size == (400, 1) and sy == 2.0


def test_dlib_detects_a_large_photo_on_a_small_copy_and_maps_back(astronaut_rgb):
    from lowkey.dlib_judge import DlibJudge, dlib_available

    if not dlib_available():
        pytest.skip("dlib is not installed")
    judge = DlibJudge(max_side=512)
    base = sorted(judge.faces(_tensor(astronaut_rgb)), key=lambda f: f.box)  # searched as it is
    big = np.asarray(Image.fromarray(astronaut_rgb).resize((1536, 1536), Image.BICUBIC))
    found = sorted(judge.faces(_tensor(big)), key=lambda f: f.box)  # searched at 512 px
    assert len(found) == len(base) >= 1
    for face, small in zip(found, base, strict=True):  # boxes in 1536 px pixels
        assert np.allclose(face.box, 3 * np.asarray(small.box), atol=6)
    # The astronaut's own face (the top one): its 5-point shape, found in the full photo at the
    # mapped-back box, lands where the small photo's does.
    face, small = (min(faces, key=lambda f: f.box[1]) for faces in (found, base))
    assert 150 < small.box[0] < small.box[2] < 300 and small.box[1] < 200
    assert np.abs(np.asarray(face.points) - 3 * np.asarray(small.points)).max() < 8
