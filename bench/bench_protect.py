"""Seconds per photo and peak memory of ``Protector.protect_photo`` for each preset.

Each preset runs in its own subprocess, so its peak memory is its own. See bench/README.md.

    .venv/bin/python bench/bench_protect.py --presets default,fast --out bench/out/cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces-dev"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="paper,default,fast", help="comma-separated preset names")
    p.add_argument("--photos", type=int, default=None, help="first N photos (sorted); default all")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of personNN/*.jpg")
    p.add_argument("--strength", type=int, default=50, help="attack strength (50 = the paper)")
    p.add_argument("--device", default=None, help="torch device; default cuda when present")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    p.add_argument("--synthetic-24mp", action="store_true",
                   help="also time one photo upscaled to 6000x4000 in memory")
    p.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one preset
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def photo_paths(args) -> list[Path]:
    paths = sorted(args.data.glob("person*/*.jpg"))
    return paths[: args.photos] if args.photos else paths


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


# ------------------------------------------------------------------------------------------
# Worker: one preset, in its own process


def run_worker(args) -> dict:
    import torch
    import torch.nn.functional as F

    from lowkey.errors import WeightsError
    from lowkey.image_io import load_photo
    from lowkey.protect import Protector

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda") if args.device else torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def gpu_mb(fn) -> float | None:
        return round(fn() / 2**20, 1) if cuda else None

    t0 = time.perf_counter()
    try:
        protector = Protector(preset=args.worker, strength=args.strength, device=args.device)
    except WeightsError as exc:
        return {"preset": args.worker, "skipped": f"weights not available: {exc}"}
    sync()
    info = protector.describe()
    result = {
        "preset": args.worker, "load_s": round(time.perf_counter() - t0, 2), "settings": info,
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": str(protector.device),
            "device_name": torch.cuda.get_device_name(protector.device) if cuda else cpu_model(),
        },
        "rss_after_load_mb": round(peak_rss_mb(), 1),
        "gpu_after_load_mb": gpu_mb(torch.cuda.memory_allocated) if cuda else None,
        "photos": [],
    }
    print(f"[{args.worker}] {', '.join(info['models'])} on {info['device']}, penalty "
          f"{info['penalty']}, judge {info['judge']}, {info['settings']['steps']} steps; "
          f"loaded in {result['load_s']} s", flush=True)

    # Time detection and the attack by wrapping the two calls protect_photo makes.
    split = {}

    def timed(fn, key):
        def wrapper(*a, **kw):
            sync()
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sync()
                split[key] = split.get(key, 0.0) + time.perf_counter() - start
        return wrapper

    protector.find_faces = timed(protector.find_faces, "detect_s")
    protector.attack.run = timed(protector.attack.run, "attack_s")

    def bench_one(name: str, load) -> dict:
        split.clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        photo = load()
        decode_s = time.perf_counter() - start
        steps = []
        try:
            _, report = protector.protect_photo(photo, on_step=lambda s, n, t: steps.append(s))
        except Exception as exc:  # record and go on: a benchmark of 61 photos should finish
            return {"name": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        sync()
        total = time.perf_counter() - start
        w, h = photo.size
        cos: dict[str, list[float]] = {}
        for face in report.faces:
            for model, c in face.cosine.items():
                if c is not None:
                    cos.setdefault(model, []).append(c)
        dlib = [f.dlib_distance for f in report.faces if f.dlib_distance is not None]
        row = {
            "name": name, "status": report.status, "size": [w, h], "mp": round(w * h / 1e6, 2),
            "faces": len(report.faces), "total_s": round(total, 3), "decode_s": round(decode_s, 3),
            "detect_s": round(split.get("detect_s", 0.0), 3),
            "attack_s": round(split.get("attack_s", 0.0), 3),
            "encode_measure_s": round(report.seconds - sum(split.values()), 3),
            "steps": len(steps),
            "steps_per_s": round(len(steps) / split["attack_s"], 3) if steps else None,
            "cosine": {m: round(statistics.mean(v), 4) for m, v in cos.items()},
            "dlib_distance": round(statistics.mean(dlib), 4) if dlib else None,
            "dlib_lost": sum(f.dlib_found_after is False for f in report.faces),
            "ssim": report.ssim, "psnr": report.psnr, "linf": report.linf,
            "peak_rss_mb": round(peak_rss_mb(), 1),  # of the process so far (never goes down)
            "peak_gpu_mb": gpu_mb(torch.cuda.max_memory_allocated),  # of this photo
            "peak_gpu_reserved_mb": gpu_mb(torch.cuda.max_memory_reserved),
        }
        cos_text = " ".join(f"{m}={c:.3f}" for m, c in row["cosine"].items())
        gpu = f" gpu {row['peak_gpu_mb']:.0f} MB" if cuda else ""
        print(f"[{args.worker}] {name} {w}x{h} faces={row['faces']} {total:.2f}s (detect "
              f"{row['detect_s']:.2f} attack {row['attack_s']:.2f} encode+measure "
              f"{row['encode_measure_s']:.2f}) cos {cos_text or '-'} dlib "
              f"{row['dlib_distance']} rss {row['peak_rss_mb']:.0f} MB{gpu}", flush=True)
        return row

    for path in photo_paths(args):
        name = str(path.relative_to(args.data)) if path.is_relative_to(args.data) else str(path)
        result["photos"].append(bench_one(name, lambda p=path: load_photo(p)))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result["peak_gpu_mb"] = max((r.get("peak_gpu_mb") or 0 for r in result["photos"]),
                                default=None) if cuda else None

    if args.synthetic_24mp:
        with_face = [r for r in result["photos"] if r.get("faces")]
        base = args.data / with_face[0]["name"] if with_face else photo_paths(args)[0]

        def upscaled():
            photo = load_photo(base)
            size = (4000, 6000) if photo.size[0] >= photo.size[1] else (6000, 4000)  # (H, W)
            pixels = F.interpolate(photo.pixels[None], size=size, mode="bilinear",
                                   align_corners=False)[0].clamp_(0, 1)
            return dataclasses.replace(photo, pixels=pixels, alpha=None, source=None)

        result["synthetic_24mp"] = bench_one(f"24MP from {base.name}", upscaled)
    return result


# ------------------------------------------------------------------------------------------
# Parent: one subprocess per preset, then the tables


def summarise(res: dict) -> dict:
    rows = [r for r in res["photos"] if r["status"] == "protected"]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows) if rows else float("nan")

    models = res["settings"]["models"]
    cos = {m: [r["cosine"][m] for r in rows if m in r["cosine"]] for m in models}
    dlib = [r["dlib_distance"] for r in rows if r["dlib_distance"] is not None]
    return {
        "photos": len(res["photos"]), "protected": len(rows),
        "no_face": sum(r["status"] == "no-face" for r in res["photos"]),
        "failed": sum(r["status"] == "failed" for r in res["photos"]),
        "median_s": med("total_s"),
        "mean_s": statistics.mean(r["total_s"] for r in rows) if rows else float("nan"),
        "median_s_per_mp": statistics.median(r["total_s"] / r["mp"] for r in rows) if rows
        else float("nan"),
        "median_detect_s": med("detect_s"), "median_attack_s": med("attack_s"),
        "median_encode_measure_s": med("encode_measure_s"), "median_steps_per_s": med("steps_per_s"),
        "mean_cosine": {m: round(statistics.mean(v), 4) for m, v in cos.items() if v},
        "mean_dlib_distance": round(statistics.mean(dlib), 4) if dlib else None,
        "dlib_over_0.6": f"{sum(d > 0.6 for d in dlib)}/{len(dlib)}",
    }


def _row(label: str, load: str, ok: str, med: float, mean: float | None, per_mp: float,
         detect: float, attack: float, enc: float, sps: float | None, rss: float,
         gpu: float | None) -> str:
    mean_text = f"{mean:7.2f}" if mean is not None else " " * 7
    return (f"{label:8} {load:>6} {ok:>6} {med:8.2f} {mean_text} {per_mp:6.2f} {detect:6.2f} "
            f"{attack:6.2f} {enc:8.2f} {sps or 0:6.2f} {rss:7.0f} {gpu or 0:7.0f}")


def print_tables(results: list[dict], strength: int) -> None:
    done = [r for r in results if "photos" in r]
    m = done[0]["machine"] if done else {"cpu": cpu_model(), "cores": os.cpu_count()}
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores"
          + (f" ({m['torch_threads']} torch threads), torch {m['torch']}, python {m['python']}, "
             f"device {m['device']} ({m['device_name']})" if done else ""))
    print(f"strength {strength}; seconds per photo over protected photos (no-face ones excluded), "
          f"split into the medians of each part; RSS = process peak, GPU = max allocated\n")
    head = (f"{'preset':8} {'load s':>6} {'ok/n':>6} {'median s':>8} {'mean s':>7} {'s/MP':>6} "
            f"{'detect':>6} {'attack':>6} {'enc+meas':>8} {'step/s':>6} {'RSS MB':>7} {'GPU MB':>7}")
    print(head + "\n" + "-" * len(head))
    for r in results:
        if "photos" not in r:
            why = (r.get("skipped") or r.get("error")).splitlines()[0]
            print(f"{r['preset']:8} skipped: {why}")
            continue
        s = r["summary"]
        print(_row(r["preset"], f"{r['load_s']:.1f}", f"{s['protected']}/{s['photos']}",
                   s["median_s"], s["mean_s"], s["median_s_per_mp"], s["median_detect_s"],
                   s["median_attack_s"], s["median_encode_measure_s"], s["median_steps_per_s"],
                   r["peak_rss_mb"], r["peak_gpu_mb"]))
        syn = r.get("synthetic_24mp")
        if syn and syn["status"] == "failed":
            print(f"{'  24MP':8} failed: {syn['error']}")
        elif syn:
            print(_row("  24MP", "", syn["status"][:6], syn["total_s"], None,
                       syn["total_s"] / syn["mp"], syn["detect_s"], syn["attack_s"],
                       syn["encode_measure_s"], syn["steps_per_s"], syn["peak_rss_mb"],
                       syn["peak_gpu_mb"]))
    print("\nprotection (means over protected photos): cosine original vs protected per model "
          "(lower = better); dlib distance (> 0.6: dlib no longer matches)")
    for r in done:
        s = r["summary"]
        cos = "  ".join(f"{m} {c:.3f}" for m, c in s["mean_cosine"].items())
        print(f"  {r['preset']:8} {cos or '-'}  dlib {s['mean_dlib_distance']} "
              f"(over 0.6: {s['dlib_over_0.6']})")


def main() -> int:
    args = parse_args()
    if args.worker:
        args.result_file.write_text(json.dumps(run_worker(args), indent=2))
        return 0
    if not photo_paths(args):
        print(f"no photos found under {args.data} (expected personNN/*.jpg)", file=sys.stderr)
        return 2
    results = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, __file__, "--worker", preset, "--result-file", str(out),
                   "--data", str(args.data), "--strength", str(args.strength)]
            cmd += ["--photos", str(args.photos)] if args.photos else []
            cmd += ["--device", args.device] if args.device else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            cmd += ["--synthetic-24mp"] if args.synthetic_24mp else []
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            res = json.loads(out.read_text()) if rc == 0 and out.exists() else \
                {"preset": preset, "error": f"worker exited with status {rc}"}
        if "photos" not in res:
            print(f"[{preset}] skipped: {res.get('skipped') or res.get('error')}", flush=True)
        if "photos" in res:
            res["summary"] = summarise(res)
        results.append(res)
    print_tables(results, args.strength)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v
                                                 for k, v in vars(args).items()},
                                        "presets": results}, indent=2))
        print(f"\nwrote {args.out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
