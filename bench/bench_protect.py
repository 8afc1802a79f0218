"""Seconds per photo and peak memory of ``Protector.protect_photo`` for each preset.

Each preset runs in its own subprocess, so its peak memory is its own. See bench/README.md.

    .venv/bin/python bench/bench_protect.py --presets default,subtle --out bench/out/cpu.json
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
# Table columns: (title, key of a photo's row); the preset line shows medians over its photos.
COLUMNS = [("s/photo", "total_s"), ("s/MP", "s_per_mp"), ("decode", "decode_s"),
           ("detect", "detect_s"), ("attack", "attack_s"), ("enc+meas", "encode_measure_s"),
           ("step/s", "steps_per_s")]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="paper,default,subtle", help="comma-separated preset names")
    p.add_argument("--photos", type=int, default=None, help="first N photos (sorted); default all")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of personNN/*.jpg")
    p.add_argument("--strength", type=int, default=None,
                   help="attack steps (default: each preset's own)")
    p.add_argument("--device", default=None, help="torch device; default cuda when present")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    p.add_argument("--synthetic-24mp", action="store_true",
                   help="also time one photo upscaled to 6000x4000 in memory")
    p.add_argument("--megapixels", default=None,
                   help="LO,HI: only photos of LO to HI megapixels (e.g. 0.7,1.5)")
    p.add_argument("--baseline", default=None,
                   help="a git commit: also run its code, preset by preset, back to back with "
                        "this tree's, and print the ratios")
    p.add_argument("--profile-steps", type=int, default=0,
                   help="CUDA: profile this many attack steps of the first photo and print the "
                        "share of a step's wall time spent in GPU kernels")
    p.add_argument("--batch", type=int, default=0,
                   help="also time the attack of the first N photos with a face one by one and "
                        "as one batch (LowKeyAttack.run_many), and print both per photo")
    p.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run this one preset
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def photo_paths(args) -> list[Path]:
    paths = sorted(args.data.glob("person*/*.jpg"))
    if args.megapixels:
        from PIL import Image

        low, high = (float(v) for v in args.megapixels.split(","))
        sizes = {}
        for path in paths:
            with Image.open(path) as image:
                sizes[path] = image.width * image.height / 1e6
        paths = [p for p in paths if low <= sizes[p] <= high]
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
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def run_worker(args) -> dict:
    """Load one preset, protect every photo, and return the figures."""
    import torch
    import torch.nn.functional as F

    try:
        from lowkey.device import default_device
    except ImportError:  # a --baseline commit from before lowkey.device
        from lowkey.pool import default_device
    from lowkey.errors import WeightsError
    try:
        from lowkey.image_decode import load_photo
    except ImportError:  # a --baseline commit from before image_io was split
        from lowkey.image_io import load_photo
    from lowkey.protect import Protector

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    dev = default_device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def gpu_mb(fn) -> float | None:
        return round(fn(dev) / 2**20, 1) if cuda else None

    start = time.perf_counter()
    try:
        protector = Protector(preset=args.worker, strength=args.strength, device=args.device)
    except WeightsError as exc:
        return {"preset": args.worker, "skipped": f"weights not available: {exc}"}
    sync()
    info = protector.describe()
    result = {
        "preset": args.worker, "load_s": round(time.perf_counter() - start, 2), "settings": info,
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": str(protector.device),
            "device_name": torch.cuda.get_device_name(dev) if cuda else cpu_model(),
        },
        "rss_after_load_mb": peak_rss_mb(),
        "gpu_after_load_mb": gpu_mb(torch.cuda.memory_allocated),
        "photos": [],
    }
    print(f"[{args.worker}] {', '.join(info['models'])} on {info['device']}, penalty "
          f"{info['penalty']}, judge {info['judge']}, {info['settings']['steps']} steps; "
          f"loaded in {result['load_s']} s", flush=True)

    split, memory = {}, {}  # seconds in (and memory after) the two calls protect_photo makes

    def timed(fn, key):
        def wrapper(*a, **kw):
            sync()
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sync()
                split[key] = split.get(key, 0.0) + time.perf_counter() - t
                memory[f"rss_after_{key[:-2]}_mb"] = peak_rss_mb()  # peak so far
                memory[f"gpu_peak_by_{key[:-2]}_mb"] = gpu_mb(torch.cuda.max_memory_allocated)
        return wrapper

    protector.find_faces = timed(protector.find_faces, "detect_s")
    # run() calls run_many(), which every path reaches (one photo or a batch): time it there
    if hasattr(protector.attack, "run_many"):
        protector.attack.run_many = timed(protector.attack.run_many, "attack_s")
    else:  # a --baseline commit from before batching
        protector.attack.run = timed(protector.attack.run, "attack_s")

    def bench_one(name: str, load) -> dict:
        split.clear()
        memory.clear()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        t = time.perf_counter()
        photo = load()
        decode_s = time.perf_counter() - t
        steps = []
        try:
            _, report = protector.protect_photo(photo, on_step=lambda s, n, terms: steps.append(s))
        except Exception as exc:  # record it and go on: one bad photo should not end the run
            return {"name": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        sync()
        total = time.perf_counter() - t
        (w, h), mp = photo.size, photo.size[0] * photo.size[1] / 1e6
        cos = {m: [f.cosine[m] for f in report.faces if f.cosine.get(m) is not None]
               for m in info["models"]}
        dlib = [f.dlib_distance for f in report.faces if f.dlib_distance is not None]
        row = {
            "name": name, "status": report.status, "size": [w, h], "mp": round(mp, 2),
            "faces": len(report.faces), "total_s": round(total, 3),
            "s_per_mp": round(total / mp, 3), "decode_s": round(decode_s, 3),
            "detect_s": round(split.get("detect_s", 0.0), 3),
            "attack_s": round(split.get("attack_s", 0.0), 3),
            "encode_measure_s": round(report.seconds - sum(split.values()), 3),
            "steps": len(steps),
            "steps_per_s": round(len(steps) / split["attack_s"], 3) if steps else None,
            "cosine": {m: round(statistics.mean(v), 4) for m, v in cos.items() if v},
            "dlib_distance": round(statistics.mean(dlib), 4) if dlib else None,
            "dlib_lost": sum(f.dlib_found_after is False for f in report.faces),
            "face_jod": report.face_jod, "face_flip": report.face_flip,
            "face_ssim": report.face_ssim, "face_psnr": report.face_psnr, "change_kept": report.change_kept,
            "measure_s": round(report.measure_seconds or 0.0, 3),
            "ssim": report.ssim, "psnr": report.psnr, "linf": report.linf,
            "peak_rss_mb": peak_rss_mb(),  # of the process so far: it never goes down
            "peak_gpu_mb": gpu_mb(torch.cuda.max_memory_allocated),  # of this photo alone
            "peak_gpu_reserved_mb": gpu_mb(torch.cuda.max_memory_reserved), **memory,
        }
        cos_text = " ".join(f"{m} {c:.3f}" for m, c in row["cosine"].items())
        gpu = f" gpu {row['peak_gpu_mb']:.0f} MB" if cuda else ""
        print(f"[{args.worker}] {name} {w}x{h} faces={row['faces']} {total:.2f} s (detect "
              f"{row['detect_s']:.2f}, attack {row['attack_s']:.2f}, encode+measure "
              f"{row['encode_measure_s']:.2f}) face region JOD {row['face_jod']} FLIP "
              f"{row['face_flip']} SSIM {row['face_ssim']}; cosine {cos_text or '-'}, dlib "
              f"{row['dlib_distance']}, peak rss {row.get('rss_after_attack_mb', '-')} MB after "
              f"the attack, {row['peak_rss_mb']:.0f} MB in all{gpu}", flush=True)
        return row

    for path in photo_paths(args):
        result["photos"].append(bench_one(str(path.relative_to(args.data)),
                                          lambda p=path: load_photo(p)))
    result["peak_rss_mb"] = peak_rss_mb()
    result["loadavg_1min"] = [load_before, os.getloadavg()[0]]  # before, after the photos
    result["peak_gpu_mb"] = max((r.get("peak_gpu_mb") or 0 for r in result["photos"]),
                                default=0) if cuda else None

    if args.batch > 1:
        result["batch"] = time_batch(protector, args, [r for r in result["photos"]
                                                       if r.get("faces")], sync)
    if args.profile_steps and cuda:
        result["profile"] = profile_attack(protector, args, [r for r in result["photos"]
                                                             if r.get("faces")])
    if args.synthetic_24mp:  # last, so that the RSS peak above is the real photos' alone
        with_face = [r for r in result["photos"] if r.get("faces")]
        base = args.data / with_face[0]["name"] if with_face else photo_paths(args)[0]

        def upscaled():  # "decode" of this one is loading plus upscaling
            photo = load_photo(base)
            size = (4000, 6000) if photo.size[0] >= photo.size[1] else (6000, 4000)  # (H, W)
            pixels = F.interpolate(photo.pixels[None], size=size, mode="bilinear")[0].clamp_(0, 1)
            return dataclasses.replace(photo, pixels=pixels, alpha=None, source=None)

        result["synthetic_24mp"] = bench_one(f"24MP from {base.name}", upscaled)
    return result


def time_batch(protector, args, rows: list[dict], sync) -> dict | None:
    """Attack seconds per photo for the first ``--batch`` photos with a face: one by one, then
    all in one ``run_many`` (each after a warm-up run of the same work)."""
    try:
        from lowkey.image_decode import load_photo
    except ImportError:  # a --baseline commit from before image_io was split
        from lowkey.image_io import load_photo

    try:
        from lowkey.attack import PhotoTask
    except ImportError:  # a --baseline commit from before batching
        print(f"[{args.worker}] batch: this code cannot batch photos", flush=True)
        return None
    if len(rows) < args.batch:
        print(f"[{args.worker}] batch: only {len(rows)} photos with a face", flush=True)
        return None
    tasks = []
    for row in rows[: args.batch]:
        photo = load_photo(args.data / row["name"])
        tasks.append(PhotoTask(photo.pixels.to(protector.device), protector.find_faces(photo),
                               photo.grayscale))
    attack = protector.attack

    def timed(fn) -> float:
        fn()  # warm-up: kernels, caches, allocator
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    alone = timed(lambda: [attack.run_many([t]) for t in tasks])
    together = timed(lambda: attack.run_many(tasks))
    out = {"photos": args.batch, "steps": protector.settings.steps,
           "alone_s_per_photo": round(alone / args.batch, 3),
           "batched_s_per_photo": round(together / args.batch, 3),
           "ratio": round(together / alone, 3)}
    print(f"[{args.worker}] batch of {args.batch}: attack {out['alone_s_per_photo']} s a photo "
          f"one by one, {out['batched_s_per_photo']} s a photo batched (ratio "
          f"{out['ratio']})", flush=True)
    return out


def profile_attack(protector, args, rows: list[dict]) -> dict | None:
    """GPU kernel time against wall time over ``--profile-steps`` attack steps of the first
    photo with a face (after one unprofiled run of the same steps, to warm up)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from lowkey.attack import LowKeyAttack
    try:
        from lowkey.image_decode import load_photo
    except ImportError:  # a --baseline commit from before image_io was split
        from lowkey.image_io import load_photo

    if not rows:
        return None
    photo = load_photo(args.data / rows[0]["name"])
    faces = protector.find_faces(photo)
    attack = LowKeyAttack(protector.objective,
                          dataclasses.replace(protector.settings, steps=args.profile_steps))
    pixels = photo.pixels.to(protector.device)
    attack.run(pixels, faces)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        attack.run(pixels, faces)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernel_s = sum(e.device_time_total for e in kernels) / 1e6
    out = {"photo": rows[0]["name"], "steps": args.profile_steps, "wall_s": round(wall, 4),
           "kernel_s": round(kernel_s, 4), "kernel_share": round(kernel_s / wall, 3),
           "kernels": len(kernels), "kernels_per_step": round(len(kernels) / args.profile_steps)}
    print(f"[{args.worker}] profile: {out['steps']} attack steps of {out['photo']}: wall "
          f"{wall:.3f} s, GPU kernels {kernel_s:.3f} s ({100 * out['kernel_share']:.0f}% of the "
          f"wall time), {out['kernels_per_step']} kernels a step", flush=True)
    return out


