"""The ``facenet512`` converter: Sandberg's frozen TensorFlow GraphDef (``graph_final.pb``, 512-d
embeddings) onto :class:`~lowkey.models.facenet.FaceNetEmbedder`, parsed with the GraphDef
protobuf classes shipped by tensorboardX, without TensorFlow. Every convolution's BatchNorm is
folded into it (weights already scaled, the rest a per-channel offset), so each
``BasicConv2d.bn`` is loaded as an exact identity plus the offset as its bias. Strict: see
:mod:`lowkey.models.facenet_convert`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lowkey.errors import WeightsError
from lowkey.models.facenet import BN_EPS, shape_only
from lowkey.models.facenet_convert import (
    Conv,
    ConvertedWeights,
    StateBuilder,
    check_geometry,
    conv_plan,
    write_converted,
)

#: ``running_var`` of an identity BatchNorm: ``1 / sqrt(running_var + eps)`` is exactly 1.0 in
#: float32 (0.999f + 0.001 rounds to 1.0f), so ``bn(y) = y + bias`` bit for bit on the CPU.
IDENTITY_RUNNING_VAR = 1.0 - BN_EPS

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


def _put_tf_conv(b: StateBuilder, conv: Conv, geometry: _Geometry) -> None:
    """One conv of the frozen graph: HWIO kernel -> OIHW; a basic conv's folded BatchNorm offset
    becomes the bias of an identity BN, an up-projection's ``biases`` the conv's own bias."""
    w_name = f"{_TF_ROOT}/{conv.scope}/weights"
    if w_name not in geometry:
        raise WeightsError(f"GraphDef has no Conv2D reading {w_name}")
    strides, padding, bias = geometry[w_name]
    key = f"{conv.key}.conv" if conv.basic else conv.key
    check_geometry(b.module.get_submodule(key), strides, padding, w_name)
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
    model = shape_only(dim)
    convs, residuals = conv_plan(model)

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

    b = StateBuilder(model, sources, "TF FaceNet GraphDef")
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
    write_converted(converted, Path(dest))


def _put_folded_bn(b: StateBuilder, key: str, offset_name: str) -> None:
    """An identity BatchNorm whose bias is the folded offset: ``bn(y) = y + offset`` exactly."""
    b.put_constant(f"{key}.weight", 1.0, "identity BN (BatchNorm folded into the conv)")
    b.put_source(f"{key}.bias", offset_name)
    b.put_constant(f"{key}.running_mean", 0.0, "identity BN (BatchNorm folded into the conv)")
    b.put_constant(
        f"{key}.running_var", IDENTITY_RUNNING_VAR, "identity BN: 1/sqrt(var + eps) == 1"
    )
    b.put_constant(f"{key}.num_batches_tracked", 0, "not used in eval mode")
