"""The evaluation protocol of the paper (section 4), end to end.

1. Split the data set (seeded): per identity a tenth of the photos are probes, the rest gallery;
   the gallery photos of the users are protected, everything else stays clean. As in the paper
   (100 of FaceScrub's 530 identities), the users are by default a fifth of the identities with
   a gallery photo (at least one), drawn at random: a few protected users among clean
   identities (and distractors when given). ``users=N`` protects N, ``users="all"`` everybody.
2. Protect the users' gallery photos with the preset's ensemble (and, with ``transfer``, with
   each of its models alone and with the ensemble less each model), reusing what is on disk.
3. Embed with every judge: clean probes; the gallery clean and protected, each under every
   counter-measure (the transfer attacks: without counter-measure only). With
   ``fixed_detector`` (the default) every judge also has a fixed-detector variant
   (``"<judge>@fixed"``): gallery photos embedded at the face its detector finds in the clean
   source photo, not found afresh in the protected one (probes are clean: there it is the
   judge itself). Judge vs judge@fixed tells whether recognition was defeated or only detection.
4. Per judge x gallery condition x counter-measure: rank-1 and rank-k identification accuracy of
   the users' probes over the whole gallery, and the true-accept rate of genuine (user probe,
   user gallery photo) pairs at thresholds calibrated, per judge, for fixed false-accept rates on
   the clean probe x clean gallery impostor pairs. Every rate has a Wilson score 95% interval.

Counter-measures are applied to the gallery photos only (all of them, in the clean baseline too);
probes are always the clean photos. A probe in which a judge finds no face is a miss; a gallery
photo in which it finds none is absent from that judge's gallery; a genuine pair with a missing
face counts as rejected. Those are not the same outcome as "found and not recognised", so every
rate also comes with its trials (identification) or genuine pairs (verification) split into
``recognised``, ``not_recognised`` (faces found, no match), ``no_face`` (the judge found no face
in any gallery photo of the user, or in the pair's gallery photo) and ``probe_no_face`` (none in
the clean probe: the same with and without protection).
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lowkey.device import default_device
from lowkey.evaluation.countermeasures import get_countermeasures
from lowkey.evaluation.dataset import Split, Users, scan_dataset, split_dataset
from lowkey.evaluation.embed import EmbeddingTable
from lowkey.evaluation.judges import (
    FIXED,
    JudgePanel,
    available_judges,
    fixed_variant,
    judge_info,
)
from lowkey.evaluation.metrics import (
    Backend,
    accept_rate,
    choose_backend,
    far_threshold,
    identification_ranks,
    pairwise_distances,
    rank_k_accuracy,
    wilson_interval,
)
from lowkey.evaluation.protection import Attack, ProtectedPhoto, protect_gallery
from lowkey.presets import DEFAULT_PRESET

logger = logging.getLogger(__name__)

#: What "protects" means (issue 20), for a judge that was never attacked, with distractors in
#: the gallery: at most these rates of the users' trials (rank-1, rank-10) and genuine pairs
#: (true-accept rate at a false-accept rate of 1%), under every counter-measure.
PROTECTION_BAR = {"rank1": 0.05, "rank10": 0.10, "tar@0.01": 0.02}

#: Impostor pairs used to calibrate thresholds are subsampled (seeded) above this many.
MAX_IMPOSTOR_PAIRS = 5_000_000

CLEAN = "clean"


@dataclass
class EvalConfig:
    """Settings of one evaluation run (the ``lowkey eval`` options).

    ``users``: None (a fifth of the identities, as in the paper), a number, or ``"all"``;
    ``judges``: base judges (default: every available one); ``fixed_detector``: add each
    judge's ``@fixed`` variant."""

    dataset: Path
    out: Path
    preset: str = DEFAULT_PRESET
    #: None: the preset's own strength
    strength: int | None = None
    seed: int = 0
    users: Users = None
    distractors: Path | None = None
    transfer: bool = False
    #: only the leave-one-out attacks of ``transfer`` (each judged by the model it leaves out)
    leave_one_out: bool = False
    judges: list[str] | None = None
    countermeasures: list[str] | None = None
    rank_k: int = 10
    fars: tuple[float, ...] = (1e-2, 1e-1)
    device: str | None = None
    knn_backend: Backend = "auto"
    fixed_detector: bool = True

    def __post_init__(self) -> None:
        from lowkey.presets import get_preset

        if self.strength is None:
            self.strength = get_preset(self.preset).strength

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("dataset", "out", "distractors"):
            data[key] = None if data[key] is None else str(data[key])
        data["fars"] = list(self.fars)
        return data


