"""FaceNet (Inception-ResNet-v1) as a differentiable torch module, converted from two weight files.

Both sources are FaceNet networks with the same layout, that of facenet-pytorch's
``InceptionResnetV1`` (the architecture of David Sandberg's TF-slim FaceNet):

- ``facenet128``: a Keras 2 ``.h5`` file (``facenet_keras_2024.h5``), 128-d embeddings. Read with
  h5py only. BatchNorm layers have ``scale=False`` (no gamma), so every BN weight is the constant 1.
- ``facenet512``: Sandberg's frozen TensorFlow GraphDef (``graph_final.pb``), 512-d embeddings.
  Parsed with the GraphDef protobuf classes shipped by tensorboardX, without TensorFlow. Every
  convolution's BatchNorm is folded into it (weights already scaled, the rest a per-channel
  offset), so each ``BasicConv2d.bn`` is loaded as an exact identity plus the offset as its bias.

Every weight tensor of the source is used exactly once and every state-dict key is filled (490
Keras tensors, 269 GraphDef constants -> 602 float tensors, the rest being constants the source
implies: gamma 1, identity BN statistics). The converters check it, and the geometry (strides,
padding, residual scales, BatchNorm epsilons) against what the source file says, and raise
:class:`~lowkey.errors.WeightsError` on any mismatch.

Converted weights are a safetensors file whose keys are exactly facenet-pytorch's
``InceptionResnetV1`` state-dict keys (without ``logits``). :func:`load_inception_resnet_v1`
builds :class:`FaceNetEmbedder` from it.

Input contract of the built module (the record's normalisation is applied before it, by
:class:`lowkey.models.recognizer.FaceRecognizer`): ``(B, 3, 160, 160)`` float32, RGB, already
normalised - per-image standardisation for ``facenet128``, ``(255 x - 127.5) / 128`` for
``facenet512``. Both sources were trained on RGB (checked on real faces: BGR input lowers the
same-identity cosine and the pair accuracy).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lowkey.errors import WeightsError
from lowkey.files import write_atomic

try:
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the FaceNet models need facenet-pytorch, a dependency of LowKey: reinstall LowKey "
        "(pip install lowkey, or bash installers/setup.sh)"
    ) from _exc

logger = logging.getLogger(__name__)

#: Side of the square input, in pixels. The TF graph ends with a 3x3 VALID average pool, which
#: equals facenet-pytorch's global average pool only at this size.
INPUT_SIZE = 160
#: Channels of the pooled feature vector (input of the bottleneck layer).
FEATURE_DIM = 1792
#: Epsilon of every BatchNorm in both sources (checked against each file).
BN_EPS = 1e-3
#: ``running_var`` of an identity BatchNorm: ``1 / sqrt(running_var + eps)`` is exactly 1.0 in
#: float32 (0.999f + 0.001 rounds to 1.0f), so ``bn(y) = y + bias`` bit for bit on the CPU.
IDENTITY_RUNNING_VAR = 1.0 - BN_EPS

# -------------------------------------------------------------------------------------------------
# The module


class FaceNetEmbedder(InceptionResnetV1):
    """facenet-pytorch's ``InceptionResnetV1`` returning raw embeddings (the ``last_bn`` output).

    ``forward(x)``: ``x`` is ``(B, 3, 160, 160)`` float, RGB, already normalised by the weight
    record's contract. Returns ``(B, embedding_dim)`` raw embeddings, NOT L2-normalised (the parent
    class normalises; this one does not, so that callers choose). Gradients flow to ``x``.

    The stem's VALID stride-2 convolutions floor, so the last 3 rows and columns of the input
    reach no output and get zero gradient (the TensorFlow original behaves the same).

    State-dict keys are exactly the parent's (``last_linear`` is ``FEATURE_DIM -> embedding_dim``
    without bias, ``last_bn`` has eps ``BN_EPS``); there is no ``logits`` layer.
    """

    def __init__(self, embedding_dim: int) -> None:
        super().__init__(pretrained=None, classify=False)
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.embedding_dim = embedding_dim
        self.last_linear = nn.Linear(FEATURE_DIM, embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_dim, eps=BN_EPS, momentum=0.1, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"FaceNet expects input of shape (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), "
                f"got {tuple(x.shape)}"
            )
        x = self.conv2d_1a(x)
        x = self.conv2d_2a(x)
        x = self.conv2d_2b(x)
        x = self.maxpool_3a(x)
        x = self.conv2d_3b(x)
        x = self.conv2d_4a(x)
        x = self.conv2d_4b(x)
        x = self.repeat_1(x)
        x = self.mixed_6a(x)
        x = self.repeat_2(x)
        x = self.mixed_7a(x)
        x = self.repeat_3(x)
        x = self.block8(x)
        x = self.avgpool_1a(x)
        x = self.dropout(x)
        x = self.last_linear(x.flatten(1))
        return self.last_bn(x)


def load_inception_resnet_v1(path: Path, embedding_dim: int) -> FaceNetEmbedder:
    """Build :class:`FaceNetEmbedder` and load converted weights (safetensors) into it.

    Returns the module in eval mode, float32, on the CPU, with its parameters frozen
    (``requires_grad=False``; gradients still flow to the input). Input ``(B, 3, 160, 160)`` RGB,
    already normalised per the record; output ``(B, embedding_dim)`` raw embeddings.
    Raises :class:`WeightsError` if the file cannot be read or does not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"cannot read converted FaceNet weights {path}: {exc}") from exc
    model = _shape_only(embedding_dim)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise WeightsError(
            f"{path} does not fit InceptionResnetV1 with a {embedding_dim}-d embedding: "
            f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} "
            f"({len(unexpected)}), wrong shape {wrong[:5]} ({len(wrong)}); delete it to convert again"
        )
    model.load_state_dict(state, strict=True, assign=True)
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# -------------------------------------------------------------------------------------------------
# The layer plan: every convolution of InceptionResnetV1, with its TF-slim scope name


