"""SFace conversion: block-quantised int8 ONNX -> float ONNX -> torch (lowkey.models.sface).

The real-weight tests need the verified source file (``weight_source("sface")``); the
dequantisation tests build tiny synthetic graphs and need nothing.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lowkey.errors import WeightsError
from lowkey.models.sface import (
    EMBEDDING_DIM,
    TARGET_OPSET,
    convert_sface,
    dequantize_blocked,
    fold_constants,
    load_sface,
)

ort = pytest.importorskip("onnxruntime")

# Measured on the real weights (2-core CPU, torch 2.14, onnxruntime 1.32), as max |diff| over the
# largest embedding norm (norms are 3..7): torch vs onnxruntime 4e-7..9.5e-7 (max abs 4.6e-6);
# one face alone vs inside a batch of 5: 2.2e-7; synthetic graph, folded vs original: 8e-8.
PARITY_REL_TOL = 1e-5
BATCH_REL_TOL = 1e-5


def _ort_run(model_or_path, x: np.ndarray) -> np.ndarray:
    data = (
        model_or_path.SerializeToString()
        if isinstance(model_or_path, onnx.ModelProto)
        else str(model_or_path)
    )
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rel_diff(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| relative to the largest embedding norm of ``ref``."""
    return float(np.abs(out - ref).max() / np.linalg.norm(ref, axis=1).max())


# ---------------------------------------------------------------------------------------------
# Dequantisation on a synthetic graph shaped like SFace's (no weights needed)
# ---------------------------------------------------------------------------------------------

_BLOCK = 8  # 27 = 3*3*3 columns -> 4 blocks, the last one cropped to 3
_BIAS_BLOCK = 4


def _synthetic_parts(rng: np.random.Generator):
    q = rng.integers(-128, 128, (4, 27)).astype(np.int8)
    s = rng.uniform(0.001, 0.05, (4, 4)).astype(np.float32)
    z = rng.integers(-20, 20, (4, 4)).astype(np.int8)
    fq = rng.integers(-128, 128, (6, 4 * 5 * 5)).astype(np.int8)
    fs = rng.uniform(0.001, 0.05, (6, 13)).astype(np.float32)  # 100 columns, blocks of 8
    fz = rng.integers(-20, 20, (6, 13)).astype(np.int8)
    bq = rng.integers(-128, 128, (6,)).astype(np.int8)
    bs = rng.uniform(0.001, 0.05, (2,)).astype(np.float32)  # 6 along axis 0, blocks of 4
    bz = rng.integers(-20, 20, (2,)).astype(np.int8)
    return q, s, z, fq, fs, fz, bq, bs, bz


