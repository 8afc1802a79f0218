"""What the FaceNet converters share: every convolution of ``InceptionResnetV1`` with its
TF-slim scope name (:func:`conv_plan`), and a strict builder of its state dict.

Every weight tensor of a source is used exactly once and every state-dict key is filled (490
Keras tensors, 269 GraphDef constants -> 602 float tensors, the rest being constants the source
implies: gamma 1, identity BatchNorm statistics). :class:`StateBuilder` checks it, and the
converters check the geometry (strides, padding, residual scales, BatchNorm epsilons) against
what the source file says (:func:`check_geometry`); any mismatch raises
:class:`~lowkey.errors.WeightsError`. :func:`write_converted` writes the result as safetensors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lowkey.errors import WeightsError
from lowkey.files import write_atomic
from lowkey.models.facenet import FaceNetEmbedder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conv:
    """One convolution: ``key`` is the torch prefix (``repeat_1.0.branch1.1``), ``scope`` the
    TF-slim scope (``Repeat/block35_1/Branch_1/Conv2d_0b_3x3``). ``basic``: a bias-free conv
    followed by BatchNorm (``key.conv`` / ``key.bn``); otherwise the residual up-projection, a
    conv with bias (``key``)."""

    key: str
    scope: str
    basic: bool = True


@dataclass(frozen=True)
class Residual:
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


def conv_plan(model: FaceNetEmbedder) -> tuple[list[Conv], list[Residual]]:
    """All 132 convolutions and 21 residual blocks of ``model``, in network order."""
    convs = [Conv(k, s) for k, s in _STEM]
    residuals: list[Residual] = []

    def repeat(key: str, scope_of: str, layout: tuple[tuple[str, str], ...], n: int) -> None:
        for i in range(n):
            k, s = f"{key}.{i}", scope_of.format(i + 1)
            convs.extend(Conv(f"{k}.{a}", f"{s}/{b}") for a, b in layout)
            convs.append(Conv(f"{k}.conv2d", f"{s}/Conv2d_1x1", basic=False))
            residuals.append(Residual(k, s, float(model.get_submodule(k).scale)))

    repeat("repeat_1", "Repeat/block35_{}", _BLOCK35, len(model.repeat_1))
    convs.extend(Conv(f"mixed_6a.{a}", f"Mixed_6a/{b}") for a, b in _MIXED_6A)
    repeat("repeat_2", "Repeat_1/block17_{}", _BLOCK17, len(model.repeat_2))
    convs.extend(Conv(f"mixed_7a.{a}", f"Mixed_7a/{b}") for a, b in _MIXED_7A)
    repeat("repeat_3", "Repeat_2/block8_{}", _BLOCK8, len(model.repeat_3))
    convs.extend(Conv(f"block8.{a}", f"Block8/{b}") for a, b in _BLOCK8)
    convs.append(Conv("block8.conv2d", "Block8/Conv2d_1x1", basic=False))
    residuals.append(Residual("block8", "Block8", float(model.block8.scale)))
    return convs, residuals


def check_geometry(conv: nn.Conv2d, strides: tuple[int, ...], padding: str, where: str) -> None:
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


class StateBuilder:
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


def write_converted(converted: ConvertedWeights, dest: Path) -> None:
    """Write the state dict to ``dest`` (safetensors) through a temp file in the same folder."""
    from safetensors.torch import save

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    metadata = {**converted.metadata, "embedding_dim": str(converted.embedding_dim)}
    data = save(converted.state, metadata=metadata)
    write_atomic(dest, data)
    logger.info("wrote converted FaceNet weights %s (%d tensors)", dest, len(converted.state))