def summarise(res: dict) -> dict:
    rows = [r for r in res["photos"] if r["status"] == "protected"]
    cos = {m: [r["cosine"][m] for r in rows if m in r["cosine"]] for m in res["settings"]["models"]}
    dlib = [r["dlib_distance"] for r in rows if r["dlib_distance"] is not None]
    return {
        "photos": len(res["photos"]), "protected": len(rows),
        "no_face": sum(r["status"] == "no-face" for r in res["photos"]),
        "failed": sum(r["status"] == "failed" for r in res["photos"]),
        "mean_s": round(statistics.mean(r["total_s"] for r in rows), 3) if rows else None,
        "median": {key: round(statistics.median(r[key] or 0 for r in rows), 3) if rows else None
                   for _, key in COLUMNS},
        "mean_cosine": {m: round(statistics.mean(v), 4) for m, v in cos.items() if v},
        "mean_dlib_distance": round(statistics.mean(dlib), 4) if dlib else None,
        "dlib_over_0.6": f"{sum(d > 0.6 for d in dlib)}/{len(dlib)}",
        "face_region": face_region_summary(rows),
    }


# Face-region figures: (key of a photo's row, worse is lower?) -> mean and the worst photo.
FACE_KEYS = [("face_jod", True), ("face_flip", False), ("face_ssim", True), ("face_psnr", True)]


