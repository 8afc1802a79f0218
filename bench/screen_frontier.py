"""Plot screens (``bench/screen_variants.py`` lines) as a frontier: face-region JOD against the
worst best rank any never-attacked judge gives a screened user's protected photos (log scale;
rank 10 or better fails the bar, drawn dotted), each point labelled with its face-region FLIP.
One panel per screened eval run; a label with "(default)" marks the chosen variant.

    .venv/bin/python bench/screen_frontier.py bench/screens/2026-12-07-cvvdp.jsonl \\
        --out docs/img/frontier-screens.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RANK_BAR = 10


def worst_rank(line: dict) -> int:
    """The lowest (worst for the user) best rank over every judge and user of a screen line
    (a user whose protected photos a judge found no face in does not count)."""
    return min(rank for v in line.values() if isinstance(v, dict) and "best_rank" in v
               for rank in v["best_rank"].values() if rank is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("screens", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [json.loads(text) for text in args.screens.read_text().splitlines() if text.strip()]
    runs = sorted({line["eval"] for line in lines})
    figure, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 5), squeeze=False)
    for axis, run in zip(axes[0], runs, strict=True):
        mine = [line for line in lines if line["eval"] == run]
        judges = sorted({k for line in mine for k, v in line.items()
                         if isinstance(v, dict) and "best_rank" in v})
        for line in mine:
            x, y = line["jod"], worst_rank(line)
            chosen = "(default)" in line["label"]
            axis.scatter([x], [y], color="tab:red" if chosen else "tab:blue",
                         marker="*" if chosen else "o", s=120 if chosen else 30, zorder=3)
            axis.annotate(f"{line['label']} FLIP {line['flip']:.3f}", (x, y), fontsize=7,
                          xytext=(4, 3), textcoords="offset points")
            print(f"{run}\t{line['label']}\tJOD {x:.2f}\tFLIP {line['flip']:.3f}\t"
                  f"worst best rank {y}")
        axis.axhline(RANK_BAR, linestyle=":", color="gray")
        axis.set_yscale("log")
        axis.set_xlabel("face region ColorVideoVDP (JOD, mean)")
        axis.set_ylabel(f"worst best rank of a user ({', '.join(judges)}); <= 10 fails")
        axis.set_title(f"screen on {run}", fontsize=10)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
