"""Identification and verification metrics: kNN search, rank-k accuracy, TAR at a fixed FAR.

Embeddings are compared by Euclidean distance (the registry models' embeddings are L2-normalised
first, so this ranks like cosine similarity; dlib's descriptors are used as they are, as dlib
intends). Similarity scores are negative distances: higher is more alike.

kNN: exact, by batched matrix products, for galleries up to :data:`FAISS_MIN_GALLERY`
embeddings; above that faiss (``faiss-cpu``, an optional import; ``IndexFlatL2``, still exact)
when it is installed. Both return the same neighbours (up to float rounding of exact ties).

Every rate comes with a Wilson score interval (:func:`wilson_interval`, 95% by default): on the
small samples of a typical run (a dozen users) a rate of 0% is compatible with a true rate of
20% or more, and the interval says so.

Ties: a probe's rank is 1 + the number of *wrong* gallery photos strictly closer than its nearest
correct one, so ties are resolved in favour of the recognition system and protection is never
overstated.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

#: Galleries with at least this many embeddings are searched with faiss when it is installed.
FAISS_MIN_GALLERY = 100_000

Backend = Literal["auto", "exact", "faiss"]


def faiss_available() -> bool:
    """True when ``import faiss`` works."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(n_gallery: int, backend: Backend = "auto") -> str:
    """``"exact"`` or ``"faiss"`` for a gallery of ``n_gallery`` embeddings."""
    if backend == "auto":
        return "faiss" if n_gallery >= FAISS_MIN_GALLERY and faiss_available() else "exact"
    if backend == "faiss" and not faiss_available():
        raise ValueError("the faiss kNN backend needs faiss: pip install faiss-cpu")
    if backend not in ("exact", "faiss"):
        raise ValueError(f"unknown kNN backend {backend!r}")
    return backend


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) between the rows of ``a`` (N, D) and ``b`` (M, D)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _exact_knn(queries: np.ndarray, gallery: np.ndarray, k: int,
               chunk: int) -> tuple[np.ndarray, np.ndarray]:
    best_d = np.full((len(queries), 0), np.inf)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(gallery), chunk):
        d = pairwise_distances(queries, gallery[start:start + chunk])
        idx = np.broadcast_to(np.arange(start, start + d.shape[1]), d.shape)
        cand_d = np.concatenate([best_d, d], axis=1)
        cand_i = np.concatenate([best_i, idx], axis=1)
        if cand_d.shape[1] > k:
            keep = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
            cand_d = np.take_along_axis(cand_d, keep, 1)
            cand_i = np.take_along_axis(cand_i, keep, 1)
        best_d, best_i = cand_d, cand_i
    order = np.lexsort((best_i, best_d), axis=1)  # by distance, then gallery index
    return np.take_along_axis(best_d, order, 1), np.take_along_axis(best_i, order, 1)


def _faiss_knn(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, np.float32))
    sq, idx = index.search(np.ascontiguousarray(queries, np.float32), k)
    return np.sqrt(np.maximum(sq.astype(np.float64), 0.0)), idx.astype(np.int64)


