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
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: The name under which dlib appears as a judge.
DLIB = "dlib"


@dataclass(frozen=True)
class JudgeInfo:
    """What a judge is: ``kind`` "registry" or "dlib"; ``cache_tag`` names its weights, so a
    cached embedding is never reused across different weights."""

    name: str
    kind: str
    metric: str
    embedding_dim: int
    cache_tag: str

    def to_json(self) -> dict:
        return asdict(self)


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
    """What judge ``name`` is (a registry model name, or ``"dlib"``), without loading it."""
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

    ``names``: registry model names and/or ``"dlib"``; ``device``: for the registry models and
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
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.infos = [judge_info(name) for name in names]
        self.models = {name: load_recognizer(name, self.device, progress=progress)
                       for name in names if name != DLIB}
        self._dlib = DlibJudge() if DLIB in names else None
        self._detector = FaceDetector(device=self.device) if self.models else None
        logger.info("judges: %s on %s", ", ".join(names), self.device)

    @property
    def names(self) -> list[str]:
        return [info.name for info in self.infos]

    def embed(self, pixels: torch.Tensor,
              which: list[str] | None = None) -> dict[str, np.ndarray | None]:
        """Embedding (D,) float32 of the largest face in ``pixels`` (3, H, W) RGB [0, 1] for
        each judge in ``which`` (default all); None where that judge finds no face."""
        from lowkey.embedding import embed_faces

        which = self.names if which is None else which
        out: dict[str, np.ndarray | None] = {}
        registry = [n for n in which if n in self.models]
        if registry:
            faces = self._detector.detect(pixels)
            largest = faces[:1]  # sorted largest first
            on_device = pixels.to(self.device)
            with torch.no_grad():
                for name in registry:
                    if not largest:
                        out[name] = None
                        continue
                    emb = embed_faces(on_device, largest, self.models[name])[0]
                    emb = torch.nn.functional.normalize(emb.float(), dim=0)
                    out[name] = emb.cpu().numpy().astype(np.float32)
        if DLIB in which:
            found = self._dlib.faces(pixels) if self._dlib is not None else []
            if found:
                face = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
                out[DLIB] = face.descriptor.astype(np.float32)
            else:
                out[DLIB] = None
        return out
