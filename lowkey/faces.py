"""Face detection: MTCNN (facenet-pytorch) boxes and 5 landmarks, without gradient.

Large photos are detected on a downscaled copy and the boxes and landmarks are mapped back to
full-resolution pixel coordinates. The copy is as small as it can be (long side ``max_side``,
for speed) while a face of ``smallest_face`` pixels in the photo is still as large as MTCNN's
own minimum (``min_face_size``) in the copy: in a 6000x4000 photo, faces down to 40 px are found
(the copy is 3000x2000), not only those over 117 px as a 1024 px copy would allow. Every report
says how small a face its photo could have held (:meth:`FaceDetector.smallest_face_px`).

Landmarks are in the order left eye, right eye, nose tip, left mouth corner, right mouth corner,
"left" meaning smaller x in the photo, which is the order of the ArcFace template in
:mod:`lowkey.models.registry`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from lowkey.pixels import to_uint8_hwc

logger = logging.getLogger(__name__)

FaceSelection = Literal["all", "largest"]


@dataclass(frozen=True)
class Face:
    """One detected face in full-resolution, upright photo pixel coordinates.

    ``box`` is (x1, y1, x2, y2); ``landmarks`` is five (x, y) points; ``score`` is MTCNN's
    probability in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)

    def landmarks_array(self) -> np.ndarray:
        """(5, 2) float64 array of (x, y)."""
        return np.asarray(self.landmarks, np.float64)

    def to_json(self) -> dict:
        return {
            "box": [round(v, 2) for v in self.box],
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
            "score": round(self.score, 4),
        }


def detection_copy(image: Image.Image, scale: float) -> tuple[Image.Image, float, float]:
    """``image`` resized by ``scale`` for a face detector to search, and the factors ``(sx, sy)``
    that map the copy's coordinates back to ``image``'s pixels (``x * sx``, ``y * sy``).

    Each side of the copy is ``max(1, round(side * scale))``; the resize is bilinear after an
    integer box reduction (Pillow's ``reducing_gap=2``), so a big photo shrinks fast and without
    aliasing. The factors are the real size ratios (``image.width / copy.width``, ...), which
    differ a little from ``1 / scale`` since the copy's sides are rounded. When ``scale >= 1``
    this is ``image`` itself and ``(1.0, 1.0)``. Works for any mode (RGB, L).
    """
    if scale >= 1.0:
        return image, 1.0, 1.0
    width, height = image.size
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    copy = image.resize(small, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return copy, width / small[0], height / small[1]


def _load_mtcnn(device: torch.device, min_face_size: int) -> torch.nn.Module:
    try:
        from facenet_pytorch import MTCNN
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "face detection needs facenet-pytorch, a dependency of LowKey: reinstall LowKey "
            "(pip install lowkey, or bash installers/setup.sh)"
        ) from exc
    return MTCNN(keep_all=True, min_face_size=min_face_size, device=device)


class FaceDetector:
    """Find faces in RGB photos with MTCNN.

    ``max_side``: photos are detected on a copy downscaled towards this long side, but never
    so far that a face of ``smallest_face`` photo pixels falls under ``min_face_size`` (MTCNN's
    minimum, in the copy's pixels). ``min_score``: faces MTCNN is less sure of are dropped.
    """

    def __init__(self, device: str | torch.device = "cpu", max_side: int = 1024,
                 min_face_size: int = 20, min_score: float = 0.9,
                 smallest_face: int = 40) -> None:
        if smallest_face < min_face_size:
            raise ValueError("smallest_face must be at least min_face_size")
        self.device = torch.device(device)
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_score = min_score
        self.smallest_face = smallest_face
        self._mtcnn = _load_mtcnn(self.device, min_face_size)

    def scale_for(self, size: tuple[int, int]) -> float:
        """The factor (<= 1) a photo of ``size`` (width, height) is resized by for detection."""
        long_side = max(size)
        return min(1.0, max(self.max_side / long_side, self.min_face_size / self.smallest_face))

    def smallest_face_px(self, size: tuple[int, int]) -> int:
        """The smallest face (box side, photo pixels) that can be found in a photo of ``size``
        (width, height): MTCNN's minimum, scaled back from the detection copy."""
        return math.ceil(self.min_face_size / self.scale_for(size) - 1e-9)

    def detect(self, pixels: torch.Tensor) -> list[Face]:
        """Faces in ``pixels`` (3, H, W) RGB in [0, 1], largest first; [] when there is none."""
        if pixels.ndim != 3 or pixels.shape[0] != 3:
            raise ValueError(f"pixels must be (3, H, W), got {tuple(pixels.shape)}")
        height, width = pixels.shape[-2:]
        image, sx, sy = detection_copy(Image.fromarray(to_uint8_hwc(pixels)),
                                       self.scale_for((width, height)))
        with torch.no_grad():
            boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        probs = np.asarray(probs, np.float64).reshape(-1)
        points = np.asarray(points, np.float64).reshape(-1, 5, 2)
        faces = []
        for box, prob, pts in zip(boxes, probs, points, strict=True):
            if prob < self.min_score:
                continue
            faces.append(Face(
                box=(float(box[0] * sx), float(box[1] * sy), float(box[2] * sx), float(box[3] * sy)),
                landmarks=tuple((float(x * sx), float(y * sy)) for x, y in pts),
                score=float(prob),
            ))
        faces.sort(key=lambda f: f.area, reverse=True)
        logger.debug("found %d face(s) in a %dx%d photo", len(faces), width, height)
        return faces


def select_faces(faces: list[Face], which: FaceSelection = "all") -> list[Face]:
    """Every face (the default), or only the largest one."""
    if which == "all":
        return list(faces)
    if which == "largest":
        return faces[:1]
    raise ValueError(f"which must be 'all' or 'largest', not {which!r}")
