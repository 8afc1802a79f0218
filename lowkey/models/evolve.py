"""face.evoLVe's IR and ResNet backbones, laid out so that its checkpoints load key for key.

The LowKey paper attacks an ensemble of face.evoLVe's IR-152 and ResNet-152 backbones, trained
with ArcFace and CosFace heads. Users supply those checkpoints (``Backbone_IR_152_Arcface_Epoch_112.pth``
and the like): pickled state dicts, sometimes with a ``module.`` prefix left by ``DataParallel``.
This module defines the four backbones LowKey supports with exactly face.evoLVe's module names,
so every key and shape of such a checkpoint has its place here, and converts a checkpoint once,
strictly checked, into a safetensors file.

Module tree (the names are what checkpoint keys are made of):

- IR-50 / IR-152 (face.evoLVe ``backbone/model_irse.py``, mode ``"ir"``, 112x112 input):
  ``input_layer`` = Sequential(Conv 3->64 3x3, BN2d, PReLU); ``body`` = Sequential of IR units,
  stages of [3, 4, 14, 3] (IR-50) or [3, 8, 36, 3] (IR-152) units with depths 64, 128, 256, 512,
  the first unit of each stage with stride 2; each unit has ``shortcut_layer`` (MaxPool2d(1, stride)
  when the depth does not change, else Sequential(Conv 1x1 with stride, BN2d)) and ``res_layer`` =
  Sequential(BN2d, Conv 3x3, PReLU, Conv 3x3 with stride, BN2d); ``output_layer`` =
  Sequential(BN2d(512), Dropout, Flatten, Linear(512*7*7, 512), BN1d(512)).
- ResNet-50 / ResNet-152 (face.evoLVe ``backbone/model_resnet.py``, 112x112 input): ``conv1``
  (7x7, stride 2), ``bn1``, ``relu``, ``maxpool`` (3x3, stride 2), ``layer1``..``layer4`` of
  [3, 4, 6, 3] or [3, 8, 36, 3] bottlenecks (``conv1``/``bn1``, ``conv2``/``bn2`` (3x3, carries the
  stride), ``conv3``/``bn3``, optional ``downsample`` = Sequential(Conv 1x1, BN2d)), then ``bn_o1``
  (BN2d(2048)), ``dropout``, ``fc`` = Linear(2048*4*4, 512), ``bn_o2`` (BN1d(512)).

Every backbone maps ``(B, 3, 112, 112)`` float RGB faces normalised as ``(x - 0.5) / 0.5`` (so in
[-1, 1]), aligned to the ArcFace 5-point template, to ``(B, 512)`` raw embeddings (not
L2-normalised). The normalisation is not done here: :class:`lowkey.models.recognizer.FaceRecognizer`
applies it from the record's input contract.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from lowkey.errors import WeightsError
from lowkey.files import write_atomic

logger = logging.getLogger(__name__)

#: Side of the square input face, in pixels.
INPUT_SIZE = 112
#: Length of the embedding every backbone returns.
EMBEDDING_DIM = 512

_IR_STAGES = {"ir_50": (3, 4, 14, 3), "ir_152": (3, 8, 36, 3)}
_RESNET_STAGES = {"resnet_50": (3, 4, 6, 3), "resnet_152": (3, 8, 36, 3)}
_DEPTHS = (64, 128, 256, 512)
#: How many keys of a kind to name in an error message before summarising the rest.
_NAMED_KEYS = 8


def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(
            f"face.evoLVe backbones expect (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) input, "
            f"got {tuple(x.shape)}"
        )


# --------------------------------------------------------------------------- IR (model_irse.py)


class IRUnit(nn.Module):
    """face.evoLVe's ``bottleneck_IR`` (no squeeze-excitation): ``res_layer(x) + shortcut_layer(x)``.

    ``(B, in_channels, H, W) -> (B, depth, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            # A 1x1 max-pool is plain subsampling; it has no parameters.
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """face.evoLVe's ``Backbone(input_size=[112, 112], num_layers, mode="ir")``.

    ``stages``: units per stage, (3, 4, 14, 3) for IR-50 and (3, 8, 36, 3) for IR-152.
    ``forward``: ``(B, 3, 112, 112)`` RGB in [-1, 1] -> ``(B, 512)`` raw embedding.
    """

    def __init__(self, stages: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        # Registered before ``body``, as in face.evoLVe, so state-dict keys come in its order.
        # 112 / 2**4 = 7: four stride-2 stages leave a 7x7 map.
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, EMBEDDING_DIM),
            nn.BatchNorm1d(EMBEDDING_DIM),
        )
        units: list[nn.Module] = []
        in_channels = 64
        for depth, count in zip(_DEPTHS, stages, strict=True):
            for i in range(count):
                units.append(IRUnit(in_channels, depth, 2 if i == 0 else 1))
                in_channels = depth
        self.body = nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        return self.output_layer(self.body(self.input_layer(x)))


# ----------------------------------------------------------------- ResNet (model_resnet.py)


