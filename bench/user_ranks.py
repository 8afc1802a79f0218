"""Each protected user's best rank in a finished ``lowkey eval`` run, after a counter-measure.

``lowkey eval`` reports rates (rank-1, rank-10, TAR) over users; this prints how far each user
is from the bar: for every judge, the best (lowest) rank at which any of the user's protected
photos, after the counter-measure, comes up for any of the user's clean probes, among the run's
gallery (clean photos of everyone else and the distractors, after the same counter-measure, from
the run's cache). Rank 10 or better fails the bar.

    .venv/bin/python bench/user_ranks.py eval-out/lfw12 --countermeasure jpeg75
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from lowkey.evaluation.countermeasures import COUNTERMEASURES
from lowkey.evaluation.dataset import scan_dataset, split_dataset
from lowkey.evaluation.judges import JudgePanel
from lowkey.image_decode import load_photo


def cached_embeddings(run: Path, judge: str, key: str) -> dict[str, np.ndarray | None]:
    """The run's cached embeddings of clean photos under counter-measure ``key``, by content."""
    (folder,) = [p for p in (run / "cache" / "embeddings").iterdir()
                 if p.name.startswith(judge + "-") and "@" not in p.name]
    z = np.load(folder / f"{key}.npz", allow_pickle=True)
    return {k: (e if found else None) for k, found, e in zip(z["keys"], z["found"],
                                                            z["embeddings"], strict=True)}


@functools.cache
def judge_panel(judge: str) -> JudgePanel:
    """One loaded panel per judge, however many runs are ranked (bench/frontier_eval.py ranks
    a dozen)."""
    return JudgePanel([judge])


def best_ranks(run: Path, judge: str, countermeasure_name: str
               ) -> tuple[dict[str, int | None], int]:
    """Each protected user's best rank for ``judge`` in the finished ``lowkey eval`` run ``run``
    after the counter-measure (None: the judge found no face in any of the user's protected
    photos, or no probe), and the gallery's size."""
    config = json.loads((run / "results.json").read_text())["config"]
    split = split_dataset(scan_dataset(Path(config["dataset"]), Path(config["distractors"])),
                          config["seed"], config["users"])
    hashes = json.loads((run / "cache" / "sha256.json").read_text())
    (attack,) = [p for p in (run / "protected").iterdir() if "-without-" not in p.name]
    countermeasure = COUNTERMEASURES[countermeasure_name]
    panel = judge_panel(judge)
    clean = cached_embeddings(run, judge, "none")
    countered = cached_embeddings(run, judge, countermeasure.key)

    def content(path: Path) -> str:
        return hashes[str(Path(path).resolve())][2]

    gallery, labels, mine = [], [], {}
    for path, label in split.gallery_items():
        e = countered.get(content(path)) if label not in split.users else None
        if e is not None:
            gallery.append(e)
            labels.append(label)
    for user in split.users:
        for path in split.gallery[user]:
            output = attack / user / f"{Path(path).stem}_lowkey{Path(path).suffix}"
            pixels = countermeasure.apply(load_photo(output).pixels)
            e = panel.embed(pixels, [judge])[judge]
            if e is not None:
                gallery.append(e)
                labels.append(user)
                mine.setdefault(user, []).append(len(gallery) - 1)
    stacked = np.stack(gallery)
    best: dict[str, int | None] = {}
    for user in split.users:
        for probe in split.probes[user]:
            probe_embedding = clean.get(content(probe))
            if probe_embedding is None or not mine.get(user):
                best.setdefault(user, None)
                continue
            order = np.argsort(np.linalg.norm(stacked - probe_embedding, axis=1))
            rank = min(int(np.flatnonzero(order == i)[0]) + 1 for i in mine[user])
            best[user] = rank if best.get(user) is None else min(best[user], rank)
    return best, len(stacked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished lowkey eval --out")
    parser.add_argument("--countermeasure", default="jpeg75", choices=sorted(COUNTERMEASURES))
    parser.add_argument("--judges", default="arcface-mbf,dlib")
    args = parser.parse_args()
    for judge in args.judges.split(","):
        best, size = best_ranks(args.run, judge, args.countermeasure)
        print(json.dumps({"run": str(args.run), "judge": judge,
                          "countermeasure": args.countermeasure, "best_rank": best,
                          "gallery": size}))


if __name__ == "__main__":
    main()