@dataclass(frozen=True)
class _Conv:
    """One convolution: ``key`` is the torch prefix (``repeat_1.0.branch1.1``), ``scope`` the
    TF-slim scope (``Repeat/block35_1/Branch_1/Conv2d_0b_3x3``). ``basic``: a bias-free conv
    followed by BatchNorm (``key.conv`` / ``key.bn``); otherwise the residual up-projection, a
    conv with bias (``key``)."""

    key: str
    scope: str
    basic: bool = True


@dataclass(frozen=True)
class _Residual:
    """A residual block (``key``, TF-slim ``scope``) whose branch sum is multiplied by ``scale``."""

    key: str
    scope: str
    scale: float


_BLOCK35 = (
    ("branch0", "Branch_0/Conv2d_1x1"),
    ("branch1.0", "Branch_1/Conv2d_0a_1x1"),
    ("branch1.1", "Branch_1/Conv2d_0b_3x3"),
    ("branch2.0", "Branch_2/Conv2d_0a_1x1"),
    ("branch2.1", "Branch_2/Conv2d_0b_3x3"),
    ("branch2.2", "Branch_2/Conv2d_0c_3x3"),
)
_BLOCK17 = (
    ("branch0", "Branch_0/Conv2d_1x1"),
    ("branch1.0", "Branch_1/Conv2d_0a_1x1"),
    ("branch1.1", "Branch_1/Conv2d_0b_1x7"),
    ("branch1.2", "Branch_1/Conv2d_0c_7x1"),
)
_BLOCK8 = (
    ("branch0", "Branch_0/Conv2d_1x1"),
    ("branch1.0", "Branch_1/Conv2d_0a_1x1"),
    ("branch1.1", "Branch_1/Conv2d_0b_1x3"),
    ("branch1.2", "Branch_1/Conv2d_0c_3x1"),
)
_MIXED_6A = (
    ("branch0", "Branch_0/Conv2d_1a_3x3"),
    ("branch1.0", "Branch_1/Conv2d_0a_1x1"),
    ("branch1.1", "Branch_1/Conv2d_0b_3x3"),
    ("branch1.2", "Branch_1/Conv2d_1a_3x3"),
)
_MIXED_7A = (
    ("branch0.0", "Branch_0/Conv2d_0a_1x1"),
    ("branch0.1", "Branch_0/Conv2d_1a_3x3"),
    ("branch1.0", "Branch_1/Conv2d_0a_1x1"),
    ("branch1.1", "Branch_1/Conv2d_1a_3x3"),
    ("branch2.0", "Branch_2/Conv2d_0a_1x1"),
    ("branch2.1", "Branch_2/Conv2d_0b_3x3"),
    ("branch2.2", "Branch_2/Conv2d_1a_3x3"),
)
_STEM = (
    ("conv2d_1a", "Conv2d_1a_3x3"),
    ("conv2d_2a", "Conv2d_2a_3x3"),
    ("conv2d_2b", "Conv2d_2b_3x3"),
    ("conv2d_3b", "Conv2d_3b_1x1"),
    ("conv2d_4a", "Conv2d_4a_3x3"),
    ("conv2d_4b", "Conv2d_4b_3x3"),
)