class ResNetBottleneck(nn.Module):
    """face.evoLVe's (torchvision-style) ResNet ``Bottleneck``, expansion 4, stride on the 3x3.

    ``(B, in_channels, H, W) -> (B, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        # Not in place (unlike face.evoLVe): same numbers, and safe under autograd.
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """face.evoLVe's ``ResNet(input_size=[112, 112], Bottleneck, layers)``.

    ``stages``: bottlenecks per stage, (3, 4, 6, 3) for ResNet-50 and (3, 8, 36, 3) for ResNet-152.
    ``forward``: ``(B, 3, 112, 112)`` RGB in [-1, 1] -> ``(B, 512)`` raw embedding.
    """

    def __init__(self, stages: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for index, (planes, count) in enumerate(zip(_DEPTHS, stages, strict=True)):
            blocks = []
            for i in range(count):
                stride = 2 if i == 0 and index > 0 else 1
                blocks.append(ResNetBottleneck(in_channels, planes, stride))
                in_channels = planes * ResNetBottleneck.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        # 112 -> 56 (conv1) -> 28 (maxpool) -> 28, 14, 7, 4 (layer1..4): a 4x4 map.
        self.bn_o1 = nn.BatchNorm2d(2048)
        self.dropout = nn.Dropout()
        self.fc = nn.Linear(2048 * 4 * 4, EMBEDDING_DIM)
        self.bn_o2 = nn.BatchNorm1d(EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn_o1(x)).flatten(1)
        return self.bn_o2(self.fc(x))


# ------------------------------------------------------------------------------ construction

_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "ir_50": lambda: IRBackbone(_IR_STAGES["ir_50"]),
    "ir_152": lambda: IRBackbone(_IR_STAGES["ir_152"]),
    "resnet_50": lambda: ResNetBackbone(_RESNET_STAGES["resnet_50"]),
    "resnet_152": lambda: ResNetBackbone(_RESNET_STAGES["resnet_152"]),
}

#: The architectures this module builds, named as in the registry's ``EVOLVE_ARCHITECTURES``.
ARCHITECTURES: tuple[str, ...] = tuple(_BUILDERS)


def build_backbone(architecture: str) -> nn.Module:
    """A freshly initialised face.evoLVe backbone (train mode, as ``nn.Module`` constructors give).

    ``architecture``: ``"ir_50"``, ``"ir_152"``, ``"resnet_50"`` or ``"resnet_152"``.
    The module maps ``(B, 3, 112, 112)`` float RGB, normalised ``(x - 0.5) / 0.5``, to ``(B, 512)``
    raw embeddings. Its ``state_dict()`` has exactly face.evoLVe's keys and shapes. Call
    ``.eval()`` before use: batch norm and dropout behave differently in train mode.
    """
    try:
        builder = _BUILDERS[architecture]
    except KeyError:
        raise ValueError(
            f"unknown face.evoLVe architecture {architecture!r}; expected one of "
            f"{', '.join(ARCHITECTURES)}"
        ) from None
    return builder()


@functools.cache
def expected_shapes(architecture: str) -> Mapping[str, tuple[int, ...]]:
    """Every state-dict key of ``architecture``, in face.evoLVe's order, and its tensor shape.

    Built on the meta device (no memory, no initialisation), cached, and read-only.
    """
    with torch.device("meta"):
        model = build_backbone(architecture)
    return MappingProxyType({k: tuple(v.shape) for k, v in model.state_dict().items()})


# ------------------------------------------------------------------------ checkpoint handling


def _strip_module_prefix(state: Mapping[str, object]) -> dict[str, object]:
    """Drop the ``module.`` prefix ``nn.DataParallel`` / DDP put on every key (any depth of it)."""
    out = dict(state)
    while out and all(isinstance(k, str) and k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def _unwrap(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a loaded checkpoint (bare, or under ``"state_dict"``)."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(
            f"{source} does not hold a state dict (got {type(obj).__name__}); expected a "
            "face.evoLVe backbone checkpoint (a dict of tensors, optionally under 'state_dict')"
        )
    state = _strip_module_prefix(obj)
    bad = [str(k) for k, v in state.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise WeightsError(
            f"{source} is not a state dict of tensors: {_name_some(bad)} are not tensors"
        )
    return state  # type: ignore[return-value]


def read_evolve_pth(source: Path) -> dict[str, torch.Tensor]:
    """Load a face.evoLVe checkpoint as a state dict on the CPU, ``module.`` prefix removed.

    Only tensors and plain containers are unpickled (``weights_only=True``): a checkpoint that
    holds a whole pickled model, or anything that is not a state dict, raises ``WeightsError``.
    """
    source = Path(source)
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise WeightsError(f"{source} is not a readable torch checkpoint: {exc}") from exc
    return _unwrap(obj, str(source))


def _name_some(keys: list[str]) -> str:
    shown = ", ".join(keys[:_NAMED_KEYS])
    more = len(keys) - _NAMED_KEYS
    return f"{shown} (and {more} more)" if more > 0 else shown


def _mismatches(
    state: Mapping[str, torch.Tensor], architecture: str
) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, shape mismatches) of ``state`` against ``architecture``.

    A missing ``num_batches_tracked`` is not counted: checkpoints saved by PyTorch < 0.4.1 lack
    it, and it plays no part in eval mode.
    """
    shapes = expected_shapes(architecture)
    missing = [k for k in shapes if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in shapes]
    wrong = [
        f"{k}: {tuple(v.shape)} instead of {shapes[k]}"
        for k, v in state.items()
        if k in shapes and tuple(v.shape) != shapes[k]
    ]
    return missing, unexpected, wrong


