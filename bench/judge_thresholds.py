"""Each recogniser's "same person" cosine on faces-dev: the threshold that accepts 1% of the clean
impostor pairs (the largest face of each photo), with the genuine pairs' accept rate there and
the mean same / different cosine. The figure behind ``WeightRecord.match_cosine``.

    .venv/bin/python bench/judge_thresholds.py --models arcface-mbf,sface,facenet128,facenet512
"""

from __future__ import annotations

import argparse
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces-dev"


def main() -> int:
    from lowkey.embedding import embed_faces
    from lowkey.evaluation.metrics import accept_rate, far_threshold
    from lowkey.faces import select_faces
    from lowkey.image_decode import load_photo
    from lowkey.pool import shared_pool

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", default="arcface-mbf")
    p.add_argument("--far", type=float, default=0.01)
    args = p.parse_args()

    pool = shared_pool("cpu")
    models = pool.recognizers(args.models.split(","))
    detector = pool.detector()
    labels, rows = [], {m.name: [] for m in models}
    for path in sorted(args.data.glob("*/*")):
        photo = load_photo(path.read_bytes())
        faces = select_faces(detector.detect(photo.pixels), "largest")
        if not faces:
            continue
        labels.append(path.parent.name)
        with torch.no_grad():
            for m in models:
                rows[m.name].append(torch.nn.functional.normalize(
                    embed_faces(photo.pixels, faces, m)[0], dim=0).numpy())
    pairs = list(combinations(range(len(labels)), 2))
    same = np.array([labels[i] == labels[j] for i, j in pairs])
    print(f"{len(labels)} photos, {same.sum()} genuine and {(~same).sum()} impostor pairs")
    for name, emb in rows.items():
        emb = np.stack(emb)
        cos = np.array([float(emb[i] @ emb[j]) for i, j in pairs])
        threshold = far_threshold(cos[~same], args.far)
        print(f"{name:<12} same {cos[same].mean():.3f}  different {cos[~same].mean():.3f}  "
              f"cosine at FAR {args.far:g}: {threshold:.3f}  TAR there "
              f"{accept_rate(cos[same], threshold):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
