"""The ``lowkey`` command line.

``lowkey models list | fetch | verify | add`` manage the face-recognition weights;
``lowkey faces PHOTO...`` shows the faces found and what each model makes of them;
``lowkey protect`` protects photos and ``lowkey eval`` measures how well that works;
``lowkey daemon`` runs (or talks to) the local protection service (``daemon/``, imported as
``lowkey_daemon``); ``lowkey install`` / ``lowkey uninstall`` register the browser's native host
and the daemon's start at login (``installers/``, ``lowkey_installers``). Those live above the
core, which never imports them: they register as ``lowkey.commands`` entry points
(pyproject.toml) and this module runs whatever is registered there.
Output is for people by default and JSON with ``--json``; progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from lowkey import __version__
from lowkey.errors import LowKeyError

if TYPE_CHECKING:
    from lowkey.measure import PhotoReport, Verdict

logger = logging.getLogger("lowkey")

#: The entry-point group of the subcommands that live outside the core (``lowkey daemon``,
#: ``install``, ``uninstall``): each is ``main(argv) -> exit code``, its docstring's first line
#: its help.
COMMAND_GROUP = "lowkey.commands"


def _records(names: Sequence[str], everything: bool = False) -> list:
    """Registry records by name (``lpips-alex`` is the LPIPS backbone); default: the ensemble
    and the models that judge every report."""
    from lowkey.models.registry import (
        LPIPS_ALEX,
        all_records,
        default_ensemble,
        get_record,
        report_judges,
    )

    if everything:
        return all_records() + [LPIPS_ALEX]
    if names:
        return [LPIPS_ALEX if n == LPIPS_ALEX.name else get_record(n) for n in names]
    return default_ensemble() + report_judges()


def cmd_models_list(args: argparse.Namespace) -> int:
    from lowkey.models import store
    from lowkey.models.registry import all_records, expected_sha256

    rows = []
    for record in all_records():
        check = store.verify(record)
        rows.append({
            "name": record.name,
            "default": record.in_default_ensemble,
            "user_added": record.user_added,
            "description": record.description,
            "embedding_dim": record.embedding_dim,
            "input": f"{record.contract.size}px {record.contract.colour} "
                     f"{record.contract.alignment} {record.contract.normalisation}",
            "sha256": expected_sha256(record),
            "sha256_pinned_in_registry": record.sha256 is not None,
            "source": check.source,
            "converted": check.converted,
            "sources": [s.describe() for s in record.sources],
            "licence": record.licence,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        flag = "*" if row["default"] else " "
        sha = (row["sha256"] or "not yet pinned")[:16]
        print(f"{flag} {row['name']:<18} {row['embedding_dim']:>4}-d  {row['input']:<40} "
              f"source {row['source']:<8} converted {row['converted']:<8} sha256 {sha}")
    from lowkey.models.registry import LPIPS_ALEX

    lpips_state = "ok" if store.source_path(LPIPS_ALEX).exists() else "missing"
    print(f"  {LPIPS_ALEX.name:<18} LPIPS backbone (perceptual penalty)            source {lpips_state}")
    print("\n* = in the default ensemble. Fetch with `lowkey models fetch [NAME...]`.")
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from lowkey.models import store
    from lowkey.models.registry import AuxiliaryWeights

    failed = 0
    results = []
    for record in _records(args.names, args.all):
        try:
            if isinstance(record, AuxiliaryWeights):
                path = store.fetch_source(record, progress=not args.json)
            else:
                path = store.ensure_converted(record, progress=not args.json)
            results.append({"name": record.name, "ok": True, "converted": str(path)})
            if not args.json:
                print(f"ok      {record.name}: {path}")
        except LowKeyError as exc:
            failed += 1
            results.append({"name": record.name, "ok": False, "error": str(exc)})
            if not args.json:
                print(f"FAILED  {record.name}: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from lowkey.models import store
    from lowkey.models.registry import AuxiliaryWeights

    checks = [store.verify(r) for r in _records(args.names, args.all)
              if not isinstance(r, AuxiliaryWeights)]
    if args.json:
        print(json.dumps([c.__dict__ | {"ok": c.ok} for c in checks], indent=2))
    else:
        for c in checks:
            print(f"{'ok' if c.ok else 'BAD':<4} {c.name:<18} source {c.source:<9} "
                  f"converted {c.converted:<8} {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def cmd_models_add(args: argparse.Namespace) -> int:
    from lowkey.models import store

    record = store.add_user_model(Path(args.file), args.name, args.architecture,
                                  progress=not args.json)
    if args.json:
        print(json.dumps(record.to_json(), indent=2))
    else:
        print(f"added {record.name}: {record.architecture}, sha256 {record.sha256} (pinned now; "
              f"checked on every load)")
    return 0


def cmd_faces(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from lowkey.device import default_device
    from lowkey.embedding import embed_faces
    from lowkey.faces import FaceDetector, select_faces
    from lowkey.image_decode import load_photo
    from lowkey.models import store
    from lowkey.sample import sample_png

    inputs: list[tuple[str, Path | bytes]] = [(str(p), Path(p)) for p in args.photos]
    if args.sample:
        inputs.insert(0, ("sample:astronaut", sample_png()))
    if not inputs:
        print("give at least one photo, or --sample", file=sys.stderr)
        return 2
    device = str(default_device())
    records = _records(args.models.split(",") if args.models else [])
    recognizers = [store.load_recognizer(r, device, progress=not args.json) for r in records]
    detector = FaceDetector(device=device)

    photos_out, all_embeddings, failures = [], {r.name: [] for r in records}, 0
    for label, source in tqdm(inputs, desc="photos", unit="photo", disable=len(inputs) < 2):
        try:
            photo = load_photo(source)
        except LowKeyError as exc:
            failures += 1
            photos_out.append({"photo": label, "error": str(exc)})
            continue
        faces = select_faces(detector.detect(photo.pixels), "largest" if args.largest else "all")
        entry = {"photo": label, "size": list(photo.size), "format": photo.format,
                 "smallest_face_px": detector.smallest_face_px(photo.size),
                 "faces": [f.to_json() for f in faces]}
        if faces:
            with torch.no_grad():
                for rec in recognizers:
                    emb = embed_faces(photo.pixels.to(device), faces, rec).cpu()
                    for i, (face_json, e) in enumerate(zip(entry["faces"], emb, strict=True)):
                        face_json.setdefault("embedding_norm", {})[rec.name] = round(
                            float(e.norm()), 4)
                        all_embeddings[rec.name].append((f"{label}#{i}", e))
        photos_out.append(entry)

    cosines = {}
    for name, items in all_embeddings.items():
        if len(items) >= 2:
            embs = torch.nn.functional.normalize(torch.stack([e for _, e in items]), dim=1)
            cosines[name] = {"faces": [k for k, _ in items],
                             "matrix": (embs @ embs.T).round(decimals=4).tolist()}
    if args.json:
        print(json.dumps({"photos": photos_out, "cosines": cosines, "device": device}, indent=2))
    else:
        for entry in photos_out:
            if "error" in entry:
                print(f"{entry['photo']}: ERROR {entry['error']}")
                continue
            w, h = entry["size"]
            print(f"{entry['photo']}: {w}x{h} {entry['format']}, {len(entry['faces'])} face(s) "
                  f"(looked for down to {entry['smallest_face_px']} px)")
            if not entry["faces"]:
                print("  no face found: this photo would be left unchanged")
            for i, face in enumerate(entry["faces"]):
                box = ", ".join(f"{v:.0f}" for v in face["box"])
                norms = "  ".join(f"{k} {v:.2f}" for k, v in face.get("embedding_norm", {}).items())
                print(f"  face {i}: box ({box}) score {face['score']:.3f}")
                print(f"          landmarks {face['landmarks']}")
                print(f"          embedding norms: {norms}")
        for name, cos in cosines.items():
            print(f"\ncosine similarity between faces, {name}:")
            for key, row in zip(cos["faces"], cos["matrix"], strict=True):
                print(f"  {key[-40:]:>40} " + " ".join(f"{v:6.3f}" for v in row))
    return 1 if failures else 0


def _expand_inputs(paths: Sequence[str]) -> list[Path]:
    """Files as given, and the photos directly inside given folders: by extension, neither
    hidden nor LowKey outputs (:func:`lowkey.output_files.is_photo_file`)."""
    from lowkey.output_files import is_photo_file

    out: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if is_photo_file(p)))
        else:
            out.append(path)
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _print_report(report: PhotoReport) -> None:
    if report.status == "failed":
        print(f"{report.source}: FAILED: {report.error}")
        return
    if report.status == "skipped":
        print(f"{report.source}: skipped: {report.error}")
        return
    w, h = report.size
    head = f"{report.source}: {w}x{h} {report.format}, {report.seconds:.1f} s on {report.device}"
    if report.status == "no-face":
        print(f"{head}\n  no face found (looked for faces down to {report.smallest_face_px} px): "
              "left unchanged, nothing written")
        return
    print(f"{head} -> {report.output}")
    print(f"  preset {report.preset}, {report.steps} steps; faces looked for down to "
          f"{report.smallest_face_px} px")
    for i, face in enumerate(report.faces):
        print(f"  face {i} region ({', '.join(str(v) for v in face.region)}), what a person sees: "
              f"ColorVideoVDP {_fmt(face.jod, '.2f')} JOD (10 = identical), "
              f"FLIP {_fmt(face.flip, '.3f')}, SSIM {_fmt(face.ssim, '.3f')}, "
              f"PSNR {_fmt(face.psnr, '.1f')} dB")
    print(f"  whole photo: SSIM {report.ssim:.4f}, PSNR {report.psnr:.1f} dB, "
          + (f"LPIPS {report.lpips:.4f}, " if report.lpips is not None else "")
          + f"objective's {report.penalty} {report.penalty_value:.4f}, "
          f"largest change {report.linf * 255:.0f}/255")
    for i, face in enumerate(report.faces):
        cos = "  ".join(f"{k} {'not found' if v is None else f'{v:+.3f}'}"
                        for k, v in face.cosine.items())
        print(f"  face {i} at ({', '.join(f'{v:.0f}' for v in face.box)}):")
        print(f"    attacked models (white-box), cosine original->protected: {cos}")
        for name, verdict in face.judges.items():
            print(f"    {name} (never attacked, black-box): {_verdict_text(name, verdict)}")
    if report.judges:
        print(f"  STILL RECOGNISED by {', '.join(report.recognised_by)}" if report.recognised_by
              else f"  not recognised by {', '.join(report.judges)} (never attacked)")


def _verdict_text(name: str, verdict: Verdict) -> str:
    """One recogniser's verdict on a protected face, for people."""
    if verdict.match is None:
        return "found no face in the original (no say)"
    if verdict.score is None:
        return "no face found in the protected photo"
    sense = "at least" if verdict.kind == "cosine" else "under"
    figure = (f"{verdict.kind} {verdict.score:.3f} (same person {sense} "
              f"{verdict.threshold:g})")
    return f"{figure}: {'still matches it' if verdict.match else 'no longer the same person'}"