def face_region_summary(rows: list[dict]) -> dict:
    out = {}
    for key, lower_is_worse in FACE_KEYS:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = {"mean": round(statistics.mean(values), 4) if values else None,
                    "worst": (min if lower_is_worse else max)(values) if values else None}
    return out


def print_tables(results: list[dict], strength: int | None) -> None:
    done = [r for r in results if "photos" in r]
    m = done[0]["machine"] if done else {"cpu": cpu_model(), "cores": os.cpu_count()}
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores" + (
        f" ({m['torch_threads']} torch threads), torch {m['torch']}, python {m['python']}, "
        f"device {m['device']} ({m['device_name']})" if done else ""))
    for r in done:
        print(f"{r['preset']}: load average (1 min) {r['loadavg_1min'][0]:.1f} before, "
              f"{r['loadavg_1min'][1]:.1f} after its photos"
              + (f" (over {m['cores']} cores: other work may have slowed it; these averages lag)"
                 if max(r["loadavg_1min"]) > m["cores"] + 0.5 else ""))
    which = strength if strength is not None else "each preset's own"
    print(f"strength {which}; per preset the mean and the medians over the photos with a "
          "face; RSS = process peak, GPU = max allocated\n")

    def num(v, width: int, digits: int = 2) -> str:
        return f"{v:{width}.{digits}f}" if isinstance(v, (int, float)) else f"{v or '-':>{width}}"

    head = f"{'preset':8} {'load s':>6} {'ok/n':>6} {'mean s':>7} " + " ".join(
        f"{t:>8}" for t, _ in COLUMNS) + f" {'RSS MB':>7} {'GPU MB':>7}"
    print(head + "\n" + "-" * len(head))
    for r in results:
        if "photos" not in r:
            print(f"{r['preset']:8} skipped: {(r.get('skipped') or r['error'])[:90]}...")
            continue
        s = r["summary"]
        print(f"{r['preset']:8} {num(r['load_s'], 6, 1)} {s['protected']:>2}/{s['photos']:<3} "
              f"{num(s['mean_s'], 7)} " + " ".join(num(s["median"][k], 8) for _, k in COLUMNS)
              + f" {num(r['peak_rss_mb'], 7, 0)} {num(r['peak_gpu_mb'], 7, 0)}")
        syn = r.get("synthetic_24mp")
        if syn and syn["status"] == "failed":
            print(f"{'  24MP':8} failed: {syn['error']}")
        elif syn:
            ok = "ok" if syn["status"] == "protected" else "noface"
            print(f"{'  24MP':8} {'':6} {ok:>6} {'':7} "
                  + " ".join(num(syn[k], 8) for _, k in COLUMNS)
                  + f" {num(syn['peak_rss_mb'], 7, 0)} {num(syn['peak_gpu_mb'], 7, 0)}")
    if done:
        print("\nwhat a person sees, on the face region (box widened 20% a side), mean (worst "
              "photo): ColorVideoVDP JOD (10 = identical), FLIP (0 = identical), SSIM, PSNR dB")
        for r in done:
            f = r["summary"]["face_region"]
            print(f"  {r['preset']:8} " + "  ".join(
                f"{key[5:]} {num(f[key]['mean'], 0, 3)} ({num(f[key]['worst'], 0, 3)})"
                for key, _ in FACE_KEYS))
        print("\nprotection, means over the protected photos: cosine(original, protected) per "
              "model (lower = better), dlib distance (over 0.6: dlib no longer matches)")
        for r in done:
            s = r["summary"]
            cos = "  ".join(f"{m} {c:.3f}" for m, c in s["mean_cosine"].items())
            print(f"  {r['preset']:8} {cos or '-'}  dlib {s['mean_dlib_distance']} "
                  f"(over 0.6: {s['dlib_over_0.6']})")