def _plan(model: InceptionResnetV1) -> tuple[list[_Conv], list[_Residual]]:
    """All 132 convolutions and 21 residual blocks of ``model``, in network order."""
    convs = [_Conv(k, s) for k, s in _STEM]
    residuals: list[_Residual] = []

    def repeat(key: str, scope_of: str, layout: tuple[tuple[str, str], ...], n: int) -> None:
        for i in range(n):
            k, s = f"{key}.{i}", scope_of.format(i + 1)
            convs.extend(_Conv(f"{k}.{a}", f"{s}/{b}") for a, b in layout)
            convs.append(_Conv(f"{k}.conv2d", f"{s}/Conv2d_1x1", basic=False))
            residuals.append(_Residual(k, s, float(model.get_submodule(k).scale)))

    repeat("repeat_1", "Repeat/block35_{}", _BLOCK35, len(model.repeat_1))
    convs.extend(_Conv(f"mixed_6a.{a}", f"Mixed_6a/{b}") for a, b in _MIXED_6A)
    repeat("repeat_2", "Repeat_1/block17_{}", _BLOCK17, len(model.repeat_2))
    convs.extend(_Conv(f"mixed_7a.{a}", f"Mixed_7a/{b}") for a, b in _MIXED_7A)
    repeat("repeat_3", "Repeat_2/block8_{}", _BLOCK8, len(model.repeat_3))
    convs.extend(_Conv(f"block8.{a}", f"Block8/{b}") for a, b in _BLOCK8)
    convs.append(_Conv("block8.conv2d", "Block8/Conv2d_1x1", basic=False))
    residuals.append(_Residual("block8", "Block8", float(model.block8.scale)))
    return convs, residuals


def _shape_only(embedding_dim: int) -> FaceNetEmbedder:
    """The architecture on the meta device: shapes and hyper-parameters, no memory, no init."""
    with torch.device("meta"):
        return FaceNetEmbedder(embedding_dim)


def _keras_name(scope: str) -> str:
    """Keras layer name of a TF-slim scope: ``Repeat_1/block17_3/Branch_0/Conv2d_1x1`` ->
    ``Block17_3_Branch_0_Conv2d_1x1``; the final ``Block8`` is ``Block8_6``."""
    m = re.fullmatch(r"Repeat(?:_\d)?/block(\d+)_(\d+)(.*)", scope)
    if m:
        scope = f"Block{m[1]}_{m[2]}{m[3]}"
    elif scope == "Block8" or scope.startswith("Block8/"):
        scope = "Block8_6" + scope[len("Block8") :]
    return scope.replace("/", "_")