@dataclass
class _Condition:
    """A gallery as the judges see it: its files, in the order of ``Split.gallery_items``."""

    attack: str
    countermeasure: str
    files: list[Path]


def attacks_for(config: EvalConfig) -> list[Attack]:
    """The ensemble attack of ``config.preset`` and, with ``transfer``, one per model alone and,
    for ensembles of three or more, one per model left out (judged by that model, black-box);
    with ``leave_one_out``, only the latter."""
    from lowkey.presets import get_preset

    preset = get_preset(config.preset)
    attacks = [Attack("ensemble", preset.name, preset.models, config.strength, config.seed)]
    if config.transfer and len(preset.models) > 1:
        attacks += [Attack(m, preset.name, (m,), config.strength, config.seed, kind="single")
                    for m in preset.models]
    if (config.transfer or config.leave_one_out) and len(preset.models) > 2:
        attacks += [Attack(f"without-{m}", preset.name,
                           tuple(other for other in preset.models if other != m),
                           config.strength, config.seed, kind="leave-one-out")
                    for m in preset.models]
    return attacks


def _quality(photos: list[ProtectedPhoto]) -> dict:
    """Quality and cost of one attack's protected photos (from their reports)."""
    done = [p.report for p in photos if p.status == "protected"]

    def values(key: str) -> list[float]:
        return [r[key] for r in done if isinstance(r.get(key), int | float)
                and math.isfinite(r[key])]

    def mean(key: str) -> float | None:
        return float(np.mean(values(key))) if values(key) else None

    def lowest(key: str) -> float | None:
        return float(min(values(key))) if values(key) else None

    def highest(key: str) -> float | None:
        return float(max(values(key))) if values(key) else None

    ratios = [r["protected_bytes"] / r["original_bytes"] for r in done
              if r.get("protected_bytes") and r.get("original_bytes")]
    seconds = [r["seconds"] for r in done if r.get("seconds") is not None]
    penalties = sorted({r["penalty"] for r in done if r.get("penalty")})
    return {
        "photos": len(photos),
        "protected": len(done),
        "no_face": sum(p.status == "no-face" for p in photos),
        "failed": sum(p.status == "failed" for p in photos),
        # the face region (each photo's worst face): what a person looks at
        "face_ssim_mean": mean("face_ssim"),
        "face_ssim_min": lowest("face_ssim"),
        "face_psnr_mean": mean("face_psnr"),
        "face_flip_mean": mean("face_flip"),
        "face_flip_max": highest("face_flip"),
        "face_jod_mean": mean("face_jod"),
        "face_jod_min": lowest("face_jod"),
        "face_measured": len(values("face_ssim")),
        # the whole photo
        "ssim_mean": mean("ssim"),
        "psnr_mean": mean("psnr"),
        "lpips_mean": mean("lpips"),
        "lpips_measured": sum(isinstance(r.get("lpips"), int | float) for r in done),
        "linf_mean_255": None if mean("linf") is None else mean("linf") * 255,
        "penalty": ", ".join(penalties) or None,
        "penalty_mean": mean("penalty_value"),
        "size_ratio_mean": float(np.mean(ratios)) if ratios else None,
        "seconds_per_photo": float(np.mean(seconds)) if seconds else None,
        "seconds_known": len(seconds),
        "devices": sorted({r["device"] for r in done if r.get("device")}),
    }


def _labels(split: Split) -> dict[str, int]:
    return {identity: i for i, identity in enumerate(split.probes)}