def detect_architecture(state_dict: Mapping[str, object]) -> str | None:
    """Which of :data:`ARCHITECTURES` a face.evoLVe state dict is, or ``None`` when none fits.

    Accepts the dict as ``torch.load`` gives it: a ``module.`` prefix and a wrapping
    ``{"state_dict": ...}`` are allowed. A checkpoint matches an architecture when its keys and
    shapes are exactly that architecture's (a missing ``num_batches_tracked`` aside), so IR-101,
    IR-SE or ResNet-101 checkpoints give ``None`` rather than a wrong guess.
    """
    try:
        state = _unwrap(state_dict, "state dict")
    except WeightsError:
        return None
    for architecture in ARCHITECTURES:
        if not any(_mismatches(state, architecture)):
            return architecture
    return None


def _check(state: Mapping[str, torch.Tensor], architecture: str, source: str) -> None:
    missing, unexpected, wrong = _mismatches(state, architecture)
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not fit face.evoLVe {architecture}:"]
    if missing:
        lines.append(f"  {len(missing)} missing keys: {_name_some(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys: {_name_some(unexpected)}")
    if wrong:
        lines.append(f"  {len(wrong)} shape mismatches: {_name_some(wrong)}")
    guess = detect_architecture(state)
    if guess is not None:
        lines.append(f"  it looks like a face.evoLVe {guess} checkpoint: give that architecture")
    raise WeightsError("\n".join(lines))


def convert_evolve_pth(source: Path, dest: Path, architecture: str) -> None:
    """Convert a face.evoLVe backbone checkpoint into a safetensors file, checked strictly.

    ``source``: a ``.pth`` state dict (bare or under ``"state_dict"``, ``module.`` prefix
    allowed), loaded with ``weights_only=True``. Every key and shape must be those of
    ``build_backbone(architecture)``; otherwise ``WeightsError`` names the missing and unexpected
    keys and the shape mismatches (and the architecture the file looks like, if any).
    Floating tensors are stored as float32; a missing ``num_batches_tracked`` is stored as 0.
    ``dest`` is written atomically (a temporary file in its folder, then ``os.replace``).
    """
    from safetensors.torch import save

    source, dest = Path(source), Path(dest)
    if architecture not in ARCHITECTURES:
        raise WeightsError(
            f"unknown face.evoLVe architecture {architecture!r}; expected one of "
            f"{', '.join(ARCHITECTURES)}"
        )
    state = read_evolve_pth(source)
    _check(state, architecture, str(source))

    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key in expected_shapes(architecture):
        value = state.get(key)
        if value is None:  # only num_batches_tracked can be absent after _check
            value = torch.zeros((), dtype=torch.long)
        value = value.detach()
        if value.is_floating_point():
            value = value.to(torch.float32)
        value = value.contiguous()
        # safetensors refuses tensors that share storage; a checkpoint rarely has any.
        if value.numel() and value.untyped_storage().data_ptr() in seen:
            value = value.clone()
        if value.numel():
            seen.add(value.untyped_storage().data_ptr())
        tensors[key] = value

    metadata = {"format": "pt", "architecture": architecture, "source": source.name}
    write_atomic(dest, save(tensors, metadata=metadata))
    logger.info("converted %s (%s, %d tensors) to %s", source, architecture, len(tensors), dest)


def load_evolve(path: Path, architecture: str) -> nn.Module:
    """Load a file written by :func:`convert_evolve_pth` into ``build_backbone(architecture)``.

    Returns the module in eval mode on the CPU: ``(B, 3, 112, 112)`` RGB normalised
    ``(x - 0.5) / 0.5`` -> ``(B, 512)`` raw embeddings. ``WeightsError`` when the file cannot be
    read, was converted for another architecture, or its keys or shapes do not fit.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    model = build_backbone(architecture)
    try:
        with safe_open(str(path), framework="pt") as f:
            stored_for = (f.metadata() or {}).get("architecture")
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc
    if stored_for is not None and stored_for != architecture:
        raise WeightsError(f"{path} was converted for {stored_for}, not {architecture}")
    _check(state, architecture, str(path))
    model.load_state_dict(state, strict=False)  # strictness checked above (num_batches_tracked)
    logger.debug("loaded face.evoLVe %s from %s", architecture, path)
    return model.eval()
