"""SFace (OpenCV zoo) as a differentiable torch module.

The source is ``face_recognition_sface_2021dec_int8bq.onnx``: an opset-21 ONNX graph whose weights
are stored block-quantised as int8 and expanded at run time by ``DequantizeLinear`` nodes. Neither
onnxruntime (initialisers also listed as graph inputs, dangling inputs) nor onnx2torch
(``DequantizeLinear``, ``Reshape`` v21) accepts it as is, so :func:`convert_sface` rewrites it once
into a plain float32, opset-17 ONNX graph (the cached "converted" artefact) and :func:`load_sface`
turns that into a torch module with onnx2torch.

The network: ``(B, 3, 112, 112)`` float32, RGB, values 0..255, aligned on the ArcFace 5-point
template; no outside normalisation (the graph computes ``(x - 127.5) * 0.0078125`` itself).
Output: ``(B, 128)`` raw embeddings, not L2-normalised (compare them with cosine similarity).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, version_converter

from lowkey.errors import WeightsError
from lowkey.files import write_atomic

logger = logging.getLogger(__name__)

#: Opset of the converted graph: the newest one onnx2torch converts every node of this graph at.
TARGET_OPSET = 17
#: Input and output layout of the network, batch first.
INPUT_SHAPE = (3, 112, 112)
EMBEDDING_DIM = 128
_BATCH = "batch"
_IR_VERSION = 8  # the IR version of opset 17 (onnx.helper.VERSION_TABLE)


def dequantize_blocked(
    q: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None = None,
    axis: int = 1,
    block_size: int = 0,
) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21) in numpy: ``(q - zero_point) * scale``.

    - ``scale`` a scalar (or one element): per-tensor quantisation.
    - ``block_size == 0`` and ``scale`` 1-D: per-axis, ``scale[i]`` applies to index ``i`` of
      ``q`` along ``axis``.
    - ``block_size > 0``: blocked; ``scale`` has ``q``'s rank and
      ``scale.shape[axis] == ceil(q.shape[axis] / block_size)``; each scale (and zero point) is
      repeated ``block_size`` times along ``axis`` and the result is cropped to ``q``'s shape.

    ``zero_point`` has ``scale``'s shape (``None`` means 0). Returns an array of ``q``'s shape and
    ``scale``'s dtype.
    """
    q_int = q.astype(np.int32)
    zp_int = np.zeros(scale.shape, np.int32) if zero_point is None else zero_point.astype(np.int32)
    if scale.size == 1 and block_size == 0:
        full_scale = scale.reshape(())
        full_zp = zp_int.reshape(())
    elif block_size == 0:
        if scale.ndim != 1 or scale.shape[0] != q.shape[axis]:
            raise ValueError(
                f"per-axis scale {scale.shape} does not match {q.shape} on axis {axis}"
            )
        shape = [1] * q.ndim
        shape[axis] = q.shape[axis]
        full_scale = scale.reshape(shape)
        full_zp = zp_int.reshape(shape)
    else:
        axis = axis % q.ndim
        blocks = -(-q.shape[axis] // block_size)
        if scale.ndim != q.ndim or scale.shape[axis] != blocks:
            raise ValueError(
                f"blocked scale {scale.shape} does not match {q.shape} "
                f"(axis {axis}, block_size {block_size})"
            )
        crop = tuple(slice(0, n) for n in q.shape)
        full_scale = np.repeat(scale, block_size, axis=axis)[crop]
        full_zp = np.repeat(zp_int, block_size, axis=axis)[crop]
    return ((q_int - full_zp).astype(scale.dtype) * full_scale).astype(scale.dtype)


def _reshape(data: np.ndarray, shape: np.ndarray, allowzero: int) -> np.ndarray:
    """ONNX ``Reshape`` on constants: a 0 copies the input's dimension unless ``allowzero``."""
    target = [int(d) for d in shape]
    if not allowzero:
        target = [data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return data.reshape(target)


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold ``DequantizeLinear`` and ``Reshape`` nodes whose inputs are all initialisers.

    Each folded node's output becomes a float initialiser; ``Dropout`` (an identity at inference)
    becomes ``Identity`` so the module is deterministic in any mode; graph inputs that are
    initialisers or feed nothing are dropped, as are initialisers nothing uses. Returns a new
    model; ``model`` is left untouched.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in graph.initializer}

    kept: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        inputs_const = all(name in consts for name in node.input if name)
        if node.op_type == "DequantizeLinear" and inputs_const:
            attrs = _attributes(node)
            q = consts[node.input[0]]
            scale = consts[node.input[1]]
            zp = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            consts[node.output[0]] = dequantize_blocked(
                q, scale, zp, axis=attrs.get("axis", 1), block_size=attrs.get("block_size", 0)
            )
            folded += 1
        elif node.op_type == "Reshape" and inputs_const:
            attrs = _attributes(node)
            consts[node.output[0]] = _reshape(
                consts[node.input[0]], consts[node.input[1]], attrs.get("allowzero", 0)
            )
            folded += 1
        elif node.op_type == "Dropout":
            kept.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], node.name))
        else:
            kept.append(node)
    if any(n.op_type == "DequantizeLinear" for n in kept):
        raise WeightsError("SFace conversion: a DequantizeLinear node has non-constant inputs")

    used = {name for node in kept for name in node.input if name}
    # Constant nodes left without a reader (Dropout's ratio) go too.
    kept = [n for n in kept if n.op_type != "Constant" or any(o in used for o in n.output)]
    used |= {out.name for out in graph.output}
    new_inits = [
        numpy_helper.from_array(np.ascontiguousarray(consts[name]), name)
        for name in sorted(used & consts.keys())
    ]
    new_inputs = [i for i in graph.input if i.name not in consts and i.name in used]

    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    del graph.input[:]
    graph.input.extend(new_inputs)
    del graph.value_info[:]  # stale (fixed batch, removed tensors); shape inference redoes it
    logger.debug("folded %d constant nodes, %d nodes left", folded, len(kept))
    return model


