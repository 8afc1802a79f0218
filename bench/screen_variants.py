"""Screen an attack variant on a few users before a full `lowkey eval` (issue 21's screens).

Protects the gallery photos of ``--users`` with the ``default`` preset and some settings changed,
then ranks each protected photo among a finished ``lowkey eval`` run's gallery (its clean
gallery and 1,000 distractors, embeddings read from that run's cache) for each probe of its
user, with judges never attacked. Prints and appends to ``--log`` one JSON line: the face-region
look (mean and worst ColorVideoVDP JOD, FLIP, SSIM), seconds a photo (with the look's
measurement) and, per judge, each user's best rank (1 = found first; 10 or less fails the bar)
and the pairs accepted at FAR 1%.

    .venv/bin/python bench/screen_variants.py --eval eval-out/lfw5 --users person00,person29 \\
        "l2:step_rule=l2,step_size=0.0012,alpha=2.0,penalty_region=faces,penalty_max_side=256"
    # leave OpenFace out of the attack and judge with it (results.json of a --leave-one-out run)
    .venv/bin/python bench/screen_variants.py --eval eval-out/fd6 \\
        --models sface,facenet128,facenet512,faceplugin --judges openface,arcface-mbf,dlib "base:"

A variant is ``NAME:field=value,...``: any :class:`lowkey.attack.AttackSettings` field, plus
``steps=N``, ``penalty=NAME`` (the perceptual term, one of
:data:`lowkey.perceptual.PENALTIES`; ``NAME@W``, ``NAME@W@S`` or ``NAME@W@S@C`` weighs its FLIP part W,
reads it under S px and its ColorVideoVDP part under C px), ``dropout=P`` (model augmentation, DFANet-style: dropout of probability
P on every convolution's output of every attacked model while attacking; the originals'
embeddings are computed without it) and ``decoy=W`` (a pull toward a decoy identity, Fawkes /
TIP-IM: see :class:`DecoyObjective`; the decoys are the photos of ``--decoys``, a folder a
person, none of whom may be in the eval's gallery). A screen selects on few users; what it
chooses must be checked with `lowkey eval` where it was not chosen (a screen's rank of 37 has
come out as 9 in the full run). ``--countermeasure jpeg75`` ranks the protected photos after
JPEG 75, as posted photos often are, and the gallery after the same (the binding case in the
full runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from user_ranks import cached_embeddings  # bench/, the script's own folder

from lowkey.attack import LowKeyAttack, objective_for
from lowkey.evaluation.countermeasures import COUNTERMEASURES
from lowkey.evaluation.dataset import scan_dataset, split_dataset
from lowkey.evaluation.judges import JudgePanel
from lowkey.image_decode import load_photo
from lowkey.objective import LowKeyObjective
from lowkey.perceptual import load_penalty
from lowkey.protect import Protector


def parse_variant(spec: str) -> tuple[str, dict[str, object], int, float, str | None, float]:
    """``NAME:field=value,...`` -> (name, settings, steps, dropout, penalty or None, decoy)."""
    name, _, pairs = spec.partition(":")
    settings: dict[str, object] = {}
    steps, dropout, penalty, decoy = 50, 0.0, None, 0.0
    for pair in filter(None, pairs.split(",")):
        key, value = pair.split("=")
        if key == "steps":
            steps = int(value)
        elif key == "dropout":
            dropout = float(value)
        elif key == "decoy":
            decoy = float(value)
        elif key == "penalty":
            penalty = value
        else:
            try:
                settings[key] = float(value) if "." in value else int(value)
            except ValueError:
                settings[key] = value
    return name, settings, steps, dropout, penalty, decoy


class DecoyObjective(LowKeyObjective):
    """The objective with a pull toward a decoy identity (Fawkes; TIP-IM): each model's feature
    term becomes ``d(o, p) - weight x d(t, p)``, with t that model's embedding of the decoy: of
    a pool of photos of other people, the one whose face is least like the face protected (mean
    cosine over the ensemble). A screen's version: it asks each model twice a step."""

    def __init__(self, base: LowKeyObjective, pool: dict[str, torch.Tensor],
                 weight: float) -> None:
        self.__dict__.update(base.__dict__)
        self.pool, self.weight = pool, weight

    def feature_terms(self, original, windows, faces, plans=None, layout=None, check=None,
                      view="both", members=None):
        away = super().feature_terms(original, windows, faces, plans, layout, check, view,
                                     members)
        cosines = torch.stack([F.normalize(original[n], dim=1) @ self.pool[n].T
                               for n in self.pool]).mean(0)  # (N faces, K decoys)
        decoy = cosines.argmin(1)
        target = {n: self.pool[n][decoy] for n in self.pool}
        toward = super().feature_terms(target, windows, faces, plans, layout, check, view,
                                       members)
        return {n: away[n] - self.weight * toward[n] for n in away}


