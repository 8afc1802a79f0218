"""The ``facenet128`` converter: a Keras 2 ``.h5`` FaceNet (``facenet_keras_2024.h5``, 128-d
embeddings) onto :class:`~lowkey.models.facenet.FaceNetEmbedder`, read with h5py only (no
TensorFlow). Its BatchNorm layers have ``scale=False`` (no gamma), so every BN weight is the
constant 1. Strict: see :mod:`lowkey.models.facenet_convert`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lowkey.errors import WeightsError
from lowkey.models.facenet import shape_only
from lowkey.models.facenet_convert import (
    Conv,
    ConvertedWeights,
    StateBuilder,
    check_geometry,
    conv_plan,
    write_converted,
)


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


def _put_keras_bn(b: StateBuilder, w: KerasWeights, key: str, layer_name: str) -> None:
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


def _put_keras_conv(b: StateBuilder, w: KerasWeights, conv: Conv) -> None:
    name = _keras_name(conv.scope)
    cfg = _keras_layer(w, name, "Conv2D")
    torch_conv = b.module.get_submodule(f"{conv.key}.conv" if conv.basic else conv.key)
    check_geometry(torch_conv, tuple(cfg["strides"]), cfg["padding"], name)
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
    model = shape_only(dim)
    b = StateBuilder(model, w.tensors, "Keras FaceNet")
    convs, residuals = conv_plan(model)
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
    write_converted(converted, Path(dest))


def _keras_name(scope: str) -> str:
    """Keras layer name of a TF-slim scope: ``Repeat_1/block17_3/Branch_0/Conv2d_1x1`` ->
    ``Block17_3_Branch_0_Conv2d_1x1``; the final ``Block8`` is ``Block8_6``."""
    m = re.fullmatch(r"Repeat(?:_\d)?/block(\d+)_(\d+)(.*)", scope)
    if m:
        scope = f"Block{m[1]}_{m[2]}{m[3]}"
    elif scope == "Block8" or scope.startswith("Block8/"):
        scope = "Block8_6" + scope[len("Block8") :]
    return scope.replace("/", "_")
