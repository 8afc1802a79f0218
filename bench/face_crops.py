"""Before/after face crops of the public-domain astronaut at several strengths, with the
face-region figures of each (what docs/results.md shows). Regenerate with:

    .venv/bin/python bench/face_crops.py --preset default --strengths 10,30,50 --out docs/img

Writes ``<out>/astronaut-face-<preset>.png`` (the original's face region, then the protected
one at each strength, shown at 2x with nearest-neighbour so the filter's texture is visible)
and prints a Markdown table of the figures. Only the astronaut (NASA, public domain) is used:
photos of other people never go into the repository.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lowkey.image_decode import load_photo
from lowkey.protect import Protector
from lowkey.sample import sample_photo, sample_png


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--strengths", default="10,30,50", help="comma-separated --strength values")
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    args = p.parse_args()
    photo = load_photo(sample_png())
    crops, rows = [], []
    region = None
    for strength in [int(s) for s in args.strengths.split(",")]:
        protector = Protector(preset=args.preset, strength=strength)
        encoded, report = protector.protect_photo(photo)
        face = report.faces[0]
        if region is None:
            region = face.region
            x0, y0, x1, y1 = region
            crops.append(("original", sample_photo()[y0:y1, x0:x1]))
        x0, y0, x1, y1 = region
        out = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
        crops.append((f"strength {strength}", out[y0:y1, x0:x1]))
        rows.append({"strength": strength, "steps": report.steps, "jod": face.jod,
                     "flip": face.flip, "ssim": face.ssim, "psnr": face.psnr,
                     "whole_ssim": round(report.ssim, 4), "dlib": face.dlib_distance,
                     "cosine": face.cosine, "seconds": round(report.seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    scale, pad, caption = 2, 8, 18
    h, w = crops[0][1].shape[:2]
    sheet = Image.new("RGB", (len(crops) * (w * scale + pad) + pad, h * scale + caption + pad),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, crop) in enumerate(crops):
        left = pad + i * (w * scale + pad)
        sheet.paste(Image.fromarray(crop).resize((w * scale, h * scale), Image.NEAREST),
                    (left, caption))
        draw.text((left, 3), label, fill="black")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"astronaut-face-{args.preset}.png"
    sheet.save(target, optimize=True)
    print(f"\nwrote {target} (face region {region}, shown at {scale}x)\n")
    print("| strength | steps | ColorVideoVDP (JOD) | FLIP | SSIM | PSNR (dB) | whole-photo SSIM "
          "| dlib distance | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['strength']} | {r['steps']} | {r['jod']:.2f} | {r['flip']:.3f} | "
              f"{r['ssim']:.3f} | {r['psnr']:.1f} | {r['whole_ssim']:.3f} | "
              f"{r['dlib'] if r['dlib'] is not None else 'n/a'} | {r['seconds']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
