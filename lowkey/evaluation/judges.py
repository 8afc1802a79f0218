"""The recognition systems that judge protection: registry models and dlib.

Each judge finds faces itself in the photo it is given (clean, protected or counter-measured) and
embeds the largest one:

- registry models (``sface``, ``facenet128``, ...): our MTCNN :class:`~lowkey.faces.FaceDetector`
  (run once per photo and shared by all registry judges), then alignment to that model's own
  input contract (:func:`~lowkey.embedding.embed_faces`); embeddings are L2-normalised, so
  Euclidean distance ranks like cosine similarity.
- ``dlib``: dlib's own HOG detector, 5-point alignment and ResNet descriptor (Euclidean, as dlib
  intends), through :class:`~lowkey.dlib_judge.DlibJudge`.

A photo in which a judge finds no face gets no embedding (None) from that judge.

Fixed-detector variants (``"<judge>@fixed"``, e.g. ``"dlib@fixed"``) embed a photo at the face
found in its *clean source* (the photo before protection; a clean photo is its own source)
instead of finding the face afresh: registry judges at the clean photo's MTCNN face (box and
landmarks), dlib at the clean photo's rectangle and 5-point shape. When the photo judged has
another size than its source (a counter-measure that resizes), the face is scaled by the size
ratio. Comparing a judge with its fixed variant tells whether protection defeated recognition
itself or only the judge's face detection. :class:`JudgePanel` loads base judges only; the
fixed variants use :meth:`JudgePanel.locate` and :meth:`JudgePanel.embed_at`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from lowkey.device import default_device
from lowkey.faces import Face

logger = logging.getLogger(__name__)

#: The name under which dlib appears as a judge.
DLIB = "dlib"

#: Suffix of a judge's fixed-detector variant: ``"dlib@fixed"``.
FIXED = "@fixed"


def fixed_variant(name: str) -> str:
    """``"dlib"`` -> ``"dlib@fixed"``."""
    return name if name.endswith(FIXED) else name + FIXED


def base_judge(name: str) -> str:
    """``"dlib@fixed"`` -> ``"dlib"`` (a base judge's name is returned as it is)."""
    return name.removesuffix(FIXED)


@dataclass(frozen=True)
class JudgeInfo:
    """What a judge is: ``kind`` "registry" or "dlib"; ``cache_tag`` names its weights (and,
    for a fixed-detector variant, says so), so a cached embedding is never reused across
    different weights or between a judge and its fixed variant. ``fixed``: the face is taken
    from the clean source photo, not found afresh."""

    name: str
    kind: str
    metric: str
    embedding_dim: int
    cache_tag: str
    fixed: bool = False

    @property
    def base(self) -> str:
        """The judge whose models this one uses (itself unless it is a fixed variant)."""
        return base_judge(self.name)

    def to_json(self) -> dict:
        return asdict(self) | {"base": self.base}


@dataclass(frozen=True)
class DlibLocation:
    """Where dlib found a face: its rectangle (left, top, right, bottom) and 5-point shape."""

    box: tuple[int, int, int, int]
    points: tuple[tuple[int, int], ...]

    def scaled(self, sx: float, sy: float) -> DlibLocation:
        """The same face in a photo resized by ``sx`` (width) and ``sy`` (height)."""
        left, top, right, bottom = self.box
        return DlibLocation((round(left * sx), round(top * sy), round(right * sx),
                             round(bottom * sy)),
                            tuple((round(x * sx), round(y * sy)) for x, y in self.points))


#: A judge's face in a photo: an MTCNN :class:`~lowkey.faces.Face` (registry judges) or a
#: :class:`DlibLocation`.
Location = Face | DlibLocation


def scale_face(face: Face, sx: float, sy: float) -> Face:
    """``face`` in a photo resized by ``sx`` (width) and ``sy`` (height)."""
    x1, y1, x2, y2 = face.box
    return Face((x1 * sx, y1 * sy, x2 * sx, y2 * sy),
                tuple((x * sx, y * sy) for x, y in face.landmarks), face.score)


def scale_location(location: Location, sx: float, sy: float) -> Location:
    """A face location in a photo resized by ``sx`` (width) and ``sy`` (height)."""
    if isinstance(location, DlibLocation):
        return location.scaled(sx, sy)
    return scale_face(location, sx, sy)


def available_judges() -> list[str]:
    """Registry models whose weights are on disk (verified), then ``dlib`` when installed.

    Nothing is downloaded: a model whose files are missing is left out (and logged).
    """
    from lowkey.dlib_judge import dlib_available
    from lowkey.models import store
    from lowkey.models.registry import all_records

    names = []
    for record in all_records():
        if store.verify(record).ok:
            names.append(record.name)
        else:
            logger.info("judge %s left out: its weights are not on disk", record.name)
    if dlib_available():
        names.append(DLIB)
    else:
        logger.warning("dlib is not installed: no dlib judge (pip install 'lowkey[judge]')")
    return names


def judge_info(name: str) -> JudgeInfo:
    """What judge ``name`` is (a registry model name, or ``"dlib"``, either possibly with the
    ``"@fixed"`` suffix of its fixed-detector variant), without loading it."""
    if name.endswith(FIXED):
        base = judge_info(base_judge(name))
        return replace(base, name=name, cache_tag=base.cache_tag + FIXED, fixed=True)
    if name == DLIB:
        from lowkey.dlib_judge import dlib_available

        if not dlib_available():
            raise ValueError("the dlib judge needs dlib: pip install 'lowkey[judge]'")
        import dlib

        return JudgeInfo(DLIB, "dlib", "euclidean", 128, f"dlib-resnet-{dlib.__version__}")
    from lowkey.models.registry import expected_sha256, get_record

    record = get_record(name)
    sha = (expected_sha256(record) or "unpinned")[:12]
    return JudgeInfo(name, "registry", "cosine", record.embedding_dim, f"{name}-{sha}")


class JudgePanel:
    """Loads the judges once and embeds photos with all of them.

    ``names``: registry model names and/or ``"dlib"`` (base judges; fixed-detector variants are
    served by :meth:`locate` and :meth:`embed_at`); ``device``: for the registry models and
    MTCNN (default CUDA when present). dlib runs on the CPU.
    """

    def __init__(self, names: list[str], device: str | None = None,
                 progress: bool = False) -> None:
        from lowkey.dlib_judge import DlibJudge
        from lowkey.faces import FaceDetector
        from lowkey.models.store import load_recognizer

        if not names:
            raise ValueError("no judge to evaluate with")
        if len(set(names)) != len(names):
            raise ValueError(f"judges named twice: {names}")
        if any(name.endswith(FIXED) for name in names):
            raise ValueError(f"a panel loads base judges only, not {names}")
        self.device = default_device(device)
        self.infos = [judge_info(name) for name in names]
        self.models = {name: load_recognizer(name, self.device, progress=progress)
                       for name in names if name != DLIB}
        self._dlib = DlibJudge() if DLIB in names else None
        self._detector = FaceDetector(device=self.device) if self.models else None
        logger.info("judges: %s on %s", ", ".join(names), self.device)

    @property
    def names(self) -> list[str]:
        return [info.name for info in self.infos]

    def _registry_embedding(self, pixels: torch.Tensor, face: Face, name: str) -> np.ndarray:
        """L2-normalised embedding (D,) float32 of ``face`` in ``pixels`` (on the device)."""
        from lowkey.embedding import embed_faces

        with torch.no_grad():
            emb = embed_faces(pixels, [face], self.models[name])[0]
        return torch.nn.functional.normalize(emb.float(), dim=0).cpu().numpy().astype(np.float32)

    def _dlib_largest(self, pixels: torch.Tensor) -> DlibLocation | None:
        """dlib's largest face in ``pixels``: its rectangle and the 5-point shape found there."""
        found = self._dlib.faces(pixels) if self._dlib is not None else []
        if not found:
            return None
        face = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return DlibLocation(tuple(int(v) for v in face.box), face.points)

    def embed(self, pixels: torch.Tensor,
              which: list[str] | None = None) -> dict[str, np.ndarray | None]:
        """Embedding (D,) float32 of the largest face in ``pixels`` (3, H, W) RGB [0, 1] for
        each judge in ``which`` (default all); None where that judge finds no face."""
        which = self.names if which is None else which
        out: dict[str, np.ndarray | None] = {}
        registry = [n for n in which if n in self.models]
        if registry:
            largest = self._detector.detect(pixels)[:1]  # sorted largest first
            on_device = pixels.to(self.device)
            for name in registry:
                out[name] = (self._registry_embedding(on_device, largest[0], name) if largest
                             else None)
        if DLIB in which:
            found = self._dlib.faces(pixels) if self._dlib is not None else []
            if found:
                face = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
                out[DLIB] = face.descriptor.astype(np.float32)
            else:
                out[DLIB] = None
        return out

    def locate(self, pixels: torch.Tensor,
               which: list[str] | None = None) -> dict[str, Location | None]:
        """Where each judge in ``which`` (base judges; default all) finds the largest face of
        ``pixels`` (3, H, W) RGB [0, 1]; None where it finds none."""
        which = self.names if which is None else which
        out: dict[str, Location | None] = {}
        registry = [n for n in which if n in self.models]
        if registry:
            largest = self._detector.detect(pixels)[:1]
            out |= {name: largest[0] if largest else None for name in registry}
        if DLIB in which:
            out[DLIB] = self._dlib_largest(pixels)
        return out

    def embed_at(self, pixels: torch.Tensor, locations: dict[str, Location | None],
                 scale: tuple[float, float] = (1.0, 1.0)) -> dict[str, np.ndarray | None]:
        """Embedding of ``pixels`` (3, H, W) by each judge of ``locations`` at the face given
        there (found in another photo, e.g. the clean source), without detecting anything.

        ``scale``: (width, height) ratio of ``pixels`` to the photo the faces were found in;
        a None location gives a None embedding."""
        out: dict[str, np.ndarray | None] = {}
        on_device = None
        for name, location in locations.items():
            if location is None:
                out[name] = None
                continue
            location = scale_location(location, *scale)
            if name == DLIB:
                out[name] = self._dlib_descriptor_at(pixels, location)
                continue
            if name not in self.models:
                raise ValueError(f"judge {name!r} is not on this panel")
            if on_device is None:
                on_device = pixels.to(self.device)
            out[name] = self._registry_embedding(on_device, location, name)
        return out

    def _dlib_descriptor_at(self, pixels: torch.Tensor, location: DlibLocation) -> np.ndarray:
        if self._dlib is None:
            raise ValueError("judge 'dlib' is not on this panel")
        return self._dlib.descriptor_at(pixels, location.box, location.points).astype(np.float32)