def nearest_neighbours(queries: np.ndarray, gallery: np.ndarray, k: int,
                       backend: Backend = "auto",
                       chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest gallery rows of each query, nearest first.

    ``queries`` (P, D), ``gallery`` (G, D). Returns distances (P, k') float64 and gallery
    indices (P, k') int64, with ``k' = min(k, G)``.
    """
    queries = np.asarray(queries)
    gallery = np.asarray(gallery)
    if queries.ndim != 2 or gallery.ndim != 2 or (len(gallery) and len(queries)
                                                   and queries.shape[1] != gallery.shape[1]):
        raise ValueError(f"queries {queries.shape} and gallery {gallery.shape} must be (N, D)")
    k = min(k, len(gallery))
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), 0)), np.zeros((len(queries), 0), np.int64)
    if choose_backend(len(gallery), backend) == "faiss":
        return _faiss_knn(queries, gallery, k)
    return _exact_knn(queries, gallery, k, chunk)


def ranks_from_neighbours(neighbour_labels: np.ndarray, neighbour_dists: np.ndarray,
                          probe_labels: np.ndarray) -> np.ndarray:
    """Rank (1-based, float) of each probe's identity among its retrieved neighbours.

    ``neighbour_labels`` / ``neighbour_dists`` (P, K) sorted nearest first; ``probe_labels``
    (P,). The rank is 1 + the number of wrong neighbours strictly closer than the nearest correct
    one (ties favour the recogniser); ``inf`` when no correct one was retrieved.
    """
    neighbour_labels = np.asarray(neighbour_labels).reshape(len(probe_labels), -1)
    neighbour_dists = np.asarray(neighbour_dists, np.float64).reshape(len(probe_labels), -1)
    ranks = np.full(len(probe_labels), np.inf)
    for p, label in enumerate(probe_labels):
        correct = np.flatnonzero(neighbour_labels[p] == label)
        if correct.size == 0:
            continue
        d_star = neighbour_dists[p, correct[0]]
        wrong = neighbour_labels[p] != label
        ranks[p] = 1 + int(np.count_nonzero(wrong & (neighbour_dists[p] < d_star)))
    return ranks


def identification_ranks(probes: np.ndarray, probe_labels: np.ndarray, probe_found: np.ndarray,
                         gallery: np.ndarray, gallery_labels: np.ndarray, k: int,
                         backend: Backend = "auto") -> np.ndarray:
    """Rank of every probe's identity in the gallery (``inf``: a miss), searching ``k`` deep.

    ``probes`` (P, D) with ``probe_found`` (P,) bool: a probe without a face (False) is a miss.
    ``gallery`` (G, D) holds only photos with a face; ``gallery_labels`` (G,) int, -1 for
    distractors. Ranks above ``k`` are reported as ``inf``.
    """
    probe_found = np.asarray(probe_found, bool)
    ranks = np.full(len(probe_labels), np.inf)
    if not probe_found.any() or len(gallery) == 0:
        return ranks
    dists, idx = nearest_neighbours(probes[probe_found], gallery, k, backend)
    labels = np.asarray(gallery_labels)[idx]
    ranks[probe_found] = ranks_from_neighbours(labels, dists,
                                               np.asarray(probe_labels)[probe_found])
    return ranks


def rank_k_accuracy(ranks: np.ndarray, k: int) -> float:
    """Fraction of trials whose rank is at most ``k`` (NaN when there is no trial)."""
    ranks = np.asarray(ranks, np.float64)
    return float(np.mean(ranks <= k)) if ranks.size else math.nan


def far_threshold(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest score threshold whose false-accept rate on ``impostor_scores`` is <= ``far``.

    A pair is accepted when its score is >= the threshold. With n impostor scores, at most
    floor(far x n) may be accepted; ties are never split, so the achieved rate may be lower.
    Returns ``inf`` when n < 1/far would allow none (then nothing scored like the most similar
    impostor is accepted), ``-inf`` when far >= 1, and NaN with no impostor score.
    """
    scores = np.sort(np.asarray(impostor_scores, np.float64))[::-1]
    n = scores.size
    if n == 0:
        return math.nan
    allowed = int(math.floor(far * n + 1e-9))
    if allowed >= n:
        return -math.inf
    return float(np.nextafter(scores[allowed], np.inf))


def accept_rate(scores: np.ndarray, threshold: float) -> float:
    """Fraction of ``scores`` >= ``threshold`` (NaN for no score or a NaN threshold). Use
    ``-inf`` for pairs that could not be scored (no face): they are never accepted."""
    scores = np.asarray(scores, np.float64)
    if scores.size == 0 or math.isnan(threshold):
        return math.nan
    return float(np.mean(np.isfinite(scores) & (scores >= threshold)))


def wilson_interval(successes: int, trials: int,
                    confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a binomial proportion ``successes / trials``
    (scipy's ``binomtest(...).proportion_ci(method="wilson")``); (NaN, NaN) without a trial."""
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} not in [0, {trials}]")
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence,
                                                               method="wilson")
    return float(ci.low), float(ci.high)