def run_evaluation(config: EvalConfig, progress: bool = False) -> dict:
    """Run the whole protocol; returns the results (see :mod:`lowkey.evaluation.report` for
    the layout) and writes nothing but the caches under ``config.out``."""
    start = time.perf_counter()
    out = Path(config.out)
    dataset = scan_dataset(config.dataset, config.distractors)
    split = split_dataset(dataset, config.seed, config.users)
    attacks = attacks_for(config)
    cms = get_countermeasures(config.countermeasures)
    judges = config.judges or available_judges()
    if any(FIXED in name for name in judges):
        raise ValueError(f"judges are named without {FIXED!r}: each judge's fixed-detector "
                         "variant is added unless fixed_detector is off")
    names = [n for name in judges
             for n in ((name, fixed_variant(name)) if config.fixed_detector else (name,))]
    infos = [judge_info(name) for name in names]
    logger.info("evaluation: %d users, attacks %s, judges %s, counter-measures %s",
                len(split.users), [a.name for a in attacks], names, [c.name for c in cms])

    # 1. protection (cached per photo)
    protected: dict[str, list[ProtectedPhoto]] = {}
    protected_now = 0
    protect_start = time.perf_counter()
    for attack in attacks:
        photos, made = protect_gallery(split.user_gallery(), attack, out / "protected",
                                       config.device, progress)
        protected[attack.name] = photos
        protected_now += made
    protect_seconds = time.perf_counter() - protect_start

    # 2. the galleries each judge sees
    gallery_items = split.gallery_items()
    clean_files = [path for path, _ in gallery_items]
    conditions = [_Condition(CLEAN, cm.name, clean_files) for cm in cms]
    for attack in attacks:
        swap = {p.source: p.used for p in protected[attack.name]}
        files = [swap.get(path, path) for path in clean_files]
        for cm in cms if attack.kind == "ensemble" else cms[:1]:
            conditions.append(_Condition(attack.name, cm.name, files))
    probe_items = split.probe_items()
    probe_files = [path for path, _ in probe_items]
    sources = {p.used: p.source for photos in protected.values() for p in photos
               if p.used != p.source}

    # 3. embeddings (cached per photo)
    jobs: dict[Path, set[str]] = {path: {"none"} for path in probe_files}
    for cond in conditions:
        for path in cond.files:
            jobs.setdefault(path, set()).add(cond.countermeasure)
    table = EmbeddingTable(infos, out / "cache",
                           lambda: JudgePanel(judges, config.device, progress=progress),
                           sources=sources)
    table.ensure(jobs, progress)

    # 4. metrics
    ids = _labels(split)
    gallery_labels = np.array([-1 if identity is None else ids[identity]
                               for _, identity in gallery_items])
    probe_labels = np.array([ids[identity] for _, identity in probe_items])
    is_user_probe = np.array([identity in split.users for _, identity in probe_items])
    user_gallery = np.isin(gallery_labels, [ids[u] for u in split.users])
    k = max(1, min(config.rank_k, len(clean_files)))
    backend = choose_backend(len(clean_files), config.knn_backend)
    rng = np.random.default_rng(config.seed)
    ensemble = next(a for a in attacks if a.kind == "ensemble")
    ensemble_models = set(ensemble.models)
    attack_models = {a.name: set(a.models) for a in attacks}

    rows, thresholds = [], {}
    for info in infos:
        probes, probe_found = table.matrix(info.name, probe_files, "none")
        thresholds[info.name] = _calibrate(probes, probe_found, probe_labels,
                                           *table.matrix(info.name, clean_files, "none"),
                                           gallery_labels, config.fars, rng)
        score_thresholds = {far: t["score_threshold"] for far, t in
                            thresholds[info.name].items()}
        trials = (probes[is_user_probe], probe_found[is_user_probe], probe_labels[is_user_probe])
        for cond in conditions:
            gallery, found = table.matrix(info.name, cond.files, cond.countermeasure)
            access = None
            if cond.attack != CLEAN:
                access = "white-box" if info.base in attack_models[cond.attack] else "black-box"
            rows.append({"judge": info.name, "base_judge": info.base,
                         "fixed_detector": info.fixed, "attack": cond.attack,
                         "countermeasure": cond.countermeasure, "access": access}
                        | _scores(trials, gallery, found, gallery_labels, user_gallery, k,
                                  score_thresholds, backend))

    runtime = time.perf_counter() - start
    import torch

    return {
        "config": config.to_json(),
        "dataset": {
            "root": str(dataset.root),
            "identities": len(dataset.identities),
            "photos": dataset.n_photos,
            "distractors": len(dataset.distractors),
            "probes": len(probe_files),
            "gallery": len(clean_files),
            "users": list(split.users),
            "eligible_identities": sum(1 for g in split.gallery.values() if g),
            "user_probes": int(is_user_probe.sum()),
            "user_gallery": len(split.user_gallery()),
            "excluded_identities": [i for i, g in split.gallery.items() if not g],
        },
        "attacks": [{"name": a.name, "label": a.label, "models": list(a.models), "tag": a.tag,
                     "folder": str(out / "protected" / a.tag), "kind": a.kind,
                     "penalty": a.penalty}
                    for a in attacks],
        "penalty": ensemble.penalty,
        "judges": [info.to_json() | {"in_ensemble": info.base in ensemble_models}
                   for info in infos],
        "black_box_judges": [i.name for i in infos if i.base not in ensemble_models],
        "countermeasures": [{"name": c.name, "key": c.key, "description": c.description}
                            for c in cms],
        "thresholds": thresholds,
        "knn": {"backend": backend, "gallery_photos": len(clean_files), "k": k},
        "results": rows,
        "protection": protection_verdicts(rows),
        "quality": {a.name: _quality(protected[a.name]) for a in attacks},
        "cache": {"protected_now": protected_now,
                  "protected_reused": sum(len(p) for p in protected.values()) - protected_now,
                  "embeddings_computed": table.computed, "embeddings_reused": table.reused,
                  "unreadable": sorted(str(p) for p in table.unreadable)},
        "cost": {"protect_seconds": protect_seconds, "embed_seconds": table.seconds,
                 "photos_embedded": table.photos_embedded, "runtime_seconds": runtime,
                 "device": str(default_device(config.device)),
                 "cpu": platform.processor() or platform.machine(),
                 "torch_threads": torch.get_num_threads()},
    }


