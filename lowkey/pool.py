"""A pool of warm models: each recogniser, the detector, each penalty and dlib loaded once per
device and shared by every protection that runs there (the CLI, the evaluation, the daemon).

Loading is where weights could be downloaded. ``download=False`` (what the daemon uses) never
touches the network: weights already in the cache are verified and, if needed, converted locally;
anything else is reported as :class:`ModelsMissing`, which names ``lowkey models fetch``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

import torch

from lowkey.device import default_device
from lowkey.errors import WeightsError
from lowkey.faces import FaceDetector
from lowkey.models.recognizer import FaceRecognizer
from lowkey.perceptual import PerceptualPenalty

logger = logging.getLogger(__name__)


class ModelsMissing(WeightsError):
    """Weights needed by a preset are not on disk, and downloading is not allowed here."""

    def __init__(self, names: Sequence[str], detail: str = "") -> None:
        self.names = tuple(names)
        #: the message without ``detail`` (which may name files): for services' answers
        self.summary = (f"models missing: {', '.join(self.names)}; run `lowkey models fetch "
                        f"{' '.join(self.names)}`")
        super().__init__(self.summary + (f" ({detail})" if detail else ""))


def missing_models(names: Iterable[str], penalty: str | None = None) -> list[str]:
    """The names (registry models, and ``lpips-alex`` when it is ``penalty``) whose weights are
    not in the cache, neither converted nor as a source file. Reads the disk only."""
    from lowkey.models import store
    from lowkey.models.registry import LPIPS_ALEX, get_record

    out = []
    for name in names:
        try:
            check = store.verify(get_record(name))
        except KeyError:
            out.append(name)
            continue
        if check.converted != "ok" and check.source not in ("ok", "unpinned"):
            out.append(name)
    if penalty == LPIPS_ALEX.name and not store.source_path(LPIPS_ALEX).exists():
        out.append(LPIPS_ALEX.name)
    return out


class ModelPool:
    """Models on one device, each loaded on first use and kept. Thread-safe."""

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = default_device(device)
        self._lock = threading.RLock()
        self._recognizers: dict[str, FaceRecognizer] = {}
        self._penalties: dict[tuple[str, object], PerceptualPenalty] = {}
        self._detector: FaceDetector | None = None
        self._judge: object | None = None
        self._judge_tried = False

    def recognizer(self, name: str, download: bool = True,
                   progress: bool = False) -> FaceRecognizer:
        """The registry model ``name`` on this device (loaded now if it is not yet).

        ``download=False``: only what is in the cache; raises :class:`ModelsMissing` otherwise.
        """
        with self._lock:
            model = self._recognizers.get(name)
            if model is None:
                model = self._load(name, download, progress)
                self._recognizers[name] = model
            return model

    def recognizers(self, names: Sequence[str], download: bool = True,
                    progress: bool = False) -> list[FaceRecognizer]:
        """:meth:`recognizer` of each name, in order; every missing one named at once."""
        if not download:
            missing = [n for n in missing_models(names) if n not in self._recognizers]
            if missing:
                raise ModelsMissing(missing)
        return [self.recognizer(n, download, progress) for n in names]

    def _load(self, name: str, download: bool, progress: bool) -> FaceRecognizer:
        from lowkey.models import store
        from lowkey.models.registry import get_record

        record = get_record(name)
        if not download:
            try:  # verifies (or refuses) the cached source without any network
                if store.verify(record).converted != "ok":
                    store.fetch_source(record, progress=False, allow_network=False)
            except WeightsError as exc:
                raise ModelsMissing([name], str(exc)) from exc
        model = store.load_recognizer(record, self.device, progress=progress)
        logger.info("loaded %s on %s", name, self.device)
        return model

    def detector(self) -> FaceDetector:
        """The MTCNN face detector on this device."""
        with self._lock:
            if self._detector is None:
                self._detector = FaceDetector(device=self.device)
            return self._detector

    def penalty(self, name: str,
                loader: Callable[[str, torch.device], PerceptualPenalty] | None = None
                ) -> PerceptualPenalty:
        """The perceptual penalty ``name`` on this device, made by ``loader`` (default
        :func:`lowkey.perceptual.load_penalty`, which never downloads) once per loader."""
        if loader is None:
            from lowkey.perceptual import load_penalty as loader
        with self._lock:
            penalty = self._penalties.get((name, loader))
            if penalty is None:
                try:
                    penalty = loader(name, self.device)
                except WeightsError as exc:
                    raise ModelsMissing([name], str(exc)) from exc
                self._penalties[(name, loader)] = penalty
            return penalty

    def judge(self) -> object | None:
        """dlib (the never-attacked judge) when it is installed, else None."""
        from lowkey.dlib_judge import DlibJudge, dlib_available

        with self._lock:
            if not self._judge_tried:
                self._judge_tried = True
                self._judge = DlibJudge() if dlib_available() else None
            return self._judge

    def loaded(self) -> list[str]:
        """Names of the recognisers loaded so far."""
        with self._lock:
            return list(self._recognizers)


_shared: dict[str, ModelPool] = {}
_shared_lock = threading.Lock()


def shared_pool(device: str | torch.device | None = None) -> ModelPool:
    """The process-wide pool of ``device`` (default: CUDA when present, else CPU)."""
    key = str(default_device(device))
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None:
            pool = _shared[key] = ModelPool(key)
        return pool


__all__ = ["ModelPool", "ModelsMissing", "default_device", "missing_models", "shared_pool"]