def decoy_pool(protector: Protector, folder: Path, exclude: Path, count: int
               ) -> dict[str, torch.Tensor]:
    """Each attacked model's unit embeddings (K, D) of the largest face of ``count`` photos of
    ``folder`` (of different people, none in ``exclude``: the eval's gallery)."""
    from lowkey.embedding import embed_faces

    taken = {p.name for p in exclude.rglob("*")}
    people = sorted(p for p in folder.iterdir() if p.name not in taken)
    pool: dict[str, list[torch.Tensor]] = {m.name: [] for m in protector.models}
    for person in people:
        if len(pool[protector.models[0].name]) == count:
            break
        photo = sorted(person.iterdir())[0] if person.is_dir() else person
        pixels = load_photo(photo).pixels
        found = protector.detector.detect(pixels)[:1]
        if not found:
            continue
        with torch.no_grad():
            for m in protector.models:
                pool[m.name].append(F.normalize(embed_faces(pixels, found, m)[0], dim=0))
    return {n: torch.stack(v) for n, v in pool.items()}


def add_dropout(protector: Protector, probability: float) -> None:
    """Dropout on every convolution's output of the attacked models, while gradients are on."""
    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor | None:
        return F.dropout(output, probability, training=True) if torch.is_grad_enabled() else None

    for model in protector.models:
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.register_forward_hook(hook)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant")
    parser.add_argument("--label", help="what the plot calls it (default: the variant's name)")
    parser.add_argument("--eval", type=Path, required=True, help="a finished lowkey eval --out")
    parser.add_argument("--results", type=Path, help="its results.json (default: in --eval)")
    parser.add_argument("--users", help="comma-separated (default: every user of the split)")
    parser.add_argument("--models", help="attacked models (default: the preset's)")
    parser.add_argument("--judges", default="arcface-mbf,dlib")
    parser.add_argument("--countermeasure", default="none", choices=sorted(COUNTERMEASURES),
                        help="applied to the protected photos and the gallery (from the run's "
                             "cache), as lowkey eval does; the probes stay clean")
    parser.add_argument("--out", type=Path, default=Path("bench/out/screens"))
    parser.add_argument("--log", type=Path, default=Path("bench/screens/screens.jsonl"))
    parser.add_argument("--decoys", type=Path, help="photos of other people (a file or a "
                        "folder a person) for decoy=W: none may be in the eval's gallery")
    parser.add_argument("--decoy-count", type=int, default=40)
    args = parser.parse_args()

    name, settings, steps, dropout, penalty, decoy = parse_variant(args.variant)
    out = args.out / name
    if out.exists() and any(out.iterdir()):
        # protect_files skips photos whose output exists: a screen must protect every photo
        parser.error(f"{out} is not empty: name the variant anew or remove the folder")
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads((args.results or args.eval / "results.json").read_text())
    config = results["config"]
    split = split_dataset(scan_dataset(Path(config["dataset"]), Path(config["distractors"])),
                          config["seed"], config["users"])
    users = args.users.split(",") if args.users else list(split.users)
    sources = [(path, user) for user in users for path in split.gallery[user]]
    hashes = json.loads((args.eval / "cache" / "sha256.json").read_text())
    unknown = [path for path, _ in split.gallery_items() if str(Path(path).resolve()) not in hashes]
    if unknown:  # check before protecting anything: the ranks need every gallery embedding
        parser.error(f"{len(unknown)} gallery photos (e.g. {unknown[0]}) are not in {args.eval}'s "
                     "cache: the data set holds other photos than that run saw; run lowkey eval "
                     "again or screen against another run")

    protector = Protector(preset="default", strength=steps, judge=False,
                          models=args.models.split(",") if args.models else None)
    protector.settings = dataclasses.replace(protector.settings, **settings)
    if penalty is not None:  # NAME[@W[@S[@C]]]: FLIP weighed W, read under S px; ColorVideoVDP
        penalty, _, flip = penalty.partition("@")  # read under C px
        protector.penalty = load_penalty(penalty)
        flip_weight, _, sides = flip.partition("@")
        flip_side, _, cvvdp_side = sides.partition("@")
        if flip_weight:
            protector.penalty.flip_weight = float(flip_weight)
        if flip_side:
            protector.penalty.flip.max_side = int(flip_side)
        if cvvdp_side:
            protector.penalty.CVVDP_MAX_SIDE = int(cvvdp_side)
    protector.objective = objective_for(protector.models, protector.penalty, protector.settings)
    if decoy:
        if args.decoys is None:
            parser.error("decoy=W needs --decoys")
        pool = decoy_pool(protector, args.decoys, Path(config["distractors"]), args.decoy_count)
        protector.objective = DecoyObjective(protector.objective, pool, decoy)
    protector.attack = LowKeyAttack(protector.objective, protector.settings)
    if dropout:
        add_dropout(protector, dropout)
    start = time.perf_counter()
    reports = [r.to_json() for r in protector.protect_files([s for s, _ in sources], out)]
    seconds = (time.perf_counter() - start) / len(sources)
    outputs = [out / (s.stem + "_lowkey" + s.suffix) for s, _ in sources]

    faces = [f for r in reports for f in r["faces"]]
    summary: dict[str, object] = {
        "label": args.label or name, "variant": args.variant, "eval": str(args.eval),
        "models": args.models or "default",
        "s_per_photo": round(seconds, 1),
        "jod": round(float(np.mean([f["jod"] for f in faces])), 3),
        "jod_min": round(float(min(f["jod"] for f in faces)), 3),
        "flip": round(float(np.mean([f["flip"] for f in faces])), 3),
        "ssim": round(float(np.mean([f["ssim"] for f in faces])), 3)}
    judges = args.judges.split(",")
    panel = JudgePanel(judges)
    countermeasure = COUNTERMEASURES[args.countermeasure]
    summary["countermeasure"] = args.countermeasure
    for judge in judges:
        clean = cached_embeddings(args.eval, judge, "none")
        countered = cached_embeddings(args.eval, judge, countermeasure.key)

        def cached(path: Path, embeddings: dict = clean) -> np.ndarray | None:
            return embeddings.get(hashes[str(Path(path).resolve())][2])

        gallery, labels = [], []
        for path, label in split.gallery_items():
            e = cached(path, countered) if label not in users else None
            if e is not None:
                gallery.append(e)
                labels.append(label)
        mine = []
        for (_, user), output in zip(sources, outputs, strict=True):
            pixels = countermeasure.apply(load_photo(output).pixels)
            e = panel.embed(pixels, [judge])[judge]
            if e is not None:
                gallery.append(e)
                labels.append(user)
                mine.append(len(gallery) - 1)
        stacked = np.stack(gallery)
        threshold = results["thresholds"][judge]["0.01"]["distance_threshold"]
        best, accepted, pairs = {}, 0, 0
        for user in users:
            own = [i for i in mine if labels[i] == user]
            for probe in split.probes[user]:
                distances = np.linalg.norm(stacked - cached(probe), axis=1)
                order = np.argsort(distances)
                ranks = [int(np.flatnonzero(order == i)[0]) + 1 for i in own]
                # None: the judge found no face in any of the user's protected photos
                known = [r for r in (*ranks, best.get(user)) if r is not None]
                best[user] = min(known) if known else None
                pairs += len(own)
                accepted += int(sum(distances[i] <= threshold for i in own))
        # the ranks are among this many photos (the eval run's gallery and distractors)
        summary[judge] = {"best_rank": best, "accepted": f"{accepted}/{pairs}",
                          "gallery": len(gallery)}
    line = json.dumps(summary)
    print(line)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a") as log:
        log.write(line + "\n")


if __name__ == "__main__":
    main()