def make_batch_dynamic(model: onnx.ModelProto) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = _BATCH


def convert_sface(source: Path, dest: Path) -> None:
    """Convert the block-quantised int8 SFace ONNX at ``source`` into a float ONNX at ``dest``.

    The result is opset 17, float32 weights, batch dimension dynamic, input ``(B, 3, 112, 112)``
    RGB 0..255, output ``(B, 128)`` raw embeddings. ``dest`` is written atomically (temporary file
    in the same folder, then ``os.replace``). Raises :class:`~lowkey.errors.WeightsError` when the
    source does not have the expected structure.
    """
    source, dest = Path(source), Path(dest)
    logger.info("converting SFace %s -> %s", source, dest)
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise WeightsError(f"cannot read SFace ONNX {source}: {exc}") from exc

    model = fold_constants(model)
    if [i.name for i in model.graph.input] != ["data"] or len(model.graph.output) != 1:
        raise WeightsError(
            "SFace conversion: expected one input 'data' and one output, got inputs "
            f"{[i.name for i in model.graph.input]} and outputs "
            f"{[o.name for o in model.graph.output]}"
        )
    make_batch_dynamic(model)
    onnx_opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if onnx_opset != TARGET_OPSET:
        model = version_converter.convert_version(model, TARGET_OPSET)
    # The source declares IR version 6, older than opset 17 allows; use the one that goes with it.
    model.ir_version = _IR_VERSION
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise WeightsError(f"SFace conversion produced an invalid graph: {exc}") from exc

    write_atomic(dest, model.SerializeToString())
    logger.info("wrote converted SFace (%d bytes) to %s", dest.stat().st_size, dest)


def load_sface(path: Path) -> torch.nn.Module:
    """The converted float ONNX at ``path`` as a torch module (onnx2torch), eval mode, float32.

    ``forward(x)``: ``x`` is ``(B, 3, 112, 112)`` float32, RGB, values 0..255 (the module does its
    own ``(x - 127.5) / 128``); returns ``(B, 128)`` raw, not normalised, embeddings. Every
    constant is a parameter or buffer, so ``.to(device)`` moves the whole network.
    """
    from onnx2torch import convert

    try:
        module = convert(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot turn converted SFace {path} into torch: {exc}") from exc
    return module.float().eval()