def _protect_on_ray(args: argparse.Namespace, files: list[Path]) -> int:
    """``lowkey protect --ray [ADDRESS]``: the same protection on a Ray cluster
    (:mod:`lowkey.ray_protect`), reported as a single-machine run is."""
    from lowkey.ray_protect import protect_on_ray

    def on_start(pool: dict) -> None:
        print(f"Ray ({pool['address']}): {pool['photos']} photo(s) to protect on "
              f"{pool['concurrency']} {pool['device'].upper()} actor(s)"
              + (f", {pool['done_before']} done before" if pool["done_before"] else ""))

    run = protect_on_ray(files, Path(args.out) if args.out else None, address=args.ray,
                         preset=args.preset, strength=args.strength, seed=args.seed,
                         faces="largest" if args.largest else "all", device=args.device,
                         keep_location=args.keep_location, progress=not args.json,
                         on_start=None if args.json else on_start,
                         on_report=None if args.json else _print_report)
    return _protect_summary(args, run.settings, run.reports)


def cmd_protect(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from lowkey.presets import DEFAULT_PRESET
    from lowkey.protect import BATCH_ON_GPU, Protector
    from lowkey.sample import SAMPLE_NAME, sample_png

    args.preset = args.preset or DEFAULT_PRESET
    files = _expand_inputs(args.photos)
    if args.sample:
        folder = Path(args.out or "lowkey-sample")
        folder.mkdir(parents=True, exist_ok=True)
        sample = folder / SAMPLE_NAME
        if not sample.exists():
            sample.write_bytes(sample_png())
        files.insert(0, sample)
        args.out = args.out or str(folder)
    if not files:
        print("lowkey: error: no photos given (or none in the folders given)", file=sys.stderr)
        return 2
    if args.batch is not None and args.batch < 1:
        print("lowkey: error: --batch must be at least 1", file=sys.stderr)
        return 2
    if args.ray is not None:
        return _protect_on_ray(args, files)
    protector = Protector(preset=args.preset, strength=args.strength, seed=args.seed,
                          faces="largest" if args.largest else "all", device=args.device,
                          progress=not args.json)
    info = protector.describe()
    if not args.json:
        bound = (f"change at most {info['linf_bound'] * 255:.0f}/255" if info["linf_bound"] < 1
                 else "no per-pixel bound")
        print(f"preset {info['preset']}: {', '.join(info['models'])} on {info['device']}; "
              f"perceptual penalty {info['penalty']}; {info['settings']['steps']} "
              f"{info['settings']['step_rule']} steps of {info['settings']['step_size']}, {bound}")
    # photos attacked together (one model call a step for all): on a GPU a step is bound by
    # kernel launches, so a batch costs about what one photo does; on a CPU it pays little
    batch = args.batch or (BATCH_ON_GPU if protector.device.type == "cuda" else 1)
    reports = []
    with tqdm(total=len(files), desc="photos", unit="photo",
              disable=len(files) < 2 or args.json) as photos_bar:
        for first in range(0, len(files), batch):
            chunk = files[first:first + batch]
            name = chunk[0].name[:30] + (f" +{len(chunk) - 1}" if len(chunk) > 1 else "")
            with tqdm(total=protector.settings.steps, desc=name, unit="step", leave=False,
                      disable=args.json) as steps_bar:
                def on_step(step: int, total: int, terms: Mapping[str, float],
                            bar: tqdm = steps_bar) -> bool:
                    bar.update(1)
                    bar.set_postfix(objective=f"{terms['objective']:.3f}")
                    return True

                done = protector.protect_files(chunk, Path(args.out) if args.out else None,
                                               on_step=on_step, keep_location=args.keep_location)
            photos_bar.update(len(chunk))
            reports += done
            if not args.json:
                for report in done:
                    _print_report(report)
    return _protect_summary(args, info, reports)


def _protect_summary(args: argparse.Namespace, info: dict | None,
                     reports: list[PhotoReport]) -> int:
    """The end of ``lowkey protect``: the JSON or the counts, and the exit code."""
    counts = {s: sum(r.status == s for r in reports)
              for s in ("protected", "no-face", "failed", "skipped")}
    if args.json:
        print(json.dumps({"settings": info, "photos": [r.to_json() for r in reports],
                          "summary": counts}, indent=2))
    else:
        print(f"\n{counts['protected']} protected, {counts['no-face']} without a face (left "
              f"unchanged), {counts['failed']} failed"
              + (f", {counts['skipped']} skipped (protected before)" if counts["skipped"] else ""))
    return 1 if counts["failed"] else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lowkey.evaluation import EvalConfig, run_evaluation, write_outputs
    from lowkey.json_safe import json_safe
    from lowkey.presets import DEFAULT_PRESET

    args.preset = args.preset or DEFAULT_PRESET
    config = EvalConfig(
        dataset=Path(args.dataset), out=Path(args.out), preset=args.preset,
        strength=args.strength, seed=args.seed, users=args.users,
        fixed_detector=args.fixed_detector,
        distractors=Path(args.distractors) if args.distractors else None,
        transfer=args.transfer, leave_one_out=args.leave_one_out,
        judges=[j.strip() for j in args.judges.split(",") if j.strip()] if args.judges else None,
        countermeasures=([c.strip() for c in args.countermeasures.split(",") if c.strip()]
                         if args.countermeasures is not None else None),
        rank_k=args.rank_k, device=args.device)
    results = run_evaluation(config, progress=not args.json)
    paths = write_outputs(results, config.out)
    if args.json:
        print(json.dumps(json_safe(results | {"outputs": {k: str(v) for k, v in paths.items()}}),
                         indent=2))
        return 0
    k = results["knn"]["k"]
    fars = list(results["config"]["fars"])
    far = f"{fars[0]:g}" if fars else None
    print(f"\n{results['dataset']['user_probes']} trials, gallery of "
          f"{results['dataset']['gallery']} photos; preset {args.preset}, strength "
          f"{config.strength}; no counter-measure")
    print(f"{'judge':<14} {'access':<10} {'rank-1 clean -> protected':<27} "
          f"{f'rank-{k}':<17} " + (f"TAR@FAR={far}" if far else ""))
    for row in results["results"]:
        if row["attack"] != "ensemble" or row["countermeasure"] != "none":
            continue
        clean = next(r for r in results["results"] if r["judge"] == row["judge"]
                     and r["attack"] == "clean" and r["countermeasure"] == "none")
        tar = (f"{clean['tar'][far] * 100:5.1f}% -> {row['tar'][far] * 100:5.1f}%"
               if far else "")
        print(f"{row['judge']:<14} {row['access']:<10} {clean['rank1'] * 100:6.1f}% -> "
              f"{row['rank1'] * 100:6.1f}%          {clean['rank_k'] * 100:5.1f}% -> "
              f"{row['rank_k'] * 100:5.1f}%  {tar}")
    print(f"\nreport: {paths['report']} (and {', '.join(p.name for n, p in paths.items() if n != 'report')})")
    return 0


def _preset_option(name: str) -> str:
    """A preset name, checked (an old name says what it became)."""
    from lowkey.presets import get_preset

    try:
        return get_preset(name).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _users_option(text: str) -> int | str:
    """``--users``: a positive number or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lowkey", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lowkey {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="manage face-recognition weights")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="every known model and the state of its files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    for verb, func, text in (("fetch", cmd_models_fetch, "download, verify and convert"),
                             ("verify", cmd_models_verify, "re-hash cached files")):
        p = msub.add_parser(verb, help=f"{text} (default: the default ensemble)")
        p.add_argument("names", nargs="*", help="model names (see `lowkey models list`)")
        p.add_argument("--all", action="store_true", help="every known model")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    p = msub.add_parser("add", help="register a face.evoLVe IR/ResNet checkpoint you have")
    p.add_argument("file", help="the .pth checkpoint")
    p.add_argument("--name", required=True, help="the name to use for it")
    p.add_argument("--architecture", choices=("ir_50", "ir_152", "resnet_50", "resnet_152"),
                   help="detected from the checkpoint when omitted")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_add)

    p = sub.add_parser("protect", help="protect photos with the LowKey filter")
    p.add_argument("photos", nargs="*", help="photo files or folders")
    p.add_argument("--sample", action="store_true",
                   help="also protect the built-in sample photo (written to the output folder, "
                        "default ./lowkey-sample)")
    p.add_argument("-o", "--out", help="output folder (default: beside each photo, name_lowkey)")
    p.add_argument("--preset", type=_preset_option, default=None,
                   help="default (what runs without this option): protects, measured against "
                        "recognisers never attacked (in our tests none of them found a protected "
                        "face among 1,000 strangers); the face looks visibly altered up close. "
                        "subtle: looks unchanged and does NOT protect (every recogniser we have "
                        "still recognised every face). paper: the paper's models. "
                        "docs/results.md has the figures")
    p.add_argument("--strength", type=int, default=None,
                   help="attack steps (default: the preset's own: default 100, subtle 10, "
                        "paper 50); docs/results.md shows the look and protection of each")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    p.add_argument("--largest", action="store_true", help="protect only the largest face")
    p.add_argument("--keep-location", action="store_true",
                   help="keep GPS/location metadata (removed by default)")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--batch", type=int, default=None, metavar="N",
                   help="photos attacked together, one model call a step for all (default: "
                        "lowkey.protect.BATCH_ON_GPU on a GPU, 1 on a CPU)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on a Ray cluster (pip install 'lowkey[ray]'): a new local one "
                        "without ADDRESS, else auto, HOST:6379 or ray://HOST:10001; SRC and DST "
                        "on storage every node sees; a JSON report beside each output, and a "
                        "re-run skips what is done (README: Ray)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_protect)

    p = sub.add_parser("eval", help="measure protection against recognition systems, as the "
                                    "paper does (rank-k, TAR@FAR, transfer, counter-measures)")
    p.add_argument("dataset", help="folder of identity folders: DATASET/<identity>/<photo>")
    p.add_argument("--preset", type=_preset_option, default=None,
                   help="the protection to evaluate (default: the default preset) (its ensemble's models are white-box judges)")
    p.add_argument("--strength", type=int, default=None, help="as for `lowkey protect`")
    p.add_argument("--users", type=_users_option, metavar="N|all",
                   help="protect the gallery of N random identities, or of all of them (default: "
                        "a fifth of the identities with a gallery photo, at least one: the "
                        "paper's few protected users among clean identities)")
    p.add_argument("--distractors", help="folder of photos of nobody in particular (gallery only)")
    p.add_argument("-o", "--out", default="lowkey-eval",
                   help="output folder: report, results, plots, protected photos and caches, "
                        "all reused by later runs (default ./lowkey-eval)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the split, the user choice and the attack's noise")
    p.add_argument("--transfer", action="store_true",
                   help="also protect with each ensemble model alone and with the ensemble "
                        "less each model (the transfer matrix; multiplies the protection cost)")
    p.add_argument("--leave-one-out", action="store_true",
                   help="also protect with the ensemble less each model, judged by the model "
                        "it leaves out (the transfer matrix's leave-one-out rows only)")
    p.add_argument("--judges", help="comma-separated judges: registry model names and/or dlib "
                                    "(default: every model whose weights are on disk, and dlib); "
                                    "each also judges as JUDGE@fixed")
    p.add_argument("--countermeasures",
                   help="comma-separated subset of none,blur,jpeg75,half,platform (default: all)")
    p.add_argument("--no-fixed-detector", dest="fixed_detector", action="store_false",
                   help="leave out the judges' fixed-detector variants (JUDGE@fixed: gallery "
                        "photos embedded at the face found in their clean source, which tells "
                        "defeated recognition from defeated detection)")
    p.add_argument("--rank-k", type=int, default=10,
                   help="k of rank-k accuracy, capped by the gallery size (default 10; rank-1 "
                        "and rank-10 are always reported)")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_eval)

    for name, entry in registered_commands().items():
        p = sub.add_parser(name, add_help=False, help=_command_help(name, entry))
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(registered=name)

    p = sub.add_parser("faces", help="faces found in photos and their embeddings")
    p.add_argument("photos", nargs="*", help="photo files")
    p.add_argument("--sample", action="store_true", help="also use the built-in sample photo")
    p.add_argument("--models", help="comma-separated model names (default: default ensemble)")
    p.add_argument("--largest", action="store_true", help="only the largest face of each photo")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_faces)
    return parser


def registered_commands() -> dict[str, EntryPoint]:
    """The subcommands installed outside the core, by name (:data:`COMMAND_GROUP`)."""
    return {entry.name: entry for entry in entry_points(group=COMMAND_GROUP)}


def _load_command(name: str, entry: EntryPoint) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of a registered subcommand; LowKeyError when it cannot be imported."""
    try:
        return entry.load()
    except ImportError as exc:
        raise LowKeyError(f"`lowkey {name}` is registered but cannot be imported ({exc}); "
                          "reinstall LowKey (installers/setup.sh)") from exc


def _command_help(name: str, entry: EntryPoint) -> str:
    try:
        doc = _load_command(name, entry).__doc__ or ""
    except LowKeyError as exc:
        return str(exc)
    first = doc.strip().splitlines()[0].rstrip(".") if doc.strip() else name
    return f"{first[:1].lower()}{first[1:]} (`lowkey {name} --help`)"


def _run_registered(name: str, entry: EntryPoint, argv: Sequence[str]) -> int:
    """``lowkey daemon|install|uninstall ...``: handed to the package that registered it."""
    try:
        command = _load_command(name, entry)
    except LowKeyError as exc:
        print(f"lowkey: error: {exc}", file=sys.stderr)
        return 1
    return command(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = registered_commands()
    if argv[:1] and argv[0] in commands:
        return _run_registered(argv[0], commands[argv[0]], argv[1:])
    args = build_parser().parse_args(argv)
    name = getattr(args, "registered", None)
    if name is not None:  # `lowkey -v daemon ...`
        return _run_registered(name, commands[name],
                               ["-v", *args.rest] if args.verbose else args.rest)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except (LowKeyError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"lowkey: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