def _check_geometry(conv: nn.Conv2d, strides: tuple[int, ...], padding: str, where: str) -> None:
    """The source conv's strides and SAME/VALID padding must be what ``conv`` does."""
    kh, kw = conv.kernel_size
    if padding.upper() == "VALID":
        want_padding: tuple[int, int] = (0, 0)
    elif padding.upper() == "SAME" and tuple(strides) == (1, 1) and kh % 2 and kw % 2:
        want_padding = ((kh - 1) // 2, (kw - 1) // 2)
    else:
        raise WeightsError(f"{where}: unsupported padding {padding} with strides {strides}")
    if tuple(strides) != tuple(conv.stride) or want_padding != tuple(conv.padding):
        raise WeightsError(
            f"{where}: source has strides {tuple(strides)} padding {padding}, the architecture "
            f"has stride {conv.stride} padding {conv.padding}"
        )


# -------------------------------------------------------------------------------------------------
# Strict state building


@dataclass
class ConvertedWeights:
    """A converted state dict and where each entry came from.

    ``state``: facenet-pytorch ``InceptionResnetV1`` keys -> float32 tensors (int64 for
    ``num_batches_tracked``). ``origin``: the same keys -> the source tensor's name, or
    ``"constant: <why>"`` for values the source implies without storing them.
    ``source_names``: every weight tensor of the source (each used exactly once).
    """

    state: dict[str, torch.Tensor]
    origin: dict[str, str]
    source_names: tuple[str, ...]
    embedding_dim: int
    metadata: dict[str, str] = field(default_factory=dict)


class _StateBuilder:
    """Fills a module's state dict from named source arrays, refusing anything sloppy."""

    def __init__(self, module: nn.Module, sources: Mapping[str, np.ndarray], label: str) -> None:
        self.module = module
        self.expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        self.sources = sources
        self.label = label
        self.used: set[str] = set()
        self.state: dict[str, torch.Tensor] = {}
        self.origin: dict[str, str] = {}

    def take(self, name: str) -> np.ndarray:
        if name not in self.sources:
            raise WeightsError(f"{self.label}: tensor {name!r} is missing from the source")
        if name in self.used:
            raise WeightsError(f"{self.label}: tensor {name!r} would be used twice")
        self.used.add(name)
        return self.sources[name]

    def put(self, key: str, value: np.ndarray | torch.Tensor, origin: str) -> None:
        if key not in self.expected:
            raise WeightsError(f"{self.label}: the architecture has no parameter {key!r}")
        if key in self.state:
            raise WeightsError(f"{self.label}: {key!r} would be filled twice")
        if isinstance(value, np.ndarray):
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise WeightsError(f"{self.label}: {origin} has non-finite values")
            value = torch.from_numpy(np.array(value, order="C", copy=True))
        tensor = value
        if tuple(tensor.shape) != self.expected[key]:
            raise WeightsError(
                f"{self.label}: {origin} has shape {tuple(tensor.shape)}, "
                f"{key} needs {self.expected[key]}"
            )
        if key.endswith("num_batches_tracked"):
            tensor = tensor.to(torch.int64)
        else:
            if not torch.is_floating_point(tensor):
                raise WeightsError(f"{self.label}: {origin} is not floating point")
            tensor = tensor.to(torch.float32)
        self.state[key] = tensor.contiguous()
        self.origin[key] = origin

    def put_source(self, key: str, name: str, layout: str = "same") -> None:
        """``layout``: ``"same"``, ``"hwio"`` (conv kernel -> OIHW) or ``"io"`` (dense -> out, in)."""
        array = self.take(name)
        if layout == "hwio":
            if array.ndim != 4:
                raise WeightsError(f"{self.label}: {name} is not a 4-d conv kernel: {array.shape}")
            array = array.transpose(3, 2, 0, 1)
        elif layout == "io":
            if array.ndim != 2:
                raise WeightsError(f"{self.label}: {name} is not a 2-d matrix: {array.shape}")
            array = array.T
        self.put(key, array, name)

    def put_constant(self, key: str, fill: float, why: str) -> None:
        shape = self.expected.get(key)
        if shape is None:
            raise WeightsError(f"{self.label}: the architecture has no parameter {key!r}")
        dtype = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        self.put(key, torch.full(shape, fill, dtype=dtype), f"constant: {why}")

    def finish(self, embedding_dim: int, metadata: dict[str, str]) -> ConvertedWeights:
        unused = sorted(set(self.sources) - self.used)
        unfilled = sorted(set(self.expected) - set(self.state))
        if unused or unfilled:
            raise WeightsError(
                f"{self.label}: {len(unused)} source tensors unused {unused[:5]}, "
                f"{len(unfilled)} state-dict keys unfilled {unfilled[:5]}"
            )
        return ConvertedWeights(
            self.state, self.origin, tuple(sorted(self.sources)), embedding_dim, metadata
        )


def _write_atomic(converted: ConvertedWeights, dest: Path) -> None:
    """Write the state dict to ``dest`` (safetensors) through a temp file in the same folder."""
    from safetensors.torch import save

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    metadata = {**converted.metadata, "embedding_dim": str(converted.embedding_dim)}
    data = save(converted.state, metadata=metadata)
    write_atomic(dest, data)
    logger.info("wrote converted FaceNet weights %s (%d tensors)", dest, len(converted.state))


def _put_folded_bn(b: _StateBuilder, key: str, offset_name: str) -> None:
    """An identity BatchNorm whose bias is the folded offset: ``bn(y) = y + offset`` exactly."""
    b.put_constant(f"{key}.weight", 1.0, "identity BN (BatchNorm folded into the conv)")
    b.put_source(f"{key}.bias", offset_name)
    b.put_constant(f"{key}.running_mean", 0.0, "identity BN (BatchNorm folded into the conv)")
    b.put_constant(
        f"{key}.running_var", IDENTITY_RUNNING_VAR, "identity BN: 1/sqrt(var + eps) == 1"
    )
    b.put_constant(f"{key}.num_batches_tracked", 0, "not used in eval mode")


# -------------------------------------------------------------------------------------------------
# Keras .h5 (h5py only)


@dataclass
class KerasWeights:
    """The content of a Keras 2 ``.h5`` model: ``tensors`` keyed ``"<layer>/<weight>"`` (for
    example ``"Conv2d_1a_3x3/kernel"``), ``layers``: layer name -> its Keras config (with
    ``class_name``), ``inbound``: layer name -> the names of the layers it takes input from."""

    tensors: dict[str, np.ndarray]
    layers: dict[str, dict[str, Any]]
    inbound: dict[str, list[str]]


def read_keras_h5(source: Path) -> KerasWeights:
    """Read every weight tensor and the model config of a Keras 2 ``.h5`` file (no TensorFlow)."""
    import json

    import h5py

    try:
        with h5py.File(source, "r") as f:
            if "model_weights" not in f or "model_config" not in f.attrs:
                raise WeightsError(f"{source} is not a Keras 2 full-model .h5 file")
            raw = f.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            tensors: dict[str, np.ndarray] = {}

            def visit(name: str, obj: object) -> None:
                if isinstance(obj, h5py.Dataset):
                    parts = name.split("/")
                    key = f"{parts[0]}/{parts[-1].removesuffix(':0')}"
                    if key in tensors:
                        raise WeightsError(f"{source}: two tensors named {key!r}")
                    tensors[key] = obj[()]

            f["model_weights"].visititems(visit)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read {source} as a Keras HDF5 model: {exc}") from exc
    layers: dict[str, dict[str, Any]] = {}
    inbound: dict[str, list[str]] = {}
    try:
        for layer in config["config"]["layers"]:
            name = layer["config"]["name"]
            layers[name] = {"class_name": layer["class_name"], **layer["config"]}
            inbound[name] = [
                ref[0] for node in layer.get("inbound_nodes", []) for ref in node if ref
            ]
    except (KeyError, TypeError, IndexError) as exc:
        raise WeightsError(f"{source}: unexpected Keras model config ({exc!r})") from exc
    return KerasWeights(tensors, layers, inbound)


def _keras_layer(w: KerasWeights, name: str, class_name: str) -> dict[str, Any]:
    layer = w.layers.get(name)
    if layer is None or layer["class_name"] != class_name:
        raise WeightsError(f"Keras model has no {class_name} layer {name!r}")
    return layer


def _put_keras_bn(b: _StateBuilder, w: KerasWeights, key: str, layer_name: str) -> None:
    bn = b.module.get_submodule(key)
    cfg = _keras_layer(w, layer_name, "BatchNormalization")
    if not math.isclose(cfg["epsilon"], bn.eps, rel_tol=1e-6):
        raise WeightsError(f"{layer_name}: Keras epsilon {cfg['epsilon']}, architecture {bn.eps}")
    if not cfg.get("center", True):
        raise WeightsError(f"{layer_name}: BatchNorm without beta is not supported")
    if cfg.get("scale", True):
        b.put_source(f"{key}.weight", f"{layer_name}/gamma")
    else:
        b.put_constant(f"{key}.weight", 1.0, "Keras BatchNorm scale=False (gamma = 1)")
    b.put_source(f"{key}.bias", f"{layer_name}/beta")
    b.put_source(f"{key}.running_mean", f"{layer_name}/moving_mean")
    b.put_source(f"{key}.running_var", f"{layer_name}/moving_variance")
    b.put_constant(f"{key}.num_batches_tracked", 0, "not used in eval mode")


def _put_keras_conv(b: _StateBuilder, w: KerasWeights, conv: _Conv) -> None:
    name = _keras_name(conv.scope)
    cfg = _keras_layer(w, name, "Conv2D")
    torch_conv = b.module.get_submodule(f"{conv.key}.conv" if conv.basic else conv.key)
    _check_geometry(torch_conv, tuple(cfg["strides"]), cfg["padding"], name)
    if cfg.get("activation", "linear") != "linear" or bool(cfg["use_bias"]) == conv.basic:
        raise WeightsError(f"{name}: unexpected activation/use_bias in the Keras config")
    if conv.basic:
        b.put_source(f"{conv.key}.conv.weight", f"{name}/kernel", "hwio")
        _put_keras_bn(b, w, f"{conv.key}.bn", f"{name}_BatchNorm")
    else:
        b.put_source(f"{conv.key}.weight", f"{name}/kernel", "hwio")
        b.put_source(f"{conv.key}.bias", f"{name}/bias")


def keras_state_dict(w: KerasWeights) -> ConvertedWeights:
    """Map a Keras FaceNet onto :class:`FaceNetEmbedder`; the embedding size is read from the
    ``Bottleneck`` layer. Raises :class:`WeightsError` unless the mapping is one-to-one."""
    try:
        return _keras_state_dict(w)
    except (KeyError, TypeError) as exc:
        raise WeightsError(f"Keras FaceNet: the model config lacks {exc}") from exc


def _keras_state_dict(w: KerasWeights) -> ConvertedWeights:
    kernel = w.tensors.get("Bottleneck/kernel")
    if kernel is None or kernel.ndim != 2:
        raise WeightsError("Keras model has no 2-d Bottleneck/kernel")
    dim = int(kernel.shape[1])
    model = _shape_only(dim)
    b = _StateBuilder(model, w.tensors, "Keras FaceNet")
    convs, residuals = _plan(model)
    for conv in convs:
        _put_keras_conv(b, w, conv)
    dense = _keras_layer(w, "Bottleneck", "Dense")
    if dense["use_bias"] or dense["units"] != dim:
        raise WeightsError("Keras Bottleneck: expected a bias-free Dense layer")
    b.put_source("last_linear.weight", "Bottleneck/kernel", "io")
    _put_keras_bn(b, w, "last_bn", "Bottleneck_BatchNorm")

    # Residual scales: each Lambda(x * scale) takes a block's up-projection as its input.
    scale_of = {_keras_name(r.scope) + "_Conv2d_1x1": r for r in residuals}
    checked = set()
    for name, layer in w.layers.items():
        if layer["class_name"] != "Lambda":
            continue
        sources = [scale_of[i] for i in w.inbound[name] if i in scale_of]
        scale = (layer.get("arguments") or {}).get("scale")
        if len(sources) != 1 or scale is None:
            raise WeightsError(f"Keras Lambda {name!r} is not a residual scale")
        if not math.isclose(scale, sources[0].scale, rel_tol=1e-6):
            raise WeightsError(
                f"{sources[0].key}: Keras scale {scale}, architecture {sources[0].scale}"
            )
        checked.add(sources[0].key)
    if len(checked) != len(residuals):
        raise WeightsError(
            f"Keras model: {len(checked)} residual scales, expected {len(residuals)}"
        )
    return b.finish(dim, {"converter": "keras_h5"})


def convert_keras_h5(source: Path, dest: Path) -> None:
    """Convert the Keras FaceNet ``.h5`` at ``source`` into safetensors at ``dest`` (atomic).

    The result loads with :func:`load_inception_resnet_v1` (embedding size from the file: 128
    for ``facenet_keras_2024.h5``). Conv kernels go HWIO -> OIHW, the Dense kernel is transposed,
    BatchNorm gamma is the constant 1 (the file's layers have ``scale=False``).
    Raises :class:`WeightsError` if any tensor is unused, any key unfilled or any shape wrong.
    """
    converted = keras_state_dict(read_keras_h5(Path(source)))
    converted.metadata["source"] = Path(source).name
    _write_atomic(converted, Path(dest))


# -------------------------------------------------------------------------------------------------
# Frozen TensorFlow GraphDef (protobuf classes from tensorboardX, no TensorFlow)

_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}
_TF_VAL_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 9: "int64_val", 19: "half_val"}
_TF_ROOT = "InceptionResnetV1"


