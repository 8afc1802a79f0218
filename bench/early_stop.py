"""Would stopping a face early, once every attacked model is past its margin, keep protection?

Issue 13 asks to stop an attack "once every ensemble member is past its margin, only if the
frontier shows protection and quality hold". For ``default`` (then called ``strong``; no bound, uniform budget, no floor)
the first k steps of a strength-50 attack are exactly a strength-k attack, so a frontier run at
several strengths (``bench/frontier.py --variants default --strengths 5,10,15,20,30,50``) holds
what an early stop would give: for each photo, the stop is the smallest strength at which every
attacked model's cosine between the original and the protected face (measured on the written
photo, faces found afresh) is below that model's threshold at FAR ``--far`` on faces-dev's clean
impostor pairs, less ``--margin``; the protection at the stop is that row's held-out figures.

    .venv/bin/python bench/frontier.py --variants default --strengths 5,10,15,20,30,50 \
        --photos 6 --out bench/out/frontier-early-stop.jsonl
    .venv/bin/python bench/early_stop.py bench/out/frontier-early-stop.jsonl

Prints, per variant: each photo's stop (or "never"), then dlib's and the held-out model's rank-1
and TAR (frontier.py's trials) at the stops against the full strength, and the steps saved.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces-dev"


def member_thresholds(models: list[str], data: Path, max_side: int, far: float
                      ) -> dict[str, float]:
    """Each model's cosine threshold at FAR ``far`` on the clean impostor pairs of ``data``
    (one identity per folder; the photos downscaled as frontier.py does)."""
    import numpy as np
    import torch
    from frontier import _downscaled

    from lowkey.embedding import embed_faces
    from lowkey.faces import FaceDetector
    from lowkey.image_decode import load_photo
    from lowkey.models.store import load_recognizer

    detector = FaceDetector()
    recognizers = [load_recognizer(name, torch.device("cpu")) for name in models]
    vectors: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for person in sorted(d for d in data.iterdir() if d.is_dir()):
        for path in sorted(person.glob("*.jpg")):
            pixels = _downscaled(load_photo(path), max_side).pixels
            faces = detector.detect(pixels)
            if not faces:
                continue
            face = max(faces, key=lambda f: f.area)
            for model in recognizers:
                with torch.no_grad():
                    vector = embed_faces(pixels, [face], model)[0]
                vectors[model.name].append(
                    (person.name, torch.nn.functional.normalize(vector, dim=0).numpy()))
    thresholds = {}
    for name, rows in vectors.items():
        scores = [float(a @ b) for i, (x, a) in enumerate(rows) for y, b in rows[i + 1:]
                  if x != y]
        thresholds[name] = float(np.quantile(scores, 1 - far))
    return thresholds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("frontier", type=Path, help="JSON lines written by bench/frontier.py")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--max-side", type=int, default=1024, help="as frontier.py's --max-side")
    p.add_argument("--far", type=float, default=0.01)
    p.add_argument("--margin", type=float, default=0.0,
                   help="stop only this far (in cosine) below each threshold")
    args = p.parse_args()

    rows: dict[tuple[str, str, int], dict] = {}
    for line in args.frontier.read_text().splitlines():
        row = json.loads(line)
        rows[(row["variant"], row["photo"], row["strength"])] = row  # the last run counts
    if not rows:
        print("no rows")
        return 1
    models = sorted({m for r in rows.values() for m in r["white_box"]})
    thresholds = member_thresholds(models, args.data, args.max_side, args.far)
    print("thresholds (cosine at FAR {:.0%}): {}".format(
        args.far, ", ".join(f"{m} {t:.3f}" for m, t in thresholds.items())))

    by_variant: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for (variant, photo, strength), row in rows.items():
        by_variant[variant][photo][strength] = row
    for variant, photos in by_variant.items():
        full = max(s for strengths in photos.values() for s in strengths)
        at_stop, at_full, saved = [], [], []
        print(f"\n{variant} (full strength {full}):")
        for photo, strengths in sorted(photos.items()):
            if full not in strengths:
                continue
            stop = next((s for s in sorted(strengths) if all(
                c is not None and c < thresholds[m] - args.margin
                for m, c in strengths[s]["white_box"].items())), None)
            chosen = strengths[stop] if stop is not None else strengths[full]
            cosines = ", ".join(f"{m} {c:.2f}" for m, c in chosen["white_box"].items())
            print(f"  {photo}: stop at {stop if stop is not None else 'never'} "
                  f"(attacked models' cosines there: {cosines}; held-out cosine "
                  f"{chosen['held_out_cosine']:.2f}, face JOD {chosen['jod']:.2f})")
            at_stop.append(chosen)
            at_full.append(strengths[full])
            saved.append(1 - (stop if stop is not None else full) / full)

        def rate(group: list[dict], judge: str, what: str) -> str:
            trials = sum(r[f"{judge}_trials"] for r in group)
            hits = sum(r[f"{judge}_{what}_hits"] for r in group)
            return f"{hits / trials:.0%}" if trials else "n/a"

        for label, group in (("stopped early", at_stop), (f"strength {full}", at_full)):
            print(f"  {label:>14}: dlib rank-1 {rate(group, 'dlib', 'rank1')}, TAR "
                  f"{rate(group, 'dlib', 'tar')}; held-out rank-1 {rate(group, 'held', 'rank1')}"
                  f", TAR {rate(group, 'held', 'tar')}; face JOD "
                  f"{sum(r['jod'] for r in group) / len(group):.2f}")
        print(f"  steps saved: {sum(saved) / len(saved):.0%} on average")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