def protection_verdicts(rows: list[dict]) -> list[dict]:
    """Per black-box result row (a judge that was never attacked by that row's attack), its
    rank-1, rank-10 and TAR@FAR=1% and whether they are all within :data:`PROTECTION_BAR`
    (``protects``; None when a figure is missing, e.g. rank-10 with a gallery under 10)."""
    verdicts = []
    for row in rows:
        if row["access"] != "black-box":
            continue
        figures = {"rank1": row.get("rank1"), "rank10": row.get("rank10"),
                   "tar@0.01": row.get("tar", {}).get(_far_key(0.01))}
        known = all(v is not None and math.isfinite(v) for v in figures.values())
        verdicts.append({key: row[key] for key in ("judge", "attack", "countermeasure")}
                        | figures | {"protects": all(figures[k] <= PROTECTION_BAR[k]
                                                     for k in figures) if known else None})
    return verdicts


def _far_key(far: float) -> str:
    return f"{far:g}"


def _calibrate(probes: np.ndarray, probe_found: np.ndarray, probe_labels: np.ndarray,
               gallery: np.ndarray, gallery_found: np.ndarray, gallery_labels: np.ndarray,
               fars: tuple[float, ...], rng: np.random.Generator) -> dict:
    """Score thresholds for each FAR from clean probe x clean gallery impostor pairs (both with
    a face); at most :data:`MAX_IMPOSTOR_PAIRS`, subsampling gallery columns with ``rng``."""
    p_idx = np.flatnonzero(probe_found)
    g_idx = np.flatnonzero(gallery_found)
    if len(p_idx) and len(p_idx) * len(g_idx) > MAX_IMPOSTOR_PAIRS:
        keep = max(1, MAX_IMPOSTOR_PAIRS // len(p_idx))
        g_idx = np.sort(rng.choice(g_idx, size=keep, replace=False))
    scores = -pairwise_distances(probes[p_idx], gallery[g_idx]) if len(p_idx) and len(g_idx) \
        else np.zeros((len(p_idx), len(g_idx)))
    impostor = probe_labels[p_idx][:, None] != gallery_labels[g_idx][None, :]
    imp = scores[impostor]
    out = {}
    for far in fars:
        t = far_threshold(imp, far)
        out[_far_key(far)] = {
            "score_threshold": t,
            "distance_threshold": -t if math.isfinite(t) else None,
            "achieved_far": accept_rate(imp, t),
            "impostor_pairs": int(imp.size),
            "resolvable": bool(imp.size * far >= 1),
        }
    return out


def _outcomes(hits: np.ndarray | None, probe_found: np.ndarray,
              mate_found: np.ndarray) -> dict[str, int | None]:
    """Trials (or genuine pairs) split four ways: ``recognised`` (``hits``), ``not_recognised``
    (faces found on both sides, no match), ``no_face`` (a face in the probe, none in the user's
    gallery photos / the pair's gallery photo) and ``probe_no_face``. ``hits`` None (no
    threshold): the first two are unknown (None)."""
    probe_found = np.asarray(probe_found, bool)
    both = probe_found & np.asarray(mate_found, bool)
    out: dict[str, int | None] = {"recognised": None, "not_recognised": None}
    if hits is not None:
        hits = np.asarray(hits, bool)
        if (hits & ~both).any():
            raise ValueError("a hit without a face on both sides")
        out = {"recognised": int(hits.sum()), "not_recognised": int((both & ~hits).sum())}
    return out | {"no_face": int((probe_found & ~both).sum()),
                  "probe_no_face": int((~probe_found).sum())}


def _scores(trials: tuple[np.ndarray, np.ndarray, np.ndarray], gallery: np.ndarray,
            found: np.ndarray, labels: np.ndarray, user_gallery: np.ndarray, k: int,
            score_thresholds: dict[str, float], backend: Backend) -> dict:
    """Identification and verification figures of the trials ``(probes (P, D), found (P,),
    labels (P,))`` against one gallery ``(G, D)`` with ``found`` (G,) and ``labels`` (G,):
    each rate with its Wilson 95% interval (``<rate>_ci``) and its trials or pairs split by
    :func:`_outcomes` (``<rate>_outcomes``)."""
    probes, probe_found, probe_labels = trials
    ranks = identification_ranks(probes, probe_labels, probe_found, gallery[found],
                                 labels[found], k, backend)
    # does the judge find a face in at least one gallery photo of the trial's identity?
    mate_found = np.array([bool(found[labels == label].any()) for label in probe_labels], bool)
    genuine, pair_probe_found, pair_mate_found = _genuine_scores(
        probes, probe_found, probe_labels, gallery, found, labels)
    n = int(len(probe_labels))
    row: dict = {"trials": n, "k": k}
    for name, depth in (("rank1", 1),) + ((("rank10", 10),) if k >= 10 else ()) + (
            ("rank_k", k),):
        hits = ranks <= depth
        row[name] = rank_k_accuracy(ranks, depth)
        row[f"{name}_ci"] = list(wilson_interval(int(hits.sum()), n))
        row[f"{name}_outcomes"] = _outcomes(hits, probe_found, mate_found)
    row["tar"], row["tar_ci"], row["tar_outcomes"] = {}, {}, {}
    for far, t in score_thresholds.items():
        accepted = None if math.isnan(t) else np.isfinite(genuine) & (genuine >= t)
        row["tar"][far] = accept_rate(genuine, t)
        row["tar_ci"][far] = list(wilson_interval(int(accepted.sum()), len(genuine))
                                  if accepted is not None else (math.nan, math.nan))
        row["tar_outcomes"][far] = _outcomes(accepted, pair_probe_found, pair_mate_found)
    return row | {
        "genuine_pairs": int(len(genuine)),
        "probes_without_face": int((~probe_found).sum()),
        "gallery_without_face": int((~found).sum()),
        "user_gallery_without_face": int((~found & user_gallery).sum()),
        "gallery_size": int(found.sum()),
    }


def _genuine_scores(probes: np.ndarray, probe_found: np.ndarray, probe_labels: np.ndarray,
                    gallery: np.ndarray, gallery_found: np.ndarray,
                    gallery_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (-distance) of every (probe, gallery photo of the same identity) pair, -inf when
    either has no face; and, per pair, whether the probe and the gallery photo have a face."""
    scores, probe_ok, mate_ok = [], [], []
    for emb, ok, label in zip(probes, probe_found, probe_labels, strict=True):
        mates = np.flatnonzero(gallery_labels == label)
        if not len(mates):
            continue
        s = np.full(len(mates), -np.inf)
        valid = gallery_found[mates]
        if ok and valid.any():
            s[valid] = -pairwise_distances(emb[None], gallery[mates[valid]])[0]
        scores.append(s)
        probe_ok.append(np.full(len(mates), bool(ok)))
        mate_ok.append(valid)
    if not scores:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
    return np.concatenate(scores), np.concatenate(probe_ok), np.concatenate(mate_ok)


__all__ = ["EvalConfig", "run_evaluation"]