def run_preset(args, preset: str, code: Path | None) -> dict:
    """One preset's worker subprocess, on this tree's code or (``code``) a baseline's."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", preset,
               "--result-file", str(out), "--data", str(args.data.resolve())]
        for flag, value in (("--strength", args.strength), ("--photos", args.photos),
                            ("--device", args.device), ("--threads", args.threads),
                            ("--megapixels", args.megapixels),
                            ("--profile-steps", args.profile_steps), ("--batch", args.batch)):
            cmd += [flag, str(value)] if value else []
        cmd += ["--synthetic-24mp"] if args.synthetic_24mp else []
        env = dict(os.environ)
        if code is not None:  # the baseline's lowkey package comes first on the path
            env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
        rc = subprocess.run(cmd, env=env).returncode
        res = (json.loads(out.read_text()) if rc == 0 and out.exists()
               else {"preset": preset, "error": f"the worker exited with status {rc}"})
    if "photos" in res:
        res["summary"] = summarise(res)
    else:
        print(f"[{preset}] skipped: {res.get('skipped') or res['error']}", flush=True)
    return res


def print_ratios(pairs: list[tuple[dict, dict]], baseline: str) -> None:
    """This tree against the baseline, preset by preset: time ratios and both looks."""
    print(f"\nthis tree against {baseline}, same photos back to back (ratio < 1: faster now)")
    for old, new in pairs:
        if "photos" not in old or "photos" not in new:
            continue
        o, n = old["summary"], new["summary"]
        parts = [f"{key} {n['median'][key] / o['median'][key]:.2f}"
                 for key in ("total_s", "attack_s", "encode_measure_s")
                 if o["median"].get(key) and n["median"].get(key) is not None]
        jod = (o["face_region"]["face_jod"]["mean"], n["face_region"]["face_jod"]["mean"])
        print(f"  {new['preset']:8} median {o['median']['total_s']:.2f} s -> "
              f"{n['median']['total_s']:.2f} s; ratios " + ", ".join(parts)
              + f"; face JOD {jod[0]} -> {jod[1]}; dlib {o['mean_dlib_distance']} -> "
              f"{n['mean_dlib_distance']}")


def main() -> int:
    args = parse_args()
    if args.worker:
        args.result_file.write_text(json.dumps(run_worker(args), indent=2))
        return 0
    if not photo_paths(args):
        print(f"no photos under {args.data} (expected personNN/*.jpg)", file=sys.stderr)
        return 2
    results, pairs = [], []
    with tempfile.TemporaryDirectory() as baseline_dir:
        if args.baseline:  # the baseline's lowkey package, as committed
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "lowkey"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", baseline_dir], input=archive, check=True)
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            if args.baseline:
                old = run_preset(args, preset, Path(baseline_dir))
                old["code"] = f"baseline {args.baseline}"
                old["preset"] = f"{preset}@base"
                results.append(old)
            new = run_preset(args, preset, None)
            new["code"] = "this tree"
            results.append(new)
            if args.baseline:
                pairs.append((old, new))
    print_tables(results, args.strength)
    if pairs:
        print_ratios(pairs, args.baseline)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.out.write_text(json.dumps({"args": settings, "presets": results}, indent=2))
        print(f"\nwrote {args.out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
