"""Writing an evaluation's results: ``report.md``, ``results.json``, ``results.csv`` and plots.

``results.json`` is what :func:`lowkey.evaluation.runner.run_evaluation` returns. Each entry of
``results`` is one judge x gallery condition (``attack``: "clean", "ensemble", a single model or
"without-<model>") x ``countermeasure``, with ``rank1``, ``rank_k`` (``k``), ``tar`` (per FAR), ``access``
("white-box" when the judge was attacked, "black-box" when not, None for the clean gallery) and
the faces-not-found counts. Accuracies are fractions in [0, 1] (NaN: no trial). Each rate has
``<rate>_ci`` (``tar_ci`` per FAR): its Wilson score 95% interval [low, high], and
``<rate>_outcomes`` (``tar_outcomes`` per FAR): its ``trials`` (``genuine_pairs`` for TAR) split
into ``recognised``, ``not_recognised`` (faces found, no match), ``no_face`` (no face found in
the user's gallery photos, or in the pair's gallery photo) and ``probe_no_face``. Judges named
``<judge>@fixed`` (``fixed_detector`` true, ``base_judge`` the judge) embed gallery photos at the
face found in their clean source instead of finding it afresh.

Plots (matplotlib, Agg backend; skipped with a warning when matplotlib is missing):
``transfer.png`` (the paper's Table 2: attack x judge, rank-1 and rank-k) and ``rank1.png``
(rank-1 clean vs protected per judge).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

from lowkey.json_safe import json_safe

logger = logging.getLogger(__name__)

CLEAN = "clean"

#: How each trial (or genuine pair) ended; see the module docstring.
OUTCOMES = ("recognised", "not_recognised", "no_face", "probe_no_face")


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}%"


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def ci_text(ci: list[float | None] | tuple[float, float] | None) -> str:
    """A Wilson interval as ``[0-23%]`` (whole percents), ``[n/a]`` without one."""
    if not ci or not all(_finite(v) for v in ci):
        return "[n/a]"
    return f"[{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%]"


def rate_cell(row: dict, metric: str, far: str | None = None) -> str:
    """``metric`` ("rank1", "rank_k" or "tar" at ``far``) of a result row as
    ``12.5% [2-47%] (no face: 1 of 8)``: the rate, its 95% interval and how many of its trials
    (genuine pairs for TAR) had no face found in the user's gallery photos (and, when any, in
    the clean probe)."""
    if metric == "tar":
        value, ci = row["tar"][far], row["tar_ci"][far]
        outcomes, total = row["tar_outcomes"][far], row["genuine_pairs"]
    else:
        value, ci = row[metric], row[f"{metric}_ci"]
        outcomes, total = row[f"{metric}_outcomes"], row["trials"]
    note = f"no face: {outcomes['no_face']} of {total}"
    if outcomes["probe_no_face"]:
        note += f"; none in the probe: {outcomes['probe_no_face']}"
    return f"{_pct(value)} {ci_text(ci)} ({note})"


def _num(value: float | None, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def _lpips_cell(quality: dict) -> str:
    """Mean LPIPS, with how many photos it rests on when that is not all of them."""
    measured = quality.get("lpips_measured", 0)
    if not measured:
        return "n/a"
    cell = _num(quality["lpips_mean"], ".4f")
    return cell if measured == quality["protected"] else f"{cell} ({measured} photos)"


def _white_box(results: dict, judge: str, attack: str) -> bool:
    """True when ``judge`` was among the models of ``attack`` (read from the result rows)."""
    found = _find(results, judge, attack)
    return found is not None and found["access"] == "white-box"


def _find(results: dict, judge: str, attack: str, countermeasure: str = "none") -> dict | None:
    for row in results["results"]:
        if (row["judge"], row["attack"], row["countermeasure"]) == (judge, attack,
                                                                    countermeasure):
            return row
    return None


def transfer_matrix(results: dict, metric: str = "rank1") -> tuple[list[str], list[str],
                                                                     list[list[float]]]:
    """Rows (clean, single-model attacks, leave-one-out ensembles, ensemble), columns (judges)
    and ``metric`` values, without counter-measure."""
    judges = [j["name"] for j in results["judges"]]
    attacks = [CLEAN] + [a["name"] for kind in ("single", "leave-one-out", "ensemble")
                         for a in results["attacks"] if a["kind"] == kind]
    values = []
    for attack in attacks:
        row = []
        for judge in judges:
            found = _find(results, judge, attack)
            row.append(found[metric] if found else math.nan)
        values.append(row)
    return attacks, judges, values


def _attack_label(results: dict, name: str) -> str:
    if name == CLEAN:
        return "clean (no protection)"
    return next(a["label"] for a in results["attacks"] if a["name"] == name)


def _short_label(results: dict, name: str) -> str:
    if name == CLEAN:
        return "clean"
    attack = next(a for a in results["attacks"] if a["name"] == name)
    return {"single": f"{name} only", "leave-one-out": name.replace("-", " ")}.get(
        attack["kind"], "ensemble")


def markdown(results: dict) -> str:
    """The human-readable report."""
    cfg, ds, knn = results["config"], results["dataset"], results["knn"]
    k = knn["k"]
    fars = list(next(iter(results["thresholds"].values()), {}).keys()) if results["thresholds"] \
        else []
    judges = [j["name"] for j in results["judges"]]
    fixed = [j["name"] for j in results["judges"] if j.get("fixed")]
    black = results["black_box_judges"]
    ensemble = next(a for a in results["attacks"] if a["kind"] == "ensemble")
    lines = [
        f"# LowKey evaluation: `{ds['root']}`",
        "",
        f"Preset `{cfg['preset']}` (attacked models: {', '.join(ensemble['models'])}; "
        f"perceptual penalty {ensemble.get('penalty', 'n/a')}), strength "
        f"{cfg['strength']}, seed {cfg['seed']}; {len(ds['users'])} protected users among "
        f"{ds['identities']} identities; judges {', '.join(judges)}.",
        f"{ds['photos']} photos: {ds['probes']} probes (clean), {ds['gallery']} gallery photos "
        f"of which {ds['user_gallery']} are the users' (protected), {ds['distractors']} "
        f"distractors. {ds['user_probes']} identification trials (the users' probes).",
        "",
        "## Headline: judges that were never attacked (black-box)",
        "",
        f"Gallery protected with the `{cfg['preset']}` ensemble, no counter-measure. Rank-{k} "
        f"is capped by the gallery size ({ds['gallery']} photos)"
        + (": on a gallery this small it says little, read rank-1 and TAR." if k < 50 else "."),
        "",
        f"Each figure: the rate, its Wilson 95% interval in brackets (with {ds['user_probes']} "
        "trials a rate of 0% is still compatible with a true rate well above it), and in "
        "parentheses how many trials (TAR: genuine pairs) failed because the judge found *no "
        "face* in the user's gallery photos, of all trials. No face found is a legitimate "
        "outcome of protection, but a different one from a face found and not recognised: a "
        "system with a better (or fixed) detector may still find and recognise that face."
        + (f" Judges marked `@fixed` ({', '.join(fixed)}) take each gallery photo's face where "
           "the judge finds it in the clean source photo (before protection) instead of "
           "finding it afresh: when `J@fixed` still recognises the users and `J` does not, "
           "protection defeated only J's detection, not its recognition." if fixed else ""),
        "",
    ]
    head = ["judge", "rank-1 clean", "rank-1 protected", f"rank-{k} clean",
            f"rank-{k} protected"]
    for f in fars:
        head += [f"TAR@FAR={f} clean", f"TAR@FAR={f} protected"]
    table = []
    for judge in black:
        clean, prot = _find(results, judge, CLEAN), _find(results, judge, "ensemble")
        cells = [judge, rate_cell(clean, "rank1"), rate_cell(prot, "rank1"),
                 rate_cell(clean, "rank_k"), rate_cell(prot, "rank_k")]
        for f in fars:
            cells += [rate_cell(clean, "tar", f), rate_cell(prot, "tar", f)]
        table.append(cells)
    if table:
        lines += _table(head, table)
    else:
        lines.append("**No black-box judge**: every judge was in the attacked ensemble, so "
                     "these figures measure the attack, not protection against unknown systems.")
    lines += _protection_section(results)
    lines += ["", "## Every judge and counter-measure (ensemble attack)", "",
              "Counter-measures are applied to every gallery photo (the users' protected ones "
              "and everybody else's clean ones, and to the whole clean gallery for the "
              "baseline); probes are always the clean photos. `@fixed` judges take the face "
              "found in the clean source without counter-measure, scaled to the photo's size "
              "when the counter-measure resizes it. Figures as in the headline: rate [95% "
              "interval] (trials or pairs lost to no face found, of all).", ""]
    head = (["judge", "access", "counter-measure", "rank-1 clean -> protected",
             f"rank-{k} clean -> protected"]
            + [f"TAR@FAR={f} clean -> protected" for f in fars])
    table = []
    for cm in results["countermeasures"]:
        for judge in judges:
            clean = _find(results, judge, CLEAN, cm["name"])
            prot = _find(results, judge, "ensemble", cm["name"])
            if not clean or not prot:
                continue
            table.append([judge, prot["access"], cm["name"],
                          f"{rate_cell(clean, 'rank1')} -> {rate_cell(prot, 'rank1')}",
                          f"{rate_cell(clean, 'rank_k')} -> {rate_cell(prot, 'rank_k')}"]
                         + [f"{rate_cell(clean, 'tar', f)} -> {rate_cell(prot, 'tar', f)}"
                            for f in fars])
    lines += _table(head, table)
    lines += ["", "Counter-measures: " + "; ".join(
        f"`{c['name']}`: {c['description']}" for c in results["countermeasures"]) + "."]

    lines += ["", "## Transfer matrix (the paper's Table 2)", "",
              "Rows: how the users' gallery was protected; columns: the judge. No "
              "counter-measure. `*` marks white-box cells (the judge was attacked); "
              "`(no face n)`: trials lost because the judge found no face in the user's "
              "gallery photos.", ""]
    for metric, name in (("rank1", "rank-1"), ("rank_k", f"rank-{k}")):
        attacks, cols, values = transfer_matrix(results, metric)
        table = []
        for attack, row in zip(attacks, values, strict=True):
            table.append([_attack_label(results, attack)] + [
                _pct(v) + _no_face_note(results, judge, attack, metric)
                + (" *" if _white_box(results, judge, attack) else "")
                for judge, v in zip(cols, row, strict=True)])
        lines += [f"{name}:", ""] + _table(["attack"] + cols, table) + [""]
    if all(a["kind"] == "ensemble" for a in results["attacks"]):
        lines.append("Single-model and leave-one-out rows were not computed (run with "
                     "`--transfer`).")

    lines += ["", "## Faces not found", "",
              "A judge detects faces itself and uses the largest (a `@fixed` judge takes it from "
              "the clean source photo). A probe without a face counts as a miss; a gallery photo "
              "without one is absent from that judge's gallery; a genuine pair with a missing "
              "face is a rejection. Each such trial or pair is counted as 'no face' in the "
              "figures above, apart from those where a face was found and not recognised.", ""]
    probes_missing = {r["judge"]: r["probes_without_face"] for r in results["results"]}
    lines += ["Users' probes (always clean) without a face: " + ", ".join(
        f"{j} {n}/{ds['user_probes']}" for j, n in probes_missing.items()) + ".", "",
        f"Gallery photos without a face, of {ds['gallery']} (in brackets: of which the users', "
        f"of {ds['user_gallery']}):", ""]
    table = []
    for attack, cm in dict.fromkeys((r["attack"], r["countermeasure"])
                                    for r in results["results"]):
        cells = [_attack_label(results, attack), cm]
        for judge in judges:
            r = _find(results, judge, attack, cm)
            cells.append(f"{r['gallery_without_face']} ({r['user_gallery_without_face']})"
                         if r else "n/a")
        table.append(cells)
    lines += _table(["gallery", "counter-measure"] + judges, table)

    lines += ["", "## Verification thresholds", "",
              "Calibrated per judge on clean probe x clean gallery impostor pairs (distractors "
              "included); a pair is accepted when its distance is at most the threshold (L2 "
              "distance of normalised embeddings for registry models, dlib's own distance for "
              "dlib). 'resolvable' is false when there are fewer than 1/FAR impostor pairs.", ""]
    table = [[judge, far, _num(t["distance_threshold"], ".4f"), _pct(t["achieved_far"]),
              str(t["impostor_pairs"]), str(t["resolvable"]).lower()]
             for judge, by_far in results["thresholds"].items() for far, t in by_far.items()]
    lines += _table(["judge", "FAR", "distance threshold", "achieved FAR", "impostor pairs",
                     "resolvable"], table)

    lines += ["", "## Quality and cost of the protected photos", "",
              "The face region is what a person looks at, so its figures come first: each "
              "photo's worst face (its MTCNN box in the original, widened 20% each side); "
              "mean over the photos, and in brackets the worst photo. FLIP: NVIDIA FLIP, 0 = "
              "identical, larger is worse; JOD: ColorVideoVDP, 10 = identical. The whole-photo "
              "SSIM, PSNR and LPIPS follow (a face is often a small part of the photo, so they "
              "flatter the protection's visibility).", ""]
    table = []
    for attack in results["attacks"]:
        q = results["quality"][attack["name"]]
        table.append([attack["label"], f"{q['protected']}/{q['photos']}", str(q["no_face"]),
                      str(q["failed"]),
                      _mean_worst(q.get("face_ssim_mean"), q.get("face_ssim_min"), ".4f"),
                      _num(q.get("face_psnr_mean"), ".1f"),
                      _mean_worst(q.get("face_flip_mean"), q.get("face_flip_max"), ".4f"),
                      _mean_worst(q.get("face_jod_mean"), q.get("face_jod_min"), ".2f"),
                      _num(q["ssim_mean"], ".4f"), _num(q["psnr_mean"], ".1f"),
                      _lpips_cell(q),
                      f"{q['penalty'] or 'n/a'} {_num(q['penalty_mean'], '.4f')}",
                      _num(q["size_ratio_mean"], ".2f"),
                      f"{_num(q['seconds_per_photo'], '.1f')} ({q['seconds_known']} timed)",
                      ", ".join(q["devices"]) or "n/a"])
    lines += _table(["attack", "protected", "no face", "failed", "face SSIM (min)",
                     "face PSNR dB", "face FLIP (max)", "face JOD (min)", "photo SSIM",
                     "photo PSNR dB", "photo LPIPS", "perceptual penalty", "size ratio",
                     "s/photo", "device"], table)
    cost, cache = results["cost"], results["cache"]
    lines += ["", "Whole-photo SSIM, PSNR and size ratio (protected / original file bytes) are "
              "means over the protected photos; the perceptual penalty is the objective's last "
              "value "
              "(the preset's: LPIPS for `paper`, 1 - SSIM otherwise). LPIPS is AlexNet LPIPS of "
              "the whole decoded output against the original (photos over 1536 px average-"
              "pooled under it), measured when LPIPS is the preset's penalty; n/a: not "
              "measured. Photos where the protector "
              "found no face are left as they are and the judges see the original."
              + (" Photos protected by another job (no report beside them) have no recorded "
                 "time; their SSIM and PSNR were measured from the files." if any(
                     q["seconds_known"] < q["protected"] for q in results["quality"].values())
                 else ""), "",
              f"This run: {cost['runtime_seconds']:.0f} s in all on {cost['device']} "
              f"({cost['cpu']}, {cost['torch_threads']} torch threads); protection "
              f"{cost['protect_seconds']:.0f} s ({cache['protected_now']} photos protected now, "
              f"{cache['protected_reused']} reused), embedding {cost['embed_seconds']:.0f} s "
              f"({cost['photos_embedded']} photos; {cache['embeddings_computed']} embeddings "
              f"computed, {cache['embeddings_reused']} reused from the cache).",
              "", "## Protocol", "",
              f"- Split (seed {cfg['seed']}): per identity a tenth of the photos (at least one) "
              "are probes, the rest gallery. Users (protected): " + _users_text(cfg, ds) + ".",
              "- Trials: every probe of every user, against the whole gallery (every identity's "
              "gallery photos and the distractors). A trial succeeds at rank k when a gallery "
              "photo of the user is among the k nearest; ties are resolved in favour of the "
              "recognition system.",
              f"- Nearest neighbours: {knn['backend']} search "
              f"({'faiss IndexFlatL2' if knn['backend'] == 'faiss' else 'batched matrix products'}"
              f") over at most {knn['gallery_photos']} gallery photos.",
              "- Registry judges: our MTCNN detector, alignment to each model's own input "
              "contract, L2-normalised embeddings, Euclidean distance (ranks like cosine). "
              "dlib: its own HOG detector, alignment and descriptor, Euclidean distance. "
              "`J@fixed`: judge J, but each gallery photo is embedded at the face J finds in "
              "its clean source photo (MTCNN box and landmarks; dlib's rectangle and 5-point "
              "shape), scaled by the size ratio under a resizing counter-measure; probes are "
              "clean, so there it is J itself.",
              "- Intervals: Wilson score 95% intervals of each rate over its trials (or "
              "genuine pairs).",
              ]
    if ds["excluded_identities"]:
        lines.append(f"- Identities with a single photo (probe only, never users): "
                     f"{', '.join(ds['excluded_identities'])}.")
    if cache["unreadable"]:
        lines.append(f"- Unreadable photos (no face for any judge): {len(cache['unreadable'])}.")
    return "\n".join(lines) + "\n"


def _protection_section(results: dict) -> list[str]:
    """Does it protect? Every black-box row against :data:`PROTECTION_BAR`."""
    from lowkey.evaluation.runner import PROTECTION_BAR

    verdicts = results.get("protection") or []
    bar = PROTECTION_BAR
    lines = ["", "## Does it protect?", "",
             f"The bar, for every judge that was never attacked and every counter-measure, with "
             f"the distractors in the gallery: rank-1 at most {_pct(bar['rank1'])}, rank-10 at "
             f"most {_pct(bar['rank10'])}, TAR@FAR=0.01 at most {_pct(bar['tar@0.01'])}. "
             "Leave-one-out attacks (`--transfer`, `--leave-one-out`) are judged by the model "
             "they leave out.",
             ""]
    if not verdicts:
        return lines + ["No black-box judge: nothing here says whether it protects."]
    failed = [v for v in verdicts if v["protects"] is False]
    unknown = [v for v in verdicts if v["protects"] is None]
    lines.append(f"**{'Meets the bar' if not failed and not unknown else 'Does not meet the bar'}"
                 f"**: {len(verdicts) - len(failed) - len(unknown)} of {len(verdicts)} "
                 "(judge, attack, counter-measure) rows within it"
                 + (f"; {len(unknown)} without every figure" if unknown else "") + ".")
    lines.append("")
    rows = [[v["judge"], _attack_label(results, v["attack"]), v["countermeasure"],
             _pct(v["rank1"]), _pct(v["rank10"]), _pct(v["tar@0.01"]),
             {True: "yes", False: "**no**", None: "?"}[v["protects"]]] for v in verdicts]
    return lines + _table(["judge", "attack", "counter-measure", "rank-1", "rank-10",
                           "TAR@FAR=0.01", "within the bar"], rows)


def _users_text(cfg: dict, ds: dict) -> str:
    users = cfg["users"]
    eligible = ds.get("eligible_identities", ds["identities"])
    if users == "all":
        how = f"every identity with a gallery photo ({eligible})"
    elif users is None:
        how = (f"{len(ds['users'])} of the {eligible} identities with a gallery photo, drawn at "
               "random (the default: a fifth, as the paper protects 100 of FaceScrub's 530 "
               "identities); the others stay clean")
    else:
        how = f"{len(ds['users'])} of {eligible} drawn at random (--users {users})"
    return f"{how}: {', '.join(ds['users'])}"


def _mean_worst(mean: float | None, worst: float | None, fmt: str) -> str:
    if not _finite(mean):
        return "n/a"
    return f"{_num(mean, fmt)} ({_num(worst, fmt)})"


def _no_face_note(results: dict, judge: str, attack: str, metric: str) -> str:
    row = _find(results, judge, attack)
    lost = row[f"{metric}_outcomes"]["no_face"] if row else 0
    return f" (no face {lost})" if lost else ""


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def write_csv(results: dict, path: Path) -> None:
    """One row per judge x gallery condition x counter-measure."""
    fars = sorted({f for r in results["results"] for f in r["tar"]}, key=float)

    def columns(name: str) -> list[str]:
        return [name, f"{name}_ci_low", f"{name}_ci_high"] + [f"{name}_{o}" for o in OUTCOMES]

    fields = (["judge", "base_judge", "fixed_detector", "attack", "countermeasure", "access",
               "trials"] + columns("rank1") + ["k"] + columns("rank_k")
              + [c for f in fars for c in columns(f"tar@far={f}")]
              + ["genuine_pairs", "probes_without_face", "gallery_without_face",
                 "user_gallery_without_face", "gallery_size"])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in results["results"]:
            flat = {key: row[key] for key in fields if key in row}
            cells = [(m, row[m], row[f"{m}_ci"], row[f"{m}_outcomes"])
                     for m in ("rank1", "rank_k")]
            cells += [(f"tar@far={far}", row["tar"][far], row["tar_ci"][far],
                       row["tar_outcomes"][far]) for far in fars]
            for name, value, ci, outcomes in cells:
                flat |= {name: value, f"{name}_ci_low": ci[0], f"{name}_ci_high": ci[1]}
                flat |= {f"{name}_{o}": outcomes[o] for o in OUTCOMES}
            writer.writerow(flat)


def plot_transfer(results: dict, path: Path) -> None:
    """Heatmaps of rank-1 and rank-k: attack (rows) x judge (columns); white-box cells boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    k = results["knn"]["k"]
    n_judges, n_rows = len(results["judges"]), 1 + len(results["attacks"])
    fig, axes = plt.subplots(1, 2, figsize=(2.5 + 1.6 * n_judges, 1.8 + 0.55 * n_rows),
                             squeeze=False, sharey=True)
    for col, (ax, (metric, title)) in enumerate(zip(
            axes[0], (("rank1", "rank-1"), ("rank_k", f"rank-{k}")), strict=True)):
        attacks, judges, values = transfer_matrix(results, metric)
        data = np.array(values, float) * 100
        ax.imshow(data, cmap="Reds", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(judges)), judges, rotation=30, ha="right")
        if col == 0:
            ax.set_yticks(range(len(attacks)), [_short_label(results, a) for a in attacks])
        ax.set_title(f"{title} accuracy (%)")
        for i, attack in enumerate(attacks):
            for j, judge in enumerate(judges):
                text = "n/a" if np.isnan(data[i, j]) else f"{data[i, j]:.0f}"
                ax.text(j, i, text, ha="center", va="center",
                        color="white" if data[i, j] > 60 else "black")
                if _white_box(results, judge, attack):
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2,
                                               ec="black"))
    fig.suptitle("gallery protected by (rows), judged by (columns); boxed: white-box",
                 fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_rank1(results: dict, path: Path) -> None:
    """Bars: rank-1 accuracy per judge, clean gallery vs gallery protected by the ensemble."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    judges = [j["name"] for j in results["judges"]]
    black = set(results["black_box_judges"])
    clean = [_find(results, j, CLEAN)["rank1"] * 100 for j in judges]
    prot = [_find(results, j, "ensemble")["rank1"] * 100 for j in judges]
    x = np.arange(len(judges))
    fig, ax = plt.subplots(figsize=(2 + 1.3 * len(judges), 3.6))
    for offset, values, label, colour in ((-0.2, clean, "clean gallery", "0.6"),
                                          (0.2, prot, "protected gallery (ensemble)",
                                           "tab:red")):
        bars = ax.bar(x + offset, values, 0.4, label=label, color=colour)
        ax.bar_label(bars, [f"{v:.0f}" for v in values], fontsize="small")  # 0 stays visible
    ax.set_xticks(x, [f"{j}\n({'black' if j in black else 'white'}-box)" for j in judges])
    ax.set_ylabel("rank-1 accuracy (%)")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="upper center", fontsize="small", ncol=2, frameon=False)
    ax.set_title("Rank-1 identification of protected users")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(results: dict, out: Path) -> dict[str, Path]:
    """Write the report, the data and the plots into ``out``; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "json": out / "results.json",
             "csv": out / "results.csv"}
    paths["json"].write_text(json.dumps(json_safe(results), indent=1))
    write_csv(results, paths["csv"])
    paths["report"].write_text(markdown(results))
    try:
        plot_transfer(results, out / "transfer.png")
        plot_rank1(results, out / "rank1.png")
        paths.update(transfer=out / "transfer.png", rank1=out / "rank1.png")
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
    return paths
