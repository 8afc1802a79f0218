"""Every embedding the evaluation needs, computed once per (photo file, counter-measure, judge).

:class:`EmbeddingTable` decodes each photo once, applies the counter-measures it is needed under,
asks the judges that have not seen it yet, and keeps the result in the on-disk
:class:`~lowkey.evaluation.cache.EmbeddingCache` (keyed by the file's sha256).

Fixed-detector judges (``"<judge>@fixed"``, see :mod:`~lowkey.evaluation.judges`) embed a file at
the face its base judge finds in the file's clean *source* (``sources``: protected file -> the
photo it was made from; any other file is its own source), with no counter-measure, scaled to
the size of the file under the counter-measure. Their cache is keyed by the sha256 of the file
when it is its own source, else by the sha256 of both digests (the source is part of the key).
A file that is its own source, without counter-measure, is exactly what the base judge sees,
so the base judge's entry is used (probes, and the clean gallery's calibration, are shared).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lowkey.errors import LowKeyError
from lowkey.evaluation.cache import EmbeddingCache, FileHasher
from lowkey.evaluation.countermeasures import COUNTERMEASURES
from lowkey.evaluation.judges import JudgeInfo, JudgePanel, Location

logger = logging.getLogger(__name__)


class EmbeddingTable:
    """Embeddings by judge, file and counter-measure, cached under ``cache_root``.

    ``infos``: the judges (their ``cache_tag`` names the cache folder; a fixed-detector judge
    needs its base judge among them); ``make_panel``: returns the :class:`JudgePanel` of the base
    judges; called (once) only when something must be computed, so a fully cached run loads no
    model. ``sources``: protected file -> its clean source (for the fixed-detector judges).
    """

    def __init__(self, infos: list[JudgeInfo], cache_root: Path,
                 make_panel: Callable[[], JudgePanel],
                 sources: dict[Path, Path] | None = None) -> None:
        self.infos = {info.name: info for info in infos}
        orphans = [i.name for i in infos if i.fixed and i.base not in self.infos]
        if orphans:
            raise ValueError(f"fixed-detector judges without their base judge: {orphans}")
        self.sources = dict(sources or {})
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

    def _fixed_key(self, file: Path, countermeasure: str) -> str | None:
        """Cache key of a fixed-detector judge's embedding of ``file``; None when it is the base
        judge's embedding of ``file`` without counter-measure (its own source, no change)."""
        digest = self.hasher(file)
        source = self.hasher(self.sources.get(file, file))
        if source == digest:
            return None if countermeasure == "none" else digest
        return hashlib.sha256(f"{digest}@{source}".encode()).hexdigest()

    def ensure(self, jobs: dict[Path, set[str]], progress: bool = False) -> None:
        """Compute what is missing for ``jobs``: file -> counter-measure names it is seen under."""
        base = [name for name, info in self.infos.items() if not info.fixed]
        fixed = [name for name, info in self.infos.items() if info.fixed]
        todo: list[tuple[Path, str, dict[str, list[str]]]] = []
        # source -> (file, counter-measure, key) -> fixed judges that need it
        fixed_todo: dict[Path, dict[tuple[Path, str, str], list[str]]] = {}
        for file in tqdm(sorted(jobs), desc="hash photos", unit="photo", disable=not progress,
                         leave=False):
            source = self.sources.get(file, file)
            try:
                digest = self.hasher(file)
                self.hasher(source)
            except OSError as exc:
                logger.warning("cannot read %s or its source: %s", file, exc)
                self.unreadable.add(file)
                continue
            missing: dict[str, list[str]] = {}
            for cm in sorted(jobs[file]):
                need = [j for j in base if digest not in self._cache(j, cm)]
                self.reused += len(base) - len(need)
                if need:
                    missing[cm] = need
                for judge in fixed:
                    key = self._fixed_key(file, cm)
                    if key is None:  # the base judge's entry (computed above when missing)
                        continue
                    if key in self._cache(judge, cm):
                        self.reused += 1
                    else:
                        fixed_todo.setdefault(source, {}).setdefault((file, cm, key), []).append(
                            judge)
            if missing:
                todo.append((file, digest, missing))
        self.hasher.flush()
        if not todo and not fixed_todo:
            return
        start = time.perf_counter()
        try:
            self._embed(todo, progress)
            self._embed_fixed(fixed_todo, progress)
        finally:
            self.seconds += time.perf_counter() - start
            self.flush()

    def _embed(self, todo: list[tuple[Path, str, dict[str, list[str]]]], progress: bool) -> None:
        from lowkey.image_decode import load_photo

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

    def _embed_fixed(self, todo: dict[Path, dict[tuple[Path, str, str], list[str]]],
                     progress: bool) -> None:
        """Locate the face once per clean source, then embed each file made from it there."""
        from lowkey.image_decode import load_photo

        for source, work in tqdm(todo.items(), desc="embed photos (fixed detector)",
                                 unit="source", disable=not progress):
            bases = sorted({self.infos[j].base for judges in work.values() for j in judges})
            try:
                clean = load_photo(source).pixels
                locations: dict[str, Location | None] = self.panel.locate(clean, bases)
            except LowKeyError as exc:
                logger.warning("cannot decode %s (%s): no face for the fixed-detector judges",
                               source, exc)
                self.unreadable.add(source)
                clean, locations = None, dict.fromkeys(bases)
            photos = {source: clean}
            for (file, cm, key), judges in work.items():
                if file not in photos:
                    try:
                        photos[file] = load_photo(file).pixels
                    except LowKeyError as exc:
                        logger.warning("cannot decode %s (%s): no face for any judge", file, exc)
                        self.unreadable.add(file)
                        photos[file] = None
                if photos[file] is None:
                    continue
                pixels = COUNTERMEASURES[cm].apply(photos[file])
                scale = (1.0, 1.0) if clean is None else (pixels.shape[-1] / clean.shape[-1],
                                                          pixels.shape[-2] / clean.shape[-2])
                wanted = {self.infos[j].base: locations[self.infos[j].base] for j in judges}
                embedded = self.panel.embed_at(pixels, wanted, scale)
                for judge in judges:
                    self._cache(judge, cm).put(key, embedded[self.infos[judge].base])
                    self.computed += 1

    def flush(self) -> None:
        """Write everything computed so far to disk, each cache as one file."""
        for cache in self._caches.values():
            cache.compact()
        self.hasher.flush()

    def get(self, judge: str, file: Path, countermeasure: str) -> np.ndarray | None:
        """The judge's embedding of ``file`` under ``countermeasure``; None: no face (or the
        file could not be read). Call :meth:`ensure` first."""
        info = self.infos[judge]
        if file in self.unreadable or (info.fixed and self.sources.get(file, file)
                                       in self.unreadable):
            return None
        if info.fixed:
            key = self._fixed_key(file, countermeasure)
            if key is None:
                return self._cache(info.base, "none").get(self.hasher(file))
            return self._cache(judge, countermeasure).get(key)
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
