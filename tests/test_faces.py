"""MTCNN detection: real faces, no face, several faces, large photos detected on a small copy."""

import numpy as np
import pytest
import torch
from PIL import Image

from lowkey.faces import FaceDetector, select_faces


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
