"""Window geometry: which rectangles of a photo the attack may change, and where each face's
alignment reads inside them.

The attack never works on the whole photo: it works on *windows*, disjoint rectangles around
the faces that cover everything each model's alignment reads of each face, plus a margin. A face
is then described by its window and, per model, its alignment matrix relative to the window's
top-left pixel (:class:`FaceInWindow`).

Conventions as in :mod:`lowkey.align`: a matrix ``dst_from_src`` is a (3, 3) homogeneous affine
map taking a source pixel ``(x, y, 1)`` to the crop; pixel ``(row i, column j)`` has its centre at
``x = j, y = i``. Pure geometry: NumPy only, no tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A rectangle of the photo that the attack may change: columns x0..x1-1, rows y0..y1-1."""

    x0: int
    y0: int
    x1: int
    y1: int

    def union(self, other: Window) -> Window:
        return Window(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1),
                      max(self.y1, other.y1))

    def overlaps(self, other: Window) -> bool:
        return (self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1
                and other.y0 < self.y1)

    def contains_point(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


@dataclass(frozen=True)
class FaceInWindow:
    """One face to protect: the window holding it, each model's window-relative alignment, and
    its face region (:func:`face_region` of the detector's box, window pixels; None: the whole
    window), where a person looks and where the perceptual term judges its look
    (:meth:`lowkey.objective.LowKeyObjective.perceptual`)."""

    window: int
    matrices: dict[str, np.ndarray]  # model name -> dst_from_src (3, 3) in window pixels
    region: Window | None = None


#: The face region is the detector's box widened by this fraction of its size on each side.
FACE_REGION_WIDEN = 0.2


def face_region(box: tuple[float, ...] | list[float], size: tuple[int, int],
                widen: float = FACE_REGION_WIDEN) -> tuple[int, int, int, int]:
    """The face region (x0, y0, x1, y1), x1/y1 exclusive, of a detector ``box`` (x1, y1, x2, y2)
    in a photo of ``size`` (width, height): widened by ``widen`` of the box's width (height) on
    the left and right (top and bottom), rounded outwards, clipped to the photo."""
    width, height = size
    x1, y1, x2, y2 = box
    dx, dy = widen * (x2 - x1), widen * (y2 - y1)
    x0 = max(0, math.floor(x1 - dx))
    y0 = max(0, math.floor(y1 - dy))
    return x0, y0, max(x0 + 1, min(width, math.ceil(x2 + dx))), max(y0 + 1,
                                                                      min(height, math.ceil(y2 + dy)))


def source_region(dst_from_src: np.ndarray, size: int) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) in source pixels of what a ``size`` x ``size`` crop sees."""
    src_from_dst = np.linalg.inv(np.asarray(dst_from_src, np.float64))
    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1],
                        [size - 0.5, size - 0.5, 1]]).T
    xs, ys = (src_from_dst @ corners)[:2]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def translated(dst_from_src: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """The same map for a sub-image whose top-left pixel is photo pixel (x0, y0)."""
    return np.asarray(dst_from_src, np.float64) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1.0]])


def read_regions(matrices: Sequence[Mapping[str, np.ndarray]], sizes: Mapping[str, int],
                 image_size: tuple[int, int], margin: float = 0.15) -> list[Window]:
    """What the models read of each face: the union over models of the source area its crop
    sees, widened by
    ``margin`` of its size on every side (context for the blur and the perceptual metric),
    clipped to the photo.

    ``matrices``: per face, model name -> photo-relative ``dst_from_src``; ``sizes``: each
    model's crop size; ``image_size``: (width, height).
    """
    width, height = image_size
    regions = []
    for face in matrices:
        boxes = [source_region(matrix, sizes[name]) for name, matrix in face.items()]
        left = min(b[0] for b in boxes)
        top = min(b[1] for b in boxes)
        right = max(b[2] for b in boxes)
        bottom = max(b[3] for b in boxes)
        pad = margin * max(right - left, bottom - top) + 8
        regions.append(Window(max(0, math.floor(left - pad)), max(0, math.floor(top - pad)),
                              min(width, math.ceil(right + pad)),
                              min(height, math.ceil(bottom + pad))))
    return regions


def merged_windows(regions: Sequence[Window]) -> tuple[list[Window], list[int]]:
    """Disjoint windows: overlapping ``regions`` merged into their bounding rectangle. Returns
    the windows and, per region, the index of its window."""
    windows: list[Window] = []
    for region in regions:
        merged = region
        while True:
            overlapping = [w for w in windows if w.overlaps(merged)]
            if not overlapping:
                break
            for w in overlapping:
                windows.remove(w)
                merged = merged.union(w)
        windows.append(merged)
    owner = [next(i for i, w in enumerate(windows) if w.overlaps(r) or w == r) for r in regions]
    return windows, owner


def face_windows(matrices: Sequence[Mapping[str, np.ndarray]], sizes: Mapping[str, int],
                 image_size: tuple[int, int], margin: float = 0.15
                 ) -> tuple[list[Window], list[int]]:
    """Disjoint windows covering what every model's alignment reads of every face: the
    :func:`read_regions`, :func:`merged_windows`. Returns the windows and, per face, the index
    of its window."""
    return merged_windows(read_regions(matrices, sizes, image_size, margin))


def place_faces(matrices: Sequence[Mapping[str, np.ndarray]], sizes: Mapping[str, int],
                image_size: tuple[int, int],
                boxes: Sequence[Sequence[float]] | None = None
                ) -> tuple[list[Window], list[FaceInWindow]]:
    """:func:`face_windows`, and each face in its window with window-relative matrices and
    (given the detector's ``boxes``, (x1, y1, x2, y2) photo pixels) face region."""
    windows, owner = face_windows(matrices, sizes, image_size)
    faces = []
    for i, (face, index) in enumerate(zip(matrices, owner, strict=True)):
        w = windows[index]
        region = None
        if boxes is not None:
            x0, y0, x1, y1 = face_region(boxes[i], image_size)
            region = Window(max(x0, w.x0) - w.x0, max(y0, w.y0) - w.y0,
                            min(x1, w.x1) - w.x0, min(y1, w.y1) - w.y0)
            if region.x1 <= region.x0 or region.y1 <= region.y0:  # a box its models never read
                region = None
        faces.append(FaceInWindow(
            index, {name: translated(matrix, w.x0, w.y0) for name, matrix in face.items()},
            region))
    return windows, faces


__all__ = ["FACE_REGION_WIDEN", "FaceInWindow", "Window", "face_region", "face_windows", "merged_windows",
           "place_faces", "read_regions", "source_region", "translated"]
