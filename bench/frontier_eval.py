"""The frontier of the protecting default: face-region look against black-box protection, one
point per `lowkey eval` run (issue 21's plot, judged the way issue 20 defines protection).

Each point is one ``results.json`` of ``lowkey eval`` with distractors: x is the mean face-region
ColorVideoVDP (JOD) of the protected photos, y the worst figure over the never-attacked judges
(``black_box_judges``) and every counter-measure of that run: rank-10 in the left panel, TAR at
FAR 1% in the right one. The bar (rank-10 at most 10%, TAR at most 2%) is drawn dotted; a point
that protects lies below it, and the goal (9.0 JOD, issue 21) is to its right.

    .venv/bin/python bench/frontier_eval.py --out docs/img/frontier.png \\
        "five models, 50 steps=eval-out/fd5/results.json" \\
        "five models, 50 steps=eval-out/lfw5/results.json" ...

A label names the idea; points with the same label are joined (one per data set), and the data
set (the run's ``dataset`` folder name) picks the marker; the last panel labels each point with
its face-region FLIP. Prints the table it plots.

``--ranks-after jpeg75`` adds a third panel, the margin the rates cannot show once every point
is at 0%: the worst best rank of a protected user over the judges after that counter-measure
(``bench/user_ranks.py``, from each run's folder: its cache and protected photos; log scale,
rank 10 or better fails).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RANK_BAR, TAR_BAR, JOD_GOAL = 0.10, 0.02, 9.0
#: a user's best rank at or under this fails (rank-10)
RANK_WORST = 10


def worst(results: dict) -> dict:
    """The worst (highest) rank-10 and TAR@1% of the ensemble attack over the black-box judges
    and the counter-measures of one results.json, with the face-region look."""
    judges = set(results["black_box_judges"])
    rows = [r for r in results["results"]
            if r["attack"] == "ensemble" and r["base_judge"] in judges]
    if not rows:
        raise ValueError("no ensemble rows judged by a black-box judge in this results.json")
    quality = results["quality"]["ensemble"]
    return {"rank10": max(r["rank10"] for r in rows),
            "tar": max(r["tar"]["0.01"] for r in rows),
            "jod": quality["face_jod_mean"], "jod_min": quality["face_jod_min"],
            "flip": quality["face_flip_mean"], "ssim": quality["face_ssim_mean"],
            "judges": sorted(judges),
            "dataset": Path(results["dataset"]["root"]).name}


def worst_rank(results_json: Path, countermeasure: str) -> int:
    """The worst (lowest) best rank of any protected user over the run's black-box judges after
    ``countermeasure`` (users a judge found no face for do not count)."""
    from user_ranks import best_ranks  # bench/, the script's own folder

    run = results_json.parent
    judges = json.loads(results_json.read_text())["black_box_judges"]
    return min(rank for judge in judges
               for rank in best_ranks(run, judge, countermeasure)[0].values() if rank is not None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("points", nargs="+", metavar="LABEL=RESULTS_JSON")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--ranks-after", metavar="COUNTERMEASURE",
                        help="add the worst user's best rank after this counter-measure")
    args = parser.parse_args()

    points = []
    for spec in args.points:
        label, _, path = spec.rpartition("=")
        if not label:
            parser.error(f"{spec!r}: expected LABEL=RESULTS_JSON")
        point = worst(json.loads(Path(path).read_text()))
        if args.ranks_after:
            point["rank"] = worst_rank(Path(path), args.ranks_after)
        points.append((label, point))

    margin = f" worst best rank after {args.ranks_after} |" if args.ranks_after else ""
    print(f"| idea | data set | face JOD (worst) | FLIP | SSIM | worst rank-10 | worst TAR@1% |"
          f"{margin}")
    print("|---|---|---|---|---|---|---|" + ("---|" if margin else ""))
    for label, p in points:
        print(f"| {label} | {p['dataset']} | {p['jod']:.2f} ({p['jod_min']:.2f}) | "
              f"{p['flip']:.3f} | {p['ssim']:.3f} | {p['rank10']:.1%} | {p['tar']:.1%} |"
              + (f" {p['rank']} |" if margin else ""))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({p["dataset"] for _, p in points})
    markers = dict(zip(datasets, "osD^v", strict=False))
    labels = list(dict.fromkeys(label for label, _ in points))
    colours = {label: plt.cm.tab20(i % 20) for i, label in enumerate(labels)}  # 20 apart
    panels = [("rank10", RANK_BAR, "worst rank-10 (1,000 distractors)"),
              ("tar", TAR_BAR, "worst TAR at FAR 1%")]
    if args.ranks_after:
        panels.append(("rank", RANK_WORST,
                       f"worst user's best rank after {args.ranks_after} (log)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), sharex=True)
    for ax, (key, bar, title) in zip(axes, panels, strict=True):
        for label in labels:
            mine = [p for lab, p in points if lab == label]
            ax.plot([p["jod"] for p in mine], [p[key] for p in mine], "-", color=colours[label],
                    alpha=0.4)
            for p in mine:
                ax.plot(p["jod"], p[key], markers[p["dataset"]], color=colours[label],
                        label=f"{label} ({p['dataset']})")
                if key == panels[-1][0]:  # the last panel: each point's FLIP beside it
                    ax.annotate(f"{p['flip']:.3f}", (p["jod"], p[key]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points", color=colours[label])
        ax.axhline(bar, color="k", linestyle=":", linewidth=1)
        ax.axvline(JOD_GOAL, color="k", linestyle="--", linewidth=1)
        ax.set_xlabel("face region, mean ColorVideoVDP (JOD; higher looks closer to the original)")
        ax.set_ylabel(title)
        if key == "rank":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(min(7.0, min(p["jod"] for _, p in points) - 0.2), 10.0)
        ax.grid(alpha=0.3)
    judges = sorted({j for _, p in points for j in p["judges"]})
    fig.suptitle(f"Protecting default: look against protection (never-attacked judges: "
                 f"{', '.join(judges)}; dotted: the bar, dashed: the 9.0 JOD goal)", fontsize=9)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
