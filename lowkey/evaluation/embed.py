"""Every embedding the evaluation needs, computed once per (photo file, counter-measure, judge).

:class:`EmbeddingTable` decodes each photo once, applies the counter-measures it is needed under,
asks the judges that have not seen it yet, and keeps the result in the on-disk
:class:`~lowkey.evaluation.cache.EmbeddingCache` (keyed by the file's sha256).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lowkey.errors import LowKeyError
from lowkey.evaluation.cache import EmbeddingCache, FileHasher
from lowkey.evaluation.countermeasures import COUNTERMEASURES
from lowkey.evaluation.judges import JudgeInfo, JudgePanel

logger = logging.getLogger(__name__)


class EmbeddingTable:
    """Embeddings by judge, file and counter-measure, cached under ``cache_root``.

    ``infos``: the judges (their ``cache_tag`` names the cache folder); ``make_panel``: returns
    the :class:`JudgePanel`; called (once) only when something must be computed, so a fully
    cached run loads no model.
    """

    def __init__(self, infos: list[JudgeInfo], cache_root: Path,
                 make_panel: Callable[[], JudgePanel]) -> None:
        self.infos = {info.name: info for info in infos}
        self.cache_root = Path(cache_root)
        self.hasher = FileHasher(self.cache_root / "sha256.json")
        self._panel: JudgePanel | None = None
        self._make_panel = make_panel
        self._caches: dict[tuple[str, str], EmbeddingCache] = {}
        self.computed = 0
        self.reused = 0
        self.unreadable: set[Path] = set()
        self.seconds = 0.0
        self.photos_embedded = 0

    def _cache(self, judge: str, countermeasure: str) -> EmbeddingCache:
        key = (judge, countermeasure)
        if key not in self._caches:
            info = self.infos[judge]
            path = (self.cache_root / "embeddings" / info.cache_tag
                    / f"{COUNTERMEASURES[countermeasure].key}.npz")
            self._caches[key] = EmbeddingCache(path, info.embedding_dim)
        return self._caches[key]

    @property
    def panel(self) -> JudgePanel:
        if self._panel is None:
            self._panel = self._make_panel()
        return self._panel

    def ensure(self, jobs: dict[Path, set[str]], progress: bool = False) -> None:
        """Compute what is missing for ``jobs``: file -> counter-measure names it is seen under."""
        from lowkey.image_io import load_photo

        judges = list(self.infos)
        todo: list[tuple[Path, str, dict[str, list[str]]]] = []
        for file in tqdm(sorted(jobs), desc="hash photos", unit="photo", disable=not progress,
                         leave=False):
            try:
                digest = self.hasher(file)
            except OSError as exc:
                logger.warning("cannot read %s: %s", file, exc)
                self.unreadable.add(file)
                continue
            missing = {}
            for cm in sorted(jobs[file]):
                need = [j for j in judges if digest not in self._cache(j, cm)]
                self.reused += len(judges) - len(need)
                if need:
                    missing[cm] = need
            if missing:
                todo.append((file, digest, missing))
        self.hasher.flush()
        if not todo:
            return
        start = time.perf_counter()
        try:
            for file, digest, missing in tqdm(todo, desc="embed photos", unit="photo",
                                              disable=not progress):
                try:
                    photo = load_photo(file)
                except LowKeyError as exc:
                    logger.warning("cannot decode %s (%s): no face for any judge", file, exc)
                    self.unreadable.add(file)
                    continue
                for cm, need in missing.items():
                    pixels = COUNTERMEASURES[cm].apply(photo.pixels)
                    for judge, emb in self.panel.embed(pixels, need).items():
                        self._cache(judge, cm).put(digest, emb)
                        self.computed += 1
                self.photos_embedded += 1
        finally:
            self.seconds += time.perf_counter() - start
            self.flush()

    def flush(self) -> None:
        """Write everything computed so far to disk, each cache as one file."""
        for cache in self._caches.values():
            cache.compact()
        self.hasher.flush()

    def get(self, judge: str, file: Path, countermeasure: str) -> np.ndarray | None:
        """The judge's embedding of ``file`` under ``countermeasure``; None: no face (or the
        file could not be read). Call :meth:`ensure` first."""
        if file in self.unreadable:
            return None
        return self._cache(judge, countermeasure).get(self.hasher(file))

    def matrix(self, judge: str, files: Iterable[Path],
               countermeasure: str) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (N, D) float32 (zeros where there is no face) and found (N,) bool."""
        dim = self.infos[judge].embedding_dim
        rows = [self.get(judge, f, countermeasure) for f in files]
        found = np.array([r is not None for r in rows], bool)
        emb = np.zeros((len(rows), dim), np.float32)
        for i, row in enumerate(rows):
            if row is not None:
                emb[i] = row
        return emb, found
