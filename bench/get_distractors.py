"""Rebuild the evaluation data taken from LFW: a distractor set and a held-out identity set.

Both come from the Labeled Faces in the Wild website's own public repository
(``umass-vis-lfw/umass-vis-lfw.github.io``), which holds all 13,233 LFW photos (5,749 people) as
``images/<Name>/<Name>_NNNN.jpg`` (150x150, the originals scaled down for the web pages) and
``images_deepfunneled/<Name>/<Name>_NNNN.jpg`` (250x250, full resolution, aligned by deep
funneling, which leaves black corners where the photo was rotated). Nothing is downloaded here:
the script reads a local git mirror of that repository (for example the one the session tool
``fetch`` leaves at ``/work/.mirror/umass-vis-lfw+umass-vis-lfw.github.io/repo``; any clone works)
at a pinned commit, and writes plain files outside the project tree.

    .venv/bin/python bench/get_distractors.py                      # both sets, default paths
    .venv/bin/python bench/get_distractors.py --what distractors --n-distractors 3000
    .venv/bin/python bench/get_distractors.py --mirror ~/lfw-site.git --no-detect

Selection (deterministic; a given commit and options give the same files on every machine):

- The 13 faces-dev people (``../shared/data/faces-dev``, from serengil/deepface's test set) are
  never taken: see ``FACES_DEV_PEOPLE``.
- Held-out identities: first the ``--featured`` names (``FEATURED_HELDOUT``: 12 women, since LFW
  is about three quarters men), then people with ``--min-photos`` to ``--max-photos`` photos, in
  the order of sha256 of their name; from each, its first ``--per-identity`` photos (in file order) that pass
  the face check; an identity with fewer than ``--min-kept`` passing photos is skipped. They are
  written as ``<heldout>/personNN/<Name>_NNNN.jpg`` with ``identities.tsv`` mapping NN to the name.
- Distractors: people with exactly one photo in LFW (so none of them can be a held-out person), in
  the order of sha256 of their name, the first ``--n-distractors`` that pass the face check,
  written as ``<distractors>/<Name>/<Name>_0001.jpg`` (one folder per identity).
- Face check (unless ``--no-detect``): facenet-pytorch's MTCNN finds exactly one face with
  probability >= ``--min-prob`` and a box at least ``--min-face`` pixels wide. It runs on one
  thread (a few minutes for both sets on a laptop CPU).

Each output folder gets ``manifest.tsv`` (file, identity, source path, sha256) and ``SOURCE.md``.
LFW states no licence for the photos (news photos collected from the web, published for research
on face recognition); cite Huang et al., UMass Amherst TR 07-49, 2007.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT_MIRROR = Path("/work/.mirror/umass-vis-lfw+umass-vis-lfw.github.io/repo")
#: The commit this data was first taken from (2025-05-21, "added roc files").
DEFAULT_COMMIT = "2a620cd8cceb10430f8c7012fe9fa5f0837759e9"
REPO = "umass-vis-lfw/umass-vis-lfw.github.io"
VARIANTS = {"deepfunneled": "images_deepfunneled", "original": "images"}

#: The people in ../shared/data/faces-dev (person00..person12), by their LFW spelling; none of
#: them may appear in either set, whether LFW has them or not.
FACES_DEV_PEOPLE = frozenset({
    "Angelina_Jolie", "Katy_Perry", "Scarlett_Johansson", "Jennifer_Aniston", "Mark_Zuckerberg",
    "Jack_Dorsey", "Matt_Damon", "Leonardo_DiCaprio", "George_Clooney", "Elon_Musk",
    "Jeff_Bezos", "Marissa_Mayer", "Sundar_Pichai",
})

#: Held-out identities taken first, in this order, before the sha256-ordered rest: LFW is about
#: three quarters men, and the hash order alone gave 24 men out of 24. Women of several origins.
FEATURED_HELDOUT = (
    "Serena_Williams", "Gloria_Macapagal_Arroyo", "Condoleezza_Rice", "Megawati_Sukarnoputri",
    "Jennifer_Lopez", "Queen_Elizabeth_II", "Halle_Berry", "Salma_Hayek", "Naomi_Watts",
    "Venus_Williams", "Laura_Bush", "Julianne_Moore",
)

NAME_RE = re.compile(r"^(?P<name>.+)_(?P<num>\d{4})\.jpg$")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR,
                   help="git directory (bare or not) of umass-vis-lfw/umass-vis-lfw.github.io")
    p.add_argument("--commit", default=DEFAULT_COMMIT)
    p.add_argument("--variant", choices=sorted(VARIANTS), default="deepfunneled",
                   help="deepfunneled: 250x250 aligned; original: 150x150 web thumbnails")
    p.add_argument("--what", choices=("both", "distractors", "heldout"), default="both")
    p.add_argument("--distractors", type=Path, default=Path("/work/data/distractors"))
    p.add_argument("--heldout", type=Path, default=Path("/work/data/heldout-ids"))
    p.add_argument("--n-distractors", type=int, default=2500)
    p.add_argument("--n-identities", type=int, default=30)
    p.add_argument("--featured", default=",".join(FEATURED_HELDOUT),
                   help="comma-separated LFW names taken first for the held-out set ('' for none)")
    p.add_argument("--per-identity", type=int, default=10)
    p.add_argument("--min-kept", type=int, default=6)
    p.add_argument("--min-photos", type=int, default=8)
    p.add_argument("--max-photos", type=int, default=60)
    p.add_argument("--no-detect", action="store_true", help="skip the MTCNN face check")
    p.add_argument("--min-prob", type=float, default=0.95)
    p.add_argument("--min-face", type=int, default=40, help="pixels, box width at the variant's size")
    p.add_argument("--force", action="store_true", help="write into non-empty output folders")
    return p.parse_args(argv)


class Mirror:
    """Reads blobs of one commit through a single ``git cat-file --batch`` process."""

    def __init__(self, git_dir: Path, commit: str):
        self.git = ["git", "--git-dir", str(git_dir)]
        self.commit = commit
        self.proc = subprocess.Popen(self.git + ["cat-file", "--batch"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)

    def ls(self, folder: str) -> list[str]:
        out = subprocess.run(self.git + ["ls-tree", "-r", "--name-only", self.commit, folder],
                             check=True, capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line]

    def read(self, path: str) -> bytes:
        self.proc.stdin.write(f"{self.commit}:{path}\n".encode())
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            raise KeyError(f"{path}: {b' '.join(header).decode()}")
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)  # the newline after each object
        return data

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def name_order(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class FaceCheck:
    def __init__(self, min_prob: float, min_face: int):
        import numpy as np
        import torch
        from facenet_pytorch import MTCNN

        torch.set_num_threads(1)
        self.np = np
        self.mtcnn = MTCNN(keep_all=True, device="cpu")
        self.min_prob, self.min_face = min_prob, min_face

    def __call__(self, data: bytes) -> tuple[bool, str]:
        from PIL import Image

        img = Image.open(io.BytesIO(data)).convert("RGB")
        boxes, probs = self.mtcnn.detect(img)
        if boxes is None:
            return False, "no face"
        boxes = self.np.asarray(boxes, self.np.float32).reshape(-1, 4)
        probs = self.np.asarray(probs, self.np.float32).reshape(-1)
        faces = boxes[probs >= 0.9]
        if len(faces) != 1:
            return False, f"{len(faces)} faces"
        width = float(faces[0, 2] - faces[0, 0])
        if float(probs.max()) < self.min_prob or width < self.min_face:
            return False, f"p={float(probs.max()):.3f} w={width:.0f}"
        return True, f"p={float(probs.max()):.3f} w={width:.0f}"


def prepare(folder: Path, force: bool):
    if folder.exists() and any(folder.iterdir()) and not force:
        sys.exit(f"{folder} is not empty (use --force to write into it)")
    folder.mkdir(parents=True, exist_ok=True)


def source_md(title: str, args, lines: list[str]) -> str:
    variant_dir = VARIANTS[args.variant]
    return "\n".join([
        f"# {title}",
        "",
        "Photos from Labeled Faces in the Wild (LFW), taken from the LFW website's public",
        f"repository `{REPO}` (GitHub), commit `{args.commit}`, folder `{variant_dir}/`",
        f"({'250x250, aligned by deep funneling' if args.variant == 'deepfunneled' else '150x150 web thumbnails of the original 250x250 crops'}).",
        "",
        "Licence: LFW states none for the photos (news photos collected from the web and published",
        "by UMass Amherst for research on face recognition). Use them for evaluation only; do not",
        "commit them. Cite: G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller, Labeled Faces in the",
        "Wild: A Database for Studying Face Recognition in Unconstrained Environments, UMass Amherst",
        "TR 07-49, 2007 (and Huang et al., NIPS 2012, for deep funneling).",
        "",
        "The 13 faces-dev people (" + ", ".join(sorted(FACES_DEV_PEOPLE)) + ") are excluded.",
        "",
        *lines,
        "",
        "Rebuild (from a git mirror of that repository; nothing is downloaded):",
        "",
        "    .venv/bin/python bench/get_distractors.py " + " ".join(sys.argv[1:]),
        "",
        "`manifest.tsv` lists every file with its identity, source path and sha256.",
        "",
    ])


def main(argv=None):
    args = parse_args(argv)
    probe = subprocess.run(["git", "--git-dir", str(args.mirror), "cat-file", "-e",
                            f"{args.commit}^{{commit}}"], capture_output=True)
    if probe.returncode != 0:
        sys.exit(f"{args.mirror}: no git repository with commit {args.commit}. Get a copy of "
                 f"github.com/{REPO} first (the session tool `fetch`, or `git clone --bare` where "
                 "GitHub is reachable) and pass it with --mirror.")
    mirror = Mirror(args.mirror, args.commit)
    variant_dir = VARIANTS[args.variant]
    people: dict[str, list[str]] = defaultdict(list)
    for path in mirror.ls(variant_dir):
        m = NAME_RE.match(path.rsplit("/", 1)[-1])
        if m and path.split("/")[1] == m["name"]:
            people[m["name"]].append(path)
    for paths in people.values():
        paths.sort()
    print(f"{variant_dir}@{args.commit[:10]}: {len(people)} people, "
          f"{sum(map(len, people.values()))} photos", flush=True)
    excluded = sorted(FACES_DEV_PEOPLE & people.keys())
    print("faces-dev people present in LFW (excluded):", ", ".join(excluded) or "none")
    check = None if args.no_detect else FaceCheck(args.min_prob, args.min_face)
    rejected: dict[str, int] = defaultdict(int)

    def passes(path: str) -> tuple[bool, bytes, str]:
        data = mirror.read(path)
        if check is None:
            return True, data, "not checked"
        ok, why = check(data)
        if not ok:
            rejected[why.split("=")[0] if "=" in why else why] += 1
        return ok, data, why

    heldout_names: set[str] = set()
    if args.what in ("both", "heldout"):
        prepare(args.heldout, args.force)
        featured = [n for n in args.featured.split(",") if n]
        missing = [n for n in featured if n not in people]
        if missing:
            sys.exit(f"--featured: not in LFW: {', '.join(missing)}")
        candidates = featured + sorted((n for n, p in people.items()
                                        if args.min_photos <= len(p) <= args.max_photos
                                        and n not in FACES_DEV_PEOPLE and n not in featured),
                                       key=name_order)
        rows, ids, nn = [], [], 0
        for name in candidates:
            if nn >= args.n_identities:
                break
            kept = []
            for path in people[name]:
                if len(kept) >= args.per_identity:
                    break
                ok, data, _ = passes(path)
                if ok:
                    kept.append((path, data))
            if len(kept) < args.min_kept:
                print(f"  heldout: skip {name} ({len(kept)} photos pass)")
                continue
            folder = args.heldout / f"person{nn:02d}"
            folder.mkdir(exist_ok=True)
            for path, data in kept:
                out = folder / path.rsplit("/", 1)[-1]
                out.write_bytes(data)
                rows.append(f"{folder.name}/{out.name}\t{name}\t{path}\t"
                            f"{hashlib.sha256(data).hexdigest()}")
            ids.append(f"{folder.name}\t{name}\t{len(kept)}\t{len(people[name])}")
            heldout_names.add(name)
            nn += 1
        (args.heldout / "manifest.tsv").write_text(
            "file\tidentity\tsource\tsha256\n" + "\n".join(rows) + "\n")
        (args.heldout / "identities.tsv").write_text(
            "folder\tidentity\tphotos_kept\tphotos_in_lfw\n" + "\n".join(ids) + "\n")
        (args.heldout / "SOURCE.md").write_text(source_md(
            "Held-out evaluation identities (LFW)", args,
            [f"{nn} identities, {len(rows)} photos: `personNN/<LFW file name>`;",
             "`identities.tsv` maps each folder to its LFW name. First the featured names",
             f"({', '.join(featured) or 'none'}; LFW is three quarters men), then LFW people with",
             f"{args.min_photos} to {args.max_photos} photos, in sha256(name) order; per identity the",
             f"first {args.per_identity} photos that pass the face check (at least {args.min_kept}).",
             "None of them is in the distractor set (distractors have one LFW photo each)."]))
        print(f"heldout: {nn} identities, {len(rows)} photos -> {args.heldout}", flush=True)

    if args.what in ("both", "distractors"):
        prepare(args.distractors, args.force)
        candidates = sorted((n for n, p in people.items()
                             if len(p) == 1 and n not in FACES_DEV_PEOPLE
                             and n not in heldout_names), key=name_order)
        rows = []
        for name in candidates:
            if len(rows) >= args.n_distractors:
                break
            ok, data, _ = passes(people[name][0])
            if not ok:
                continue
            folder = args.distractors / name
            folder.mkdir(exist_ok=True)
            out = folder / people[name][0].rsplit("/", 1)[-1]
            out.write_bytes(data)
            rows.append(f"{name}/{out.name}\t{name}\t{people[name][0]}\t"
                        f"{hashlib.sha256(data).hexdigest()}")
            if len(rows) % 250 == 0:
                print(f"  distractors: {len(rows)}", flush=True)
        (args.distractors / "manifest.tsv").write_text(
            "file\tidentity\tsource\tsha256\n" + "\n".join(rows) + "\n")
        (args.distractors / "SOURCE.md").write_text(source_md(
            "Distractor faces (LFW)", args,
            [f"{len(rows)} photos of {len(rows)} distinct people, one folder per identity",
             "(`<LFW name>/<LFW name>_0001.jpg`): LFW people with exactly one photo, in sha256(name)",
             "order, that pass the face check (exactly one face by MTCNN)."]))
        print(f"distractors: {len(rows)} -> {args.distractors}", flush=True)
    mirror.close()
    if rejected:
        print("rejected by the face check:", dict(rejected))


if __name__ == "__main__":
    main()
