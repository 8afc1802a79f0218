"""On-disk caches of the evaluation, so a run resumes and a re-run recomputes nothing.

- :class:`FileHasher`: sha256 of photo files, remembered by (path, size, mtime) in
  ``OUT/cache/sha256.json``.
- :class:`EmbeddingCache`: one ``.npz`` per judge x counter-measure,
  ``OUT/cache/embeddings/<judge cache tag>/<counter-measure key>.npz``, keyed by the sha256 of the
  photo file the judge was given (before the counter-measure); a fixed-detector judge
  (``<judge>@fixed``, its own folder ``<judge cache tag>@fixed``) keys a protected photo by the
  sha256 of its digest and its clean source's digest (see :mod:`lowkey.evaluation.embed`). Each
  entry is an embedding or "no face found". New entries are written to disk every
  ``flush_every`` additions and on :meth:`EmbeddingCache.flush` (atomically, with
  :func:`lowkey.files.write_atomic`), so an interrupted run loses at most the last few photos.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import numpy as np

from lowkey.files import write_atomic
from lowkey.models.store import sha256_file

logger = logging.getLogger(__name__)

_MISSING = object()


class FileHasher:
    """sha256 of files, remembered by absolute path, size and modification time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._known: dict[str, list] = {}
        if self.path.exists():
            try:
                self._known = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable hash cache %s: %s", self.path, exc)
        self._dirty = False

    def __call__(self, file: Path) -> str:
        """Hex sha256 of ``file``'s bytes."""
        stat = Path(file).stat()
        key = str(Path(file).resolve())
        known = self._known.get(key)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return known[2]
        digest = sha256_file(Path(file))
        self._known[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self._dirty = True
        return digest

    def flush(self) -> None:
        if self._dirty:
            write_atomic(self.path, json.dumps(self._known).encode())
            self._dirty = False


class EmbeddingCache:
    """Embeddings of one judge under one counter-measure, by file sha256.

    ``get(key)`` returns the (D,) float32 embedding, None for "no face found", or raises
    ``KeyError`` when the photo was never embedded. While a run adds entries they go to small
    part files beside ``path`` (``<stem>.part<N>.npz``, only the new entries: writing stays linear
    in the gallery size); :meth:`compact` merges everything into ``path`` and removes the parts.
    Loading reads ``path`` and any parts left by an interrupted run.
    """

    def __init__(self, path: Path, dim: int, flush_every: int = 32,
                 flush_seconds: float = 60.0) -> None:
        self.path = Path(path)
        self.dim = dim
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._entries: dict[str, np.ndarray | None] = {}
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        for file in [self.path, *self._parts()]:
            if file.exists():
                self._load(file)

    def _parts(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.stem}.part*.npz"))

    def _load(self, file: Path) -> None:
        try:
            with np.load(file, allow_pickle=False) as data:
                keys, found, emb = data["keys"], data["found"], data["embeddings"]
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("ignoring unreadable embedding cache %s: %s", file, exc)
            return
        if emb.ndim != 2 or (len(emb) and emb.shape[1] != self.dim):
            logger.warning("ignoring %s: embeddings of shape %s, expected (N, %d)",
                           file, emb.shape, self.dim)
            return
        for key, ok, row in zip(keys, found, emb, strict=True):
            self._entries[str(key)] = row.astype(np.float32) if ok else None

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> np.ndarray | None:
        value = self._entries.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def put(self, key: str, embedding: np.ndarray | None) -> None:
        """Remember ``embedding`` (D,) or None (no face) for ``key``; flushes now and then."""
        if embedding is not None:
            embedding = np.asarray(embedding, np.float32).reshape(-1)
            if embedding.shape != (self.dim,):
                raise ValueError(f"embedding of shape {embedding.shape}, expected ({self.dim},)")
        self._entries[key] = embedding
        self._pending.append(key)
        if (len(self._pending) >= self.flush_every
                or time.monotonic() - self._last_flush > self.flush_seconds):
            self.flush()

    def _write(self, dest: Path, keys: list[str]) -> None:
        found = np.array([self._entries[k] is not None for k in keys], bool)
        emb = np.zeros((len(keys), self.dim), np.float32)
        for i, key in enumerate(keys):
            if found[i]:
                emb[i] = self._entries[key]
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys, dtype="U64"), found=found, embeddings=emb)
        write_atomic(dest, buffer.getvalue())

    def flush(self) -> None:
        """Write the entries added since the last flush to a new part file (atomically)."""
        if not self._pending:
            return
        parts = self._parts()
        number = int(parts[-1].stem.rsplit(".part", 1)[1]) + 1 if parts else 0
        self._write(self.path.with_name(f"{self.path.stem}.part{number:06d}.npz"),
                    list(dict.fromkeys(self._pending)))
        self._pending = []
        self._last_flush = time.monotonic()

    def compact(self) -> None:
        """Merge every entry into ``path`` (one file) and remove the part files."""
        self.flush()
        parts = self._parts()
        if not parts:
            return
        self._write(self.path, list(self._entries))
        for part in parts:
            part.unlink(missing_ok=True)
        logger.debug("embedding cache %s: %d entries", self.path, len(self._entries))