def read_graphdef(source: Path) -> Any:
    """Parse a binary TensorFlow ``GraphDef`` (``tensorboardX.proto.graph_pb2.GraphDef``)."""
    from google.protobuf.message import DecodeError
    from tensorboardX.proto import graph_pb2

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(Path(source).read_bytes())
    except (OSError, DecodeError) as exc:
        raise WeightsError(f"cannot parse {source} as a TensorFlow GraphDef: {exc}") from exc
    return graph


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A ``TensorProto`` as a numpy array (``tensor_content`` bytes, little-endian, or the typed
    value list; a short list is padded with its last value, as TensorFlow does)."""
    dtype = _TF_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise WeightsError(f"unsupported TensorFlow dtype {tensor.dtype}")
    shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    n = int(np.prod(shape, dtype=np.int64))
    if tensor.tensor_content:
        array = np.frombuffer(tensor.tensor_content, dtype=np.dtype(dtype).newbyteorder("<"))
        if array.size != n:
            raise WeightsError(f"tensor_content holds {array.size} values, shape {shape}")
        return array.astype(dtype).reshape(shape)
    if tensor.dtype == 19:  # half_val holds the raw 16-bit patterns as ints
        vals = np.array(tensor.half_val, dtype=np.uint16).view(np.float16)
    else:
        vals = np.array(getattr(tensor, _TF_VAL_FIELDS[tensor.dtype]), dtype=dtype)
    if vals.size > n:
        raise WeightsError(f"tensor holds {vals.size} values, shape {shape}")
    if vals.size == 0:
        return np.zeros(shape, dtype)
    if vals.size < n:
        vals = np.concatenate([vals, np.full(n - vals.size, vals[-1], dtype)])
    return vals.reshape(shape)


def graphdef_constants(graph: Any) -> dict[str, np.ndarray]:
    """Every ``Const`` node of ``graph``, by node name."""
    return {n.name: tensor_to_numpy(n.attr["value"].tensor) for n in graph.node if n.op == "Const"}


def _node_input(name: str) -> str:
    return name.split(":")[0].lstrip("^")


_Geometry = dict[str, tuple[tuple[int, ...], str, str | None]]


def _tf_conv_geometry(graph: Any) -> _Geometry:
    """For each Conv2D, keyed by its weights' node name: (strides (h, w), padding, the name of
    the constant its output gets through a BiasAdd, or None). Read from the graph's edges."""
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(_node_input(i), []).append(n)
    geometry: _Geometry = {}
    for n in graph.node:
        if n.op != "Conv2D":
            continue
        if n.attr["data_format"].s not in (b"", b"NHWC"):
            raise WeightsError(f"{n.name}: data format {n.attr['data_format'].s!r}")
        strides = tuple(n.attr["strides"].list.i)
        if len(strides) != 4 or strides[0] != 1 or strides[3] != 1:
            raise WeightsError(f"{n.name}: strides {strides}")
        if any(d != 1 for d in n.attr["dilations"].list.i):
            raise WeightsError(f"{n.name}: dilated convolutions are not supported")
        adds = [c for c in consumers.get(n.name, []) if c.op == "BiasAdd"]
        bias = _node_input(adds[0].input[1]) if len(adds) == 1 else None
        geometry[_node_input(n.input[1])] = (strides[1:3], n.attr["padding"].s.decode(), bias)
    return geometry


