"""Quick frontier of protection against looks, for developing the attack (not the headline:
that is `lowkey eval`). For each attack variant and strength, protects one photo per identity
of faces-dev and prints, per variant, what a person sees on the face region (ColorVideoVDP,
FLIP, SSIM: mean and worst) against what recognisers that were NOT attacked still see: dlib's
distance between the original and the protected face (over 0.6: no longer the same person) and
the cosine of a registry model left out of the attack (``--held-out``).

    .venv/bin/python bench/frontier.py --variants paper,ours --strengths 10,30,50 --photos 6

Variants are attack settings (see ``VARIANTS``); the attacked models are the default ensemble
less ``--held-out``. Figures go to ``--out`` as JSON lines, one per (variant, strength, photo).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces-dev"

#: name -> AttackSettings fields over the paper's hyper-parameters; "floor": True adds the
#: default quality floor (lowkey.quality_floor.QualityFloor()).
VARIANTS: dict[str, dict] = {
    "paper": {},
    "luma": {"luminance_only": True},
    "visibility": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                   "feather": 0.1},
    "boosted": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                "feather": 0.1, "momentum": 0.9, "gradient_blur": 1.0, "jitter": 0.05},
    "ti-only": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                "feather": 0.1, "gradient_blur": 1.0},
    "di-only": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                "feather": 0.1, "jitter": 0.05},
    "paper+floor": {"floor": True},
    "sharp": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
              "feather": 0.1, "momentum": 0.9, "jitter": 0.05},
    "sharp-small+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                          "feather": 0.1, "momentum": 0.9, "jitter": 0.05, "epsilon": 0.03,
                          "step_size": 0.003, "floor": True},
    "highpass-small+floor": {"luminance_only": True, "budget": "visibility",
                             "budget_low": 0.2, "feather": 0.1, "momentum": 0.9,
                             "jitter": 0.05, "highpass": 1.5, "epsilon": 0.03,
                             "step_size": 0.003, "floor": True},
    "small+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                    "feather": 0.1, "momentum": 0.9, "gradient_blur": 1.0, "jitter": 0.05,
                    "epsilon": 0.03, "step_size": 0.003, "floor": True},
    "boosted+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                      "feather": 0.1, "momentum": 0.9, "gradient_blur": 1.0, "jitter": 0.05,
                      "floor": True},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="paper,boosted")
    p.add_argument("--strengths", default="10,30,50")
    p.add_argument("--photos", type=int, default=6, help="identities (one photo each)")
    p.add_argument("--held-out", default="sface", help="registry model left out of the attack")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--max-side", type=int, default=1024,
                   help="photos are downscaled to this long side first (0: as they are)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "frontier.jsonl")
    args = p.parse_args()

    from lowkey.attack import LowKeyAttack
    from lowkey.image_io import load_photo
    from lowkey.measure import PhotoMeasurer, PhotoReport
    from lowkey.models.store import load_recognizer
    from lowkey.protect import PRESETS, Protector
    from lowkey.quality_floor import QualityFloor

    people = sorted(d for d in args.data.iterdir() if d.is_dir())[: args.photos]
    photos = [(d.name, _downscaled(load_photo(sorted(d.glob("*.jpg"))[0]), args.max_side))
              for d in people]
    models = [m for m in PRESETS["default"].models if m != args.held_out]
    protector = Protector(preset="default", models=models)
    held_out = PhotoMeasurer(protector.detector, [load_recognizer(args.held_out,
                                                                  protector.device)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = []
    with args.out.open("a") as log:
        for variant in args.variants.split(","):
            for strength in [int(v) for v in args.strengths.split(",")]:
                fields = dict(VARIANTS[variant])
                protector.quality_floor = QualityFloor() if fields.pop("floor", False) else None
                settings = replace(PRESETS["paper"].settings(strength), **fields)
                protector.settings = settings
                protector.attack = LowKeyAttack(protector.objective, settings)
                rows = []
                for name, photo in photos:
                    start = time.perf_counter()
                    encoded, report = protector.protect_photo(photo)
                    if encoded is None:
                        continue
                    check = held_out.measure(photo, load_photo(encoded),
                                             PhotoReport(name, "protected"))
                    face, other = report.faces[0], check.faces[0]
                    row = {"variant": variant, "strength": strength, "photo": name,
                           "jod": face.jod, "flip": face.flip, "ssim": face.ssim,
                           "dlib": face.dlib_distance, "held_out": args.held_out,
                           "held_out_cosine": other.cosine.get(args.held_out),
                           "white_box": face.cosine, "change_kept": report.change_kept,
                           "seconds": round(time.perf_counter() - start, 1)}
                    rows.append(row)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                summary.append(_summarise(variant, strength, rows))
                print(json.dumps(summary[-1]), flush=True)
    print(f"\n{'variant':10} {'str':>3} {'JOD mean/min':>13} {'FLIP mean/max':>14} "
          f"{'SSIM mean/min':>14} {'dlib>0.6':>8} {'dlib':>6} {args.held_out + ' cos':>10} "
          f"{'s':>5}")
    for s in summary:
        print(f"{s['variant']:10} {s['strength']:>3} {s['jod_mean']:6.2f}/{s['jod_min']:<6.2f} "
              f"{s['flip_mean']:6.3f}/{s['flip_max']:<7.3f} {s['ssim_mean']:6.3f}/"
              f"{s['ssim_min']:<7.3f} {s['dlib_over']:>8} {s['dlib_mean']:6.3f} "
              f"{s['held_out_cosine']:10.3f} {s['seconds']:5.1f}")
    return 0


def _downscaled(photo, max_side: int):
    """``photo`` with its long side brought down to ``max_side`` (area interpolation)."""
    import torch.nn.functional as F

    width, height = photo.size
    scale = max_side / max(width, height) if max_side else 1.0
    if scale >= 1:
        return photo
    size = (round(height * scale), round(width * scale))
    pixels = F.interpolate(photo.pixels[None], size=size, mode="area")[0]
    pixels = (pixels * 255).round() / 255
    return replace(photo, pixels=pixels, alpha=None, source=None, exif=None)


def _summarise(variant: str, strength: int, rows: list[dict]) -> dict:
    def values(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    dlib = values("dlib")
    return {"variant": variant, "strength": strength, "photos": len(rows),
            "jod_mean": statistics.mean(values("jod")), "jod_min": min(values("jod")),
            "flip_mean": statistics.mean(values("flip")), "flip_max": max(values("flip")),
            "ssim_mean": statistics.mean(values("ssim")), "ssim_min": min(values("ssim")),
            "dlib_over": f"{sum(d > 0.6 for d in dlib)}/{len(dlib)}",
            "dlib_mean": statistics.mean(dlib) if dlib else float("nan"),
            "held_out_cosine": statistics.mean(values("held_out_cosine") or [float("nan")]),
            "change_kept": statistics.mean(min(r["change_kept"]) for r in rows)
            if rows and rows[0].get("change_kept") else None,
            "seconds": statistics.mean(values("seconds"))}


if __name__ == "__main__":
    raise SystemExit(main())