def _synthetic_model(messy: bool) -> onnx.ModelProto:
    """data (B,3,5,5) -> Sub/Mul -> Conv(DQ blocked axis 1 + Reshape) -> Flatten -> Gemm.

    The Gemm weight is blocked on axis 1, its bias blocked on axis 0 (1-D), as in SFace.
    ``messy`` adds what the real file has: initialisers listed as graph inputs, a dangling input,
    a fixed batch of 1, and a Dropout with a Constant ratio.
    """
    q, s, z, fq, fs, fz, bq, bs, bz = _synthetic_parts(np.random.default_rng(0))
    inits = [
        numpy_helper.from_array(q, "w_q"),
        numpy_helper.from_array(s, "w_s"),
        numpy_helper.from_array(z, "w_z"),
        numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "w_shape"),
        numpy_helper.from_array(fq, "f_q"),
        numpy_helper.from_array(fs, "f_s"),
        numpy_helper.from_array(fz, "f_z"),
        numpy_helper.from_array(bq, "b_q"),
        numpy_helper.from_array(bs, "b_s"),
        numpy_helper.from_array(bz, "b_z"),
        numpy_helper.from_array(np.array([127.5], np.float32), "op1"),
        numpy_helper.from_array(np.array([0.0078125], np.float32), "op2"),
    ]
    nodes = [
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_s", "w_z"], ["w_deq"], axis=1, block_size=_BLOCK
        ),
        helper.make_node("Reshape", ["w_deq", "w_shape"], ["w"]),
        helper.make_node(
            "DequantizeLinear", ["f_q", "f_s", "f_z"], ["f"], axis=1, block_size=_BLOCK
        ),
        helper.make_node(
            "DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], axis=0, block_size=_BIAS_BLOCK
        ),
        helper.make_node("Sub", ["data", "op1"], ["centred"]),
        helper.make_node("Mul", ["centred", "op2"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["conv"], ["flat"]),
        helper.make_node("Gemm", ["flat", "f", "b"], ["emb"], transB=1),
    ]
    batch = 1 if messy else "batch"
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 5, 5])]
    outputs = [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [batch, 6])]
    if messy:
        nodes[-1] = helper.make_node("Gemm", ["drop", "f", "b"], ["emb"], transB=1)
        nodes[-1:-1] = [
            helper.make_node(
                "Constant",
                [],
                ["ratio"],
                value=helper.make_tensor("ratio", TensorProto.FLOAT, [], [0.4]),
            ),
            helper.make_node("Dropout", ["flat", "ratio"], ["drop"]),
        ]
        inputs += [
            helper.make_tensor_value_info("w_q", TensorProto.INT8, [4, 27]),
            helper.make_tensor_value_info("orphan_weight", TensorProto.FLOAT, [4, 3, 3, 3]),
        ]
    graph = helper.make_graph(nodes, "synthetic_sface", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def _loop_reference(q: np.ndarray, s: np.ndarray, z: np.ndarray, block: int) -> np.ndarray:
    """Blocked dequantisation along axis 1 of a 2-D q, one element at a time."""
    out = np.empty(q.shape, np.float32)
    for i in range(q.shape[0]):
        for j in range(q.shape[1]):
            out[i, j] = (int(q[i, j]) - int(z[i, j // block])) * s[i, j // block]
    return out


def test_dequantize_blocked_matches_loop_reference():
    q, s, z, fq, fs, fz, bq, bs, bz = _synthetic_parts(np.random.default_rng(0))
    np.testing.assert_array_equal(
        dequantize_blocked(q, s, z, axis=1, block_size=_BLOCK), _loop_reference(q, s, z, _BLOCK)
    )
    np.testing.assert_array_equal(
        dequantize_blocked(fq, fs, fz, axis=1, block_size=_BLOCK),
        _loop_reference(fq, fs, fz, _BLOCK),
    )
    # 1-D, axis 0 (SFace's Gemm bias): loop over the rows of a column vector.
    bias = _loop_reference(bq[:, None].T, bs[:, None].T, bz[:, None].T, _BIAS_BLOCK)[0]
    np.testing.assert_array_equal(
        dequantize_blocked(bq, bs, bz, axis=0, block_size=_BIAS_BLOCK), bias
    )


def test_dequantize_blocked_rejects_wrong_block_count():
    q = np.zeros((4, 27), np.int8)
    with pytest.raises(ValueError, match="blocked scale"):
        dequantize_blocked(q, np.ones((4, 3), np.float32), None, axis=1, block_size=_BLOCK)


def test_fold_constants_matches_onnxruntime_on_original():
    model = _synthetic_model(messy=False)
    x = np.random.default_rng(1).uniform(0, 255, (2, 3, 5, 5)).astype(np.float32)
    ref = _ort_run(model, x)  # onnxruntime runs blocked DequantizeLinear (opset 21) itself

    folded = fold_constants(model)
    assert not any(n.op_type in ("DequantizeLinear", "Reshape") for n in folded.graph.node)
    assert _rel_diff(_ort_run(folded, x), ref) <= PARITY_REL_TOL


@pytest.mark.parametrize("which", ["conv", "gemm", "bias"])
def test_dequantize_blocked_is_bit_exact_with_onnxruntime(which):
    q, s, z, fq, fs, fz, bq, bs, bz = _synthetic_parts(np.random.default_rng(0))
    q, s, z, axis, block = {
        "conv": (q, s, z, 1, _BLOCK),
        "gemm": (fq, fs, fz, 1, _BLOCK),
        "bias": (bq, bs, bz, 0, _BIAS_BLOCK),
    }[which]
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["w"], axis=axis, block_size=block)
    graph = helper.make_graph(
        [node],
        "dq",
        [helper.make_tensor_value_info("q", TensorProto.INT8, list(q.shape))],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, list(q.shape))],
        [numpy_helper.from_array(s, "s"), numpy_helper.from_array(z, "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    np.testing.assert_array_equal(
        dequantize_blocked(q, s, z, axis=axis, block_size=block), _ort_run(model, q)
    )


def test_convert_sface_on_messy_synthetic_graph(tmp_path):
    """Initialisers as inputs, a dangling input, batch fixed to 1, Dropout: all handled."""
    dest = tmp_path / "converted.onnx"
    convert_sface(_write(tmp_path / "src.onnx", _synthetic_model(messy=True)), dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted.onnx", "src.onnx"]  # no temp

    converted = onnx.load(str(dest))
    assert [i.name for i in converted.graph.input] == ["data"]
    assert converted.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert converted.opset_import[0].version == TARGET_OPSET
    assert {n.op_type for n in converted.graph.node} == {
        "Sub",
        "Mul",
        "Conv",
        "Flatten",
        "Identity",
        "Gemm",
    }

    x = np.random.default_rng(2).uniform(0, 255, (3, 3, 5, 5)).astype(np.float32)
    ref = _ort_run(_synthetic_model(messy=False), x)
    assert _rel_diff(_ort_run(dest, x), ref) <= PARITY_REL_TOL
    with torch.no_grad():
        out = load_sface(dest)(torch.from_numpy(x)).numpy()
    assert _rel_diff(out, ref) <= PARITY_REL_TOL


def test_convert_sface_rejects_a_file_that_is_not_onnx(tmp_path):
    source = tmp_path / "broken.onnx"
    source.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(WeightsError, match="cannot read SFace ONNX"):
        convert_sface(source, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def _write(path, model: onnx.ModelProto):
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# The real weights
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted_path(weight_source, tmp_path_factory):
    dest = tmp_path_factory.mktemp("sface") / "sface.onnx"
    convert_sface(weight_source("sface"), dest)
    return dest


@pytest.fixture(scope="module")
def net(converted_path):
    return load_sface(converted_path)


def _random_faces(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 112, 112, generator=g) * 255.0


def _structured_faces(astronaut_rgb) -> torch.Tensor:
    """(3, 3, 112, 112) in 0..255: a colour ramp, a checkerboard, the astronaut's face."""
    ramp = torch.linspace(0, 255, 112)
    ramp_img = torch.stack(
        [ramp.expand(112, 112), ramp[:, None].expand(112, 112), torch.full((112, 112), 60.0)]
    )
    yy, xx = torch.meshgrid(torch.arange(112), torch.arange(112), indexing="ij")
    checker = (((yy // 8) + (xx // 8)) % 2 * 255.0).float().expand(3, 112, 112)
    face = torch.from_numpy(astronaut_rgb[30:230, 140:340]).permute(2, 0, 1)[None].float()
    face = torch.nn.functional.interpolate(face, size=(112, 112), mode="bilinear", antialias=True)[
        0
    ]
    return torch.stack([ramp_img, checker, face])


def test_converted_graph_contract(converted_path):
    model = onnx.load(str(converted_path))
    assert model.opset_import[0].version == TARGET_OPSET
    assert not any(
        n.op_type in ("DequantizeLinear", "Reshape", "Dropout") for n in model.graph.node
    )
    # the graph does its own (x - 127.5) * 0.0078125, so the module takes 0..255
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    sub, mul = model.graph.node[0], model.graph.node[1]
    assert (sub.op_type, mul.op_type) == ("Sub", "Mul")
    assert sub.input[0] == "data" and float(inits[sub.input[1]].item()) == 127.5
    assert float(inits[mul.input[1]].item()) == 0.0078125


@pytest.mark.parametrize("batch", [1, 3])
def test_parity_with_onnxruntime(net, converted_path, astronaut_rgb, batch):
    inputs = {
        "random": _random_faces(batch, seed=batch),
        "structured": _structured_faces(astronaut_rgb)[:batch],
    }
    for kind, x in inputs.items():
        ref = _ort_run(converted_path, x.numpy())
        with torch.no_grad():
            out = net(x).numpy()
        assert out.shape == (batch, EMBEDDING_DIM)
        assert _rel_diff(out, ref) <= PARITY_REL_TOL, kind


def test_gradient_reaches_every_pixel(net):
    x = _random_faces(1, seed=7).requires_grad_(True)
    direction = torch.randn(EMBEDDING_DIM, generator=torch.Generator().manual_seed(0))
    (net(x) @ direction).sum().backward()
    # measured: 1.0 (all 37,632 input values get a nonzero gradient)
    assert (x.grad != 0).float().mean().item() == 1.0
    assert torch.isfinite(x.grad).all()


def test_parameter_count(net):
    params = sum(p.numel() for p in net.parameters())
    floats = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    # measured: 9,631,936 parameters + 35,168 float buffers (BN statistics, PReLU slopes,
    # the two normalisation scalars) = 9,667,104
    assert 9_600_000 <= params <= 9_660_000
    assert 9_650_000 <= params + floats <= 9_690_000


def test_batch_invariance(net):
    x = _random_faces(5, seed=11)
    with torch.no_grad():
        together = net(x)
        alone = net(x[2:3])
        pair = net(x[1:3])
    assert together.shape == (5, EMBEDDING_DIM) and pair.shape == (2, EMBEDDING_DIM)
    scale = together.norm(dim=1).max().item()
    assert (together[2] - alone[0]).abs().max().item() / scale <= BATCH_REL_TOL
    assert (together[1:3] - pair).abs().max().item() / scale <= BATCH_REL_TOL
    # different faces give different embeddings (the check above is not trivially true)
    assert (together[0] - together[2]).abs().max().item() / scale > 1e-2


def test_module_is_movable(net):
    """Every tensor the module uses is a parameter or buffer, so .to(device) moves it all."""
    for name, module in net.named_modules():
        loose = [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]
        assert not loose, f"{name} holds unregistered tensors {loose}"
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert not net.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(converted_path):
    cpu_net = load_sface(converted_path)
    x = _random_faces(2, seed=3)
    with torch.no_grad():
        ref = cpu_net(x)
        out = cpu_net.to("cuda")(x.to("cuda")).cpu()
    assert (out - ref).abs().max().item() / ref.norm(dim=1).max().item() < 1e-3