def _put_tf_conv(b: _StateBuilder, conv: _Conv, geometry: _Geometry) -> None:
    """One conv of the frozen graph: HWIO kernel -> OIHW; a basic conv's folded BatchNorm offset
    becomes the bias of an identity BN, an up-projection's ``biases`` the conv's own bias."""
    w_name = f"{_TF_ROOT}/{conv.scope}/weights"
    if w_name not in geometry:
        raise WeightsError(f"GraphDef has no Conv2D reading {w_name}")
    strides, padding, bias = geometry[w_name]
    key = f"{conv.key}.conv" if conv.basic else conv.key
    _check_geometry(b.module.get_submodule(key), strides, padding, w_name)
    want_bias = f"{_TF_ROOT}/{conv.scope}/" + ("Conv2D_bn_offset" if conv.basic else "biases")
    if bias != want_bias:
        raise WeightsError(f"{w_name}: the conv output gets bias {bias}, expected {want_bias}")
    b.put_source(f"{key}.weight", w_name, "hwio")
    if conv.basic:
        _put_folded_bn(b, f"{conv.key}.bn", want_bias)
    else:
        b.put_source(f"{conv.key}.bias", want_bias)


def graphdef_state_dict(graph: Any) -> ConvertedWeights:
    """Map Sandberg's frozen FaceNet GraphDef onto :class:`FaceNetEmbedder` (size read from
    ``Bottleneck/weights``). Raises :class:`WeightsError` unless the mapping is one-to-one.

    Weight tensors are the floating-point ``Const`` nodes; of those, the residual ``mul/x``
    scalars are checked against the architecture's block scales and ``embeddings/Maximum/y``
    (the epsilon of the final L2 normalisation, which this module leaves out) is recognised;
    integer constants (concat axes, reshape shapes) are structure, not weights.
    """
    consts = graphdef_constants(graph)
    weights = f"{_TF_ROOT}/Bottleneck/weights"
    if weights not in consts or consts[weights].ndim != 2:
        raise WeightsError(f"GraphDef has no 2-d {weights}")
    dim = int(consts[weights].shape[1])
    model = _shape_only(dim)
    convs, residuals = _plan(model)

    geometry = _tf_conv_geometry(graph)

    # Scalars: residual scales (checked) and the L2-normalisation epsilon (not part of the module).
    structural: set[str] = {"embeddings/Maximum/y"}
    for r in residuals:
        name = f"{_TF_ROOT}/{r.scope}/mul/x"
        if name not in consts or not math.isclose(float(consts[name]), r.scale, rel_tol=1e-6):
            raise WeightsError(
                f"{r.key}: GraphDef scale {consts.get(name)}, architecture {r.scale}"
            )
        structural.add(name)
    sources = {
        k: v
        for k, v in consts.items()
        if np.issubdtype(v.dtype, np.floating) and k not in structural
    }

    b = _StateBuilder(model, sources, "TF FaceNet GraphDef")
    for conv in convs:
        _put_tf_conv(b, conv, geometry)

    b.put_source("last_linear.weight", weights, "io")
    fused = [n for n in graph.node if n.op.startswith("FusedBatchNorm")]
    if len(fused) != 1:
        raise WeightsError(f"GraphDef has {len(fused)} FusedBatchNorm nodes, expected 1")
    bn_node = fused[0]
    if not math.isclose(bn_node.attr["epsilon"].f, model.last_bn.eps, rel_tol=1e-6):
        raise WeightsError(f"bottleneck BatchNorm epsilon {bn_node.attr['epsilon'].f}")
    gamma, beta, mean, var = (_node_input(i) for i in bn_node.input[1:5])
    b.put_source("last_bn.weight", gamma)
    b.put_source("last_bn.bias", beta)
    b.put_source("last_bn.running_mean", mean)
    b.put_source("last_bn.running_var", var)
    b.put_constant("last_bn.num_batches_tracked", 0, "not used in eval mode")

    return b.finish(dim, {"converter": "tf_graphdef"})


def convert_tf_graphdef(source: Path, dest: Path) -> None:
    """Convert Sandberg's frozen FaceNet GraphDef at ``source`` into safetensors at ``dest``.

    The result loads with :func:`load_inception_resnet_v1` (512-d for ``graph_final.pb``). Each
    conv's folded BatchNorm becomes an identity BN (weight 1, mean 0, var ``1 - eps``) whose bias
    is the folded offset; the bottleneck's BatchNorm is stored unfolded and maps one-to-one.
    Written atomically. Raises :class:`WeightsError` if any tensor is unused, any key unfilled or
    any shape wrong.
    """
    converted = graphdef_state_dict(read_graphdef(Path(source)))
    converted.metadata["source"] = Path(source).name
    _write_atomic(converted, Path(dest))
