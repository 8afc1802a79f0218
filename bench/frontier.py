"""Frontier of protection against looks: for each attack variant and strength, protects one
photo per identity of faces-dev (downscaled to 1024 px) and prints what a person sees on the
face region (ColorVideoVDP, FLIP, SSIM: mean and worst) against what recognisers that were NOT
attacked still see: dlib, and a registry model left out of the attack (``--held-out``, SFace).

Recognition, per protected photo: each clean other photo of the same identity is a probe, the
gallery is the protected photo plus one clean photo of every other identity; rank-1 = the probe's
nearest gallery photo is the protected one; TAR@FAR=1% = the probe and the protected photo are
closer than the threshold that accepts 1% of the clean impostor pairs of faces-dev. The same on
the clean photo gives the baseline. Also dlib's distance between original and protected face and
the held-out model's cosine. Figures go to ``--out`` as JSON lines, one per (variant, strength,
photo); ``--plot FILE`` draws the frontier from that file (and runs nothing else).

    .venv/bin/python bench/frontier.py --variants subtle,default,sharp --strengths 10,20,50
    .venv/bin/python bench/frontier.py --plot docs/img/frontier-2026-11.png

Variants are preset names (their attack settings and quality floor) or the development settings
of ``VARIANTS``; the attacked models are the default ensemble less ``--held-out``. The headline
figures are still ``lowkey eval``'s; this is the cheaper sweep behind the choice of preset.
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
    "sharp-small": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                    "feather": 0.1, "momentum": 0.9, "jitter": 0.05, "epsilon": 0.03,
                    "step_size": 0.003},
    "eps18+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                    "feather": 0.1, "momentum": 0.9, "jitter": 0.05, "epsilon": 0.018,
                    "step_size": 0.002, "floor": True},
    "eps22+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                    "feather": 0.1, "momentum": 0.9, "jitter": 0.05, "epsilon": 0.022,
                    "step_size": 0.002, "floor": True},
    "small+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                    "feather": 0.1, "momentum": 0.9, "gradient_blur": 1.0, "jitter": 0.05,
                    "epsilon": 0.03, "step_size": 0.003, "floor": True},
    "boosted+floor": {"luminance_only": True, "budget": "visibility", "budget_low": 0.2,
                      "feather": 0.1, "momentum": 0.9, "gradient_blur": 1.0, "jitter": 0.05,
                      "floor": True},
}


#: names in the plot's legend
LABELS = {"default": "default (paper-style)", "sharp": "luma, texture budget, momentum, jitter"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="subtle,default,sharp",
                   help="comma-separated preset names and/or keys of VARIANTS, each at every "
                        "--strengths value or, written NAME:S, at strength S only")
    p.add_argument("--strengths", default="10,20,50")
    p.add_argument("--photos", type=int, default=13, help="identities (one photo each)")
    p.add_argument("--held-out", default="sface", help="registry model left out of the attack")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--max-side", type=int, default=1024,
                   help="photos are downscaled to this long side first (0: as they are)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "frontier.jsonl")
    p.add_argument("--plot", type=Path, help="draw the frontier of --out into this PNG and stop")
    args = p.parse_args()
    if args.plot:
        plot(args.out, args.plot)
        return 0

    from lowkey.attack import LowKeyAttack
    from lowkey.dlib_judge import DlibJudge
    from lowkey.image_decode import load_photo
    from lowkey.measure import PhotoMeasurer, PhotoReport
    from lowkey.models.store import load_recognizer
    from lowkey.presets import PRESETS
    from lowkey.protect import Protector
    from lowkey.quality_floor import QualityFloor

    people = sorted(d for d in args.data.iterdir() if d.is_dir())
    clean = {d.name: [_downscaled(load_photo(f), args.max_side) for f in sorted(d.glob("*.jpg"))]
             for d in people}
    models = [m for m in PRESETS["default"].models if m != args.held_out]
    protector = Protector(preset="default", models=models)
    held_out_model = load_recognizer(args.held_out, protector.device)
    held_out = PhotoMeasurer(protector.detector, [held_out_model])
    recognise = Recognition(clean, DlibJudge(), protector.detector, held_out_model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = [_summarise("clean", 0, recognise.clean_rows(list(clean)[: args.photos]))]
    print(json.dumps(summary[-1]), flush=True)
    with args.out.open("a") as log:
        for item in args.variants.split(","):
            variant, _, only = item.partition(":")
            strengths = [int(only)] if only else [int(v) for v in args.strengths.split(",")]
            for strength in strengths:
                if variant in PRESETS:
                    preset = PRESETS[variant]
                    settings, floor = preset.settings(strength), preset.quality_floor
                else:
                    fields = dict(VARIANTS[variant])
                    floor = QualityFloor() if fields.pop("floor", False) else None
                    settings = replace(PRESETS["paper"].settings(strength), **fields)
                protector.settings, protector.quality_floor = settings, floor
                protector.attack = LowKeyAttack(protector.objective, settings)
                rows = []
                for name in list(clean)[: args.photos]:
                    photo = clean[name][0]
                    start = time.perf_counter()
                    encoded, report = protector.protect_photo(photo)
                    if encoded is None:
                        continue
                    protected = load_photo(encoded)
                    check = held_out.measure(photo, protected, PhotoReport(name, "protected"))
                    face, other = report.faces[0], check.faces[0]
                    row = {"variant": variant, "strength": strength, "photo": name,
                           "jod": face.jod, "flip": face.flip, "ssim": face.ssim,
                           "dlib": face.dlib_distance, "held_out": args.held_out,
                           "held_out_cosine": other.cosine.get(args.held_out),
                           "white_box": face.cosine, "change_kept": report.change_kept,
                           "seconds": round(time.perf_counter() - start, 1),
                           **recognise.trials(name, protected.pixels)}
                    rows.append(row)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                summary.append(_summarise(variant, strength, rows))
                print(json.dumps(summary[-1]), flush=True)
    print(f"\n{'variant':18} {'str':>3} {'JOD mean/min':>13} {'FLIP mean/max':>14} "
          f"{'SSIM mean/min':>14} {'dlib r1':>8} {'dlib TAR':>8} {args.held_out + ' r1':>8} "
          f"{args.held_out + ' TAR':>9} {'s':>5}")
    for s in summary:
        print(f"{s['variant']:18} {s['strength']:>3} {s['jod_mean']:6.2f}/{s['jod_min']:<6.2f} "
              f"{s['flip_mean']:6.3f}/{s['flip_max']:<7.3f} {s['ssim_mean']:6.3f}/"
              f"{s['ssim_min']:<7.3f} {s['dlib_rank1']:>8.1%} {s['dlib_tar']:>8.1%} "
              f"{s['held_rank1']:>8.1%} {s['held_tar']:>9.1%} {s['seconds']:5.1f}")
    return 0


class Recognition:
    """Rank-1 and TAR@FAR=1% trials of one protected photo per identity against clean photos,
    for dlib and a held-out registry model (see the module docstring)."""

    FAR = 0.01

    def __init__(self, clean: dict, judge, detector, model) -> None:
        import numpy as np

        from lowkey.embedding import embed_faces

        self.judge, self.detector, self.model = judge, detector, model
        self._embed_faces = embed_faces
        #: judge -> identity -> one vector per clean photo (None: no face found)
        self.vectors = {"dlib": {}, "held": {}}
        for name, photos in clean.items():
            self.vectors["dlib"][name] = [self._dlib(ph.pixels) for ph in photos]
            self.vectors["held"][name] = [self._held(ph.pixels) for ph in photos]
        self.thresholds = {}
        for judge_name, by_name in self.vectors.items():
            names = list(by_name)
            impostors = [self.distance(a, b) for i, x in enumerate(names) for y in names[i + 1:]
                         for a in by_name[x] for b in by_name[y]
                         if a is not None and b is not None]
            self.thresholds[judge_name] = float(np.quantile(impostors, self.FAR))

    @staticmethod
    def distance(a, b) -> float:
        """Euclidean distance of two unit-length (held-out) or dlib vectors."""
        import numpy as np

        return float(np.linalg.norm(a - b))

    def _dlib(self, pixels):
        faces = self.judge.faces(pixels)
        if not faces:
            return None
        return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).descriptor

    def _held(self, pixels):
        import torch

        faces = self.detector.detect(pixels)
        if not faces:
            return None
        face = max(faces, key=lambda f: f.area)
        with torch.no_grad():
            vector = self._embed_faces(pixels, [face], self.model)[0]
        return torch.nn.functional.normalize(vector, dim=0).cpu().numpy()

    def clean_rows(self, names: list[str]) -> list[dict]:
        return [{"photo": n, **self._trials(n, {j: v[n][0] for j, v in self.vectors.items()})}
                for n in names]

    def trials(self, name: str, protected_pixels) -> dict:
        """Counts for the protected version of ``name``'s first photo."""
        return self._trials(name, {"dlib": self._dlib(protected_pixels),
                                   "held": self._held(protected_pixels)})

    def _trials(self, name: str, protected: dict) -> dict:
        out = {}
        for judge_name, vector in protected.items():
            by_name = self.vectors[judge_name]
            probes = [v for v in by_name[name][1:] if v is not None]
            others = [v[0] for n, v in by_name.items() if n != name and v[0] is not None]
            rank1 = tar = 0
            if vector is not None:
                for probe in probes:
                    own = self.distance(probe, vector)
                    rank1 += all(own < self.distance(probe, o) for o in others)
                    tar += own < self.thresholds[judge_name]
            out[f"{judge_name}_trials"] = len(probes)
            out[f"{judge_name}_rank1_hits"] = rank1
            out[f"{judge_name}_tar_hits"] = tar
            out[f"{judge_name}_no_face"] = vector is None
        return out


def plot(rows_file: Path, png: Path) -> None:
    """Black-box rank-1 and TAR@FAR=1% (dlib, held-out model) against face-region JOD and SSIM,
    one line per variant, each point a strength (the last run of each variant and strength)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest: dict[tuple[str, int, str], dict] = {}
    for line in rows_file.read_text().splitlines():
        row = json.loads(line)
        if "dlib_trials" in row:
            latest[(row["variant"], row["strength"], row["photo"])] = row
    groups: dict[tuple[str, int], list[dict]] = {}
    for (variant, strength, _), row in latest.items():
        groups.setdefault((variant, strength), []).append(row)
    points = [_summarise(v, s, rows) for (v, s), rows in sorted(groups.items())]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), sharey="row")
    for row_i, (key, label) in enumerate((("rank1", "rank-1"), ("tar", "TAR @ FAR 1%"))):
        for col_i, (quality, qlabel) in enumerate((("jod_mean", "face-region ColorVideoVDP (JOD)"),
                                                   ("ssim_mean", "face-region SSIM"))):
            ax = axes[row_i][col_i]
            for colour, variant in enumerate(dict.fromkeys(pt["variant"] for pt in points)):
                series = sorted((pt for pt in points if pt["variant"] == variant),
                                key=lambda pt: pt["strength"])
                for judge, style, who in (("dlib", "-o", "dlib"), ("held", "--s", "held-out")):
                    xs = [pt[quality] for pt in series]
                    ys = [pt[f"{judge}_{key}"] for pt in series]
                    name = LABELS.get(variant, variant)
                    ax.plot(xs, ys, style, color=f"C{colour}", label=f"{name} ({who})")
                    for pt, x, y in zip(series, xs, ys, strict=True):
                        ax.annotate(str(pt["strength"]), (x, y), fontsize=7,
                                    textcoords="offset points", xytext=(3, 3))
            ax.axvline(9.5 if quality == "jod_mean" else 0.95, color="grey", lw=0.8, ls=":")
            ax.set_xlabel(qlabel)
            ax.set_ylabel(f"black-box {label} after protection")
            ax.set_ylim(-0.05, 1.05)
            ax.invert_xaxis()
    axes[0][0].legend(fontsize=7)
    fig.suptitle("faces-dev, one protected photo per identity (1024 px), SFace held out; "
                 "numbers: strength; dotted: quality target")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


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

    def rate(judge: str, what: str) -> float:
        trials = sum(r[f"{judge}_trials"] for r in rows)
        return sum(r[f"{judge}_{what}_hits"] for r in rows) / trials if trials else float("nan")

    def mean(key: str, pick=statistics.mean) -> float:
        return pick(values(key)) if values(key) else float("nan")

    return {"variant": variant, "strength": strength, "photos": len(rows),
            "jod_mean": mean("jod"), "jod_min": mean("jod", min),
            "flip_mean": mean("flip"), "flip_max": mean("flip", max),
            "ssim_mean": mean("ssim"), "ssim_min": mean("ssim", min),
            "dlib_rank1": rate("dlib", "rank1"), "dlib_tar": rate("dlib", "tar"),
            "held_rank1": rate("held", "rank1"), "held_tar": rate("held", "tar"),
            "trials": sum(r["dlib_trials"] for r in rows),
            "dlib_mean": mean("dlib"), "held_out_cosine": mean("held_out_cosine"),
            "seconds": mean("seconds")}


if __name__ == "__main__":
    raise SystemExit(main())
