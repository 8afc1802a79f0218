"""FaceNet conversion (Keras .h5 and frozen TF GraphDef -> InceptionResnetV1) and the module.

Fast tier: synthetic one-layer sources checked against numpy references (kernel layout, folded
BatchNorm, TF padding), the converters' strictness, and the module's contract (raw embeddings,
gradients to the input). ``weights`` tier: the two real conversions are one-to-one and the
converted networks tell a face from another person.
"""

from __future__ import annotations

import copy
import glob
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from facenet_pytorch.models.inception_resnet_v1 import BasicConv2d, InceptionResnetV1
from torch import nn

from lowkey.errors import WeightsError
from lowkey.models import facenet_convert, facenet_graphdef, facenet_keras
from lowkey.models.facenet import BN_EPS, FaceNetEmbedder, load_inception_resnet_v1
from lowkey.models.facenet_graphdef import (
    convert_tf_graphdef,
    graphdef_constants,
    graphdef_state_dict,
    read_graphdef,
    tensor_to_numpy,
)
from lowkey.models.facenet_keras import (
    KerasWeights,
    convert_keras_h5,
    keras_state_dict,
    read_keras_h5,
)

# -------------------------------------------------------------------------------------------------
# Independent references


def conv_nhwc(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """TensorFlow's Conv2D in float64: ``x`` (N, H, W, C), ``w`` (kh, kw, C, O) HWIO."""
    kh, kw = w.shape[:2]
    if padding == "SAME":  # TF: out = ceil(in / stride), the extra pixel goes after
        pads = []
        for size, k in ((x.shape[1], kh), (x.shape[2], kw)):
            out = -(-size // stride)
            total = max((out - 1) * stride + k - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    oh = (x.shape[1] - kh) // stride + 1
    ow = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            out += patch @ w[i, j].astype(np.float64)
    return out


# One stem conv in each geometry the network uses: (in, out, kernel, stride, TF padding).
GEOMETRIES = [
    (3, 5, (3, 3), 2, "VALID"),
    (4, 6, (1, 3), 1, "SAME"),
    (4, 3, (7, 1), 1, "SAME"),
]


def _torch_conv(
    cin: int, cout: int, kernel: tuple[int, int], stride: int, padding: str
) -> nn.Module:
    pad = (0, 0) if padding == "VALID" else ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    return nn.ModuleDict({"stem": BasicConv2d(cin, cout, kernel, stride, pad)}).eval()


# -------------------------------------------------------------------------------------------------
# Synthetic TF GraphDef: the folded BatchNorm is exact


def _graphdef_tensor(t, array: np.ndarray, as_list: bool) -> None:
    t.dtype = 1  # DT_FLOAT
    for d in array.shape:
        t.tensor_shape.dim.add(size=d)
    if as_list:
        t.float_val.extend(array.ravel().tolist())
    else:
        t.tensor_content = array.astype("<f4").tobytes()


def _one_conv_graph(w: np.ndarray, offset: np.ndarray, stride: int, padding: str, as_list: bool):
    """Input -> Conv2D -> BiasAdd(folded offset) -> Relu, named like Sandberg's graph."""
    from tensorboardX.proto import graph_pb2

    scope = "InceptionResnetV1/Conv2d_1a_3x3"
    g = graph_pb2.GraphDef()
    g.node.add(name="input", op="Placeholder").attr["dtype"].type = 1
    for name, value in ((f"{scope}/weights", w), (f"{scope}/Conv2D_bn_offset", offset)):
        node = g.node.add(name=name, op="Const")
        node.attr["dtype"].type = 1
        _graphdef_tensor(node.attr["value"].tensor, value, as_list and value.ndim == 1)
    conv = g.node.add(name=f"{scope}/Conv2D", op="Conv2D", input=["input:0", f"{scope}/weights"])
    conv.attr["strides"].list.i.extend([1, stride, stride, 1])
    conv.attr["padding"].s = padding.encode()
    conv.attr["data_format"].s = b"NHWC"
    g.node.add(
        name=f"{scope}/BatchNorm/FusedBatchNorm_1",
        op="BiasAdd",
        input=[f"{scope}/Conv2D", f"{scope}/Conv2D_bn_offset"],
    )
    g.node.add(name=f"{scope}/Relu", op="Relu", input=[f"{scope}/BatchNorm/FusedBatchNorm_1"])
    return g


@pytest.mark.parametrize("as_list", [False, True], ids=["tensor_content", "float_val"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[2]}-s{g[3]}-{g[4]}")
def test_graphdef_folded_conv_matches_numpy(tmp_path, geometry, as_list):
    cin, cout, kernel, stride, padding = geometry
    rng = np.random.default_rng(0)
    w = rng.normal(size=(*kernel, cin, cout)).astype(np.float32)
    offset = rng.normal(size=cout).astype(np.float32)
    path = tmp_path / "one_conv.pb"
    path.write_bytes(_one_conv_graph(w, offset, stride, padding, as_list).SerializeToString())

    graph = read_graphdef(path)
    module = _torch_conv(cin, cout, kernel, stride, padding)
    b = facenet_convert.StateBuilder(module, graphdef_constants(graph), "synthetic graph")
    facenet_graphdef._put_tf_conv(
        b, facenet_convert.Conv("stem", "Conv2d_1a_3x3"), facenet_graphdef._tf_conv_geometry(graph)
    )
    module.load_state_dict(b.finish(cout, {}).state)

    x = rng.normal(size=(2, 11, 12, cin)).astype(np.float32)
    want = np.maximum(conv_nhwc(x.astype(np.float64), w, stride, padding) + offset, 0)
    with torch.no_grad():
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        got = module["stem"](xt).permute(0, 2, 3, 1).numpy()
        # The identity BatchNorm adds the offset and nothing else, bit for bit.
        y = module["stem"].conv(xt)
        assert torch.equal(module["stem"].bn(y), y + torch.from_numpy(offset).view(1, -1, 1, 1))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_graphdef_refuses_a_conv_whose_geometry_differs(tmp_path):
    w = np.ones((3, 3, 3, 5), np.float32)
    graph = _one_conv_graph(w, np.zeros(5, np.float32), 1, "VALID", False)  # stride 1, not 2
    module = _torch_conv(3, 5, (3, 3), 2, "VALID")
    b = facenet_convert.StateBuilder(module, graphdef_constants(graph), "synthetic graph")
    with pytest.raises(WeightsError, match="strides"):
        facenet_graphdef._put_tf_conv(
            b, facenet_convert.Conv("stem", "Conv2d_1a_3x3"), facenet_graphdef._tf_conv_geometry(graph)
        )


def test_tensor_to_numpy_follows_tensorflow_semantics():
    from tensorboardX.proto import tensor_pb2

    t = tensor_pb2.TensorProto()
    _graphdef_tensor(t, np.arange(6, dtype=np.float32).reshape(2, 3), as_list=False)
    np.testing.assert_array_equal(tensor_to_numpy(t), np.arange(6).reshape(2, 3))
    splat = tensor_pb2.TensorProto(dtype=1, float_val=[1.0, 2.0])  # short list: last value repeats
    splat.tensor_shape.dim.add(size=4)
    np.testing.assert_array_equal(tensor_to_numpy(splat), [1.0, 2.0, 2.0, 2.0])
    scalar = tensor_pb2.TensorProto(dtype=3, int_val=[3])
    assert tensor_to_numpy(scalar).dtype == np.int32 and tensor_to_numpy(scalar) == 3


# -------------------------------------------------------------------------------------------------
# Synthetic Keras .h5: kernel layout and BatchNorm


def _one_conv_h5(path: Path, w, beta, mean, var, stride: int, padding: str, eps: float = BN_EPS):
    name = "Conv2d_1a_3x3"
    layers = [
        {
            "class_name": "Conv2D",
            "config": {
                "name": name,
                "strides": [stride, stride],
                "padding": padding.lower(),
                "use_bias": False,
                "activation": "linear",
            },
            "inbound_nodes": [],
        },
        {
            "class_name": "BatchNormalization",
            "config": {"name": f"{name}_BatchNorm", "epsilon": eps, "center": True, "scale": False},
            "inbound_nodes": [],
        },
    ]
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(
            {"class_name": "Functional", "config": {"layers": layers}}
        )
        f.create_dataset(f"model_weights/{name}/{name}/kernel:0", data=w)
        bn = f"model_weights/{name}_BatchNorm/{name}_BatchNorm"
        for key, value in (("beta", beta), ("moving_mean", mean), ("moving_variance", var)):
            f.create_dataset(f"{bn}/{key}:0", data=value)


def _keras_one_conv(tmp_path, geometry, rng, **kwargs):
    cin, cout, kernel, stride, padding = geometry
    w = rng.normal(size=(*kernel, cin, cout)).astype(np.float32)
    beta, mean = rng.normal(size=(2, cout)).astype(np.float32)
    var = rng.uniform(0.2, 2.0, size=cout).astype(np.float32)
    path = tmp_path / "one_conv.h5"
    _one_conv_h5(path, w, beta, mean, var, stride, padding, **kwargs)
    return read_keras_h5(path), (w, beta, mean, var)


def _fill_keras(module: nn.Module, weights: KerasWeights, cout: int) -> dict:
    b = facenet_convert.StateBuilder(module, weights.tensors, "synthetic h5")
    facenet_keras._put_keras_conv(b, weights, facenet_convert.Conv("stem", "Conv2d_1a_3x3"))
    return b.finish(cout, {}).state


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g[2]}-s{g[3]}-{g[4]}")
def test_keras_conv_bn_matches_numpy(tmp_path, geometry):
    cin, cout, kernel, stride, padding = geometry
    rng = np.random.default_rng(1)
    weights, (w, beta, mean, var) = _keras_one_conv(tmp_path, geometry, rng)
    module = _torch_conv(cin, cout, kernel, stride, padding)
    module.load_state_dict(_fill_keras(module, weights, cout))

    x = rng.normal(size=(2, 10, 13, cin)).astype(np.float32)
    y = conv_nhwc(x.astype(np.float64), w, stride, padding)
    want = np.maximum((y - mean) / np.sqrt(var.astype(np.float64) + BN_EPS) + beta, 0)
    with torch.no_grad():
        got = module["stem"](torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conversion_is_strict(tmp_path):
    geometry = GEOMETRIES[0]
    rng = np.random.default_rng(2)
    module = _torch_conv(*geometry)
    weights, _ = _keras_one_conv(tmp_path, geometry, rng)

    extra = copy.copy(weights)
    extra.tensors = {**weights.tensors, "Stray/kernel": np.zeros(3, np.float32)}
    with pytest.raises(WeightsError, match=r"1 source tensors unused \['Stray/kernel'\]"):
        _fill_keras(module, extra, 5)

    missing = copy.copy(weights)
    missing.tensors = {k: v for k, v in weights.tensors.items() if not k.endswith("/beta")}
    with pytest.raises(WeightsError, match="Conv2d_1a_3x3_BatchNorm/beta.*missing"):
        _fill_keras(module, missing, 5)

    with pytest.raises(WeightsError, match="has shape"):
        _fill_keras(_torch_conv(4, 5, (3, 3), 2, "VALID"), weights, 5)  # 4 input channels

    with pytest.raises(WeightsError, match="strides"):
        _fill_keras(_torch_conv(3, 5, (3, 3), 1, "VALID"), weights, 5)

    other_eps, _ = _keras_one_conv(tmp_path, geometry, rng, eps=1e-5)
    with pytest.raises(WeightsError, match="epsilon"):
        _fill_keras(module, other_eps, 5)

    b = facenet_convert.StateBuilder(module, weights.tensors, "twice")
    b.take("Conv2d_1a_3x3/kernel")
    with pytest.raises(WeightsError, match="used twice"):
        b.take("Conv2d_1a_3x3/kernel")


@pytest.mark.parametrize("convert", [convert_keras_h5, convert_tf_graphdef])
def test_failed_conversion_leaves_nothing(tmp_path, convert):
    source = tmp_path / "garbage.bin"
    source.write_bytes(b"\x08\x96\x01not a model" * 50)
    out = tmp_path / "out"
    with pytest.raises(WeightsError):
        convert(source, out / "model.safetensors")
    assert not out.exists() or list(out.iterdir()) == []


def test_load_refuses_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="cannot read"):
        load_inception_resnet_v1(path, 128)


# -------------------------------------------------------------------------------------------------
# The module: raw embeddings, gradients to the input


def test_embedder_returns_raw_embeddings_and_passes_gradients():
    torch.manual_seed(0)
    model = FaceNetEmbedder(16).eval()
    x = torch.randn(3, 3, 160, 160) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)
    x.requires_grad_(True)
    y = model(x)
    assert y.shape == (3, 16) and y.dtype == torch.float32
    norms = y.norm(dim=1)
    assert not torch.allclose(norms, torch.ones(3), atol=1e-3)
    assert (norms.max() - norms.min()) / norms.mean() > 1e-3
    # Exactly facenet-pytorch's embedding before its final L2 normalisation.
    with torch.no_grad():
        parent = InceptionResnetV1.forward(model, x)
    torch.testing.assert_close(nn.functional.normalize(y, dim=1), parent, rtol=1e-5, atol=1e-6)
    y.norm(dim=1).sum().backward()
    assert torch.isfinite(x.grad).all()
    # The VALID stride-2 stem floors: the last 3 rows and columns reach no output (as in TF).
    assert (x.grad[..., :157, :157] != 0).float().mean() > 0.99
    assert (x.grad[..., 157:, :] == 0).all() and (x.grad[..., 157:] == 0).all()


def test_embedder_checks_the_input_shape():
    model = FaceNetEmbedder(8).eval()
    for shape in ((1, 3, 112, 112), (1, 160, 160, 3), (3, 160, 160)):
        with pytest.raises(ValueError, match=r"\(B, 3, 160, 160\)"):
            model(torch.zeros(shape))


# -------------------------------------------------------------------------------------------------
# The real weights


@pytest.fixture(scope="module")
def keras_source(weight_source) -> Path:
    return weight_source("facenet128")


@pytest.fixture(scope="module")
def graph_source(weight_source) -> Path:
    return weight_source("facenet512")


@pytest.fixture(scope="module")
def keras_weights(keras_source) -> KerasWeights:
    return read_keras_h5(keras_source)


@pytest.fixture(scope="module")
def graph(graph_source):
    return read_graphdef(graph_source)


def _check_one_to_one(converted, sources: dict[str, np.ndarray], dim: int) -> None:
    """Every source tensor fills exactly one key, with the right layout; every key is filled."""
    expected = FaceNetEmbedder(dim).state_dict()
    assert set(converted.state) == set(expected)
    for key, tensor in converted.state.items():
        assert tensor.shape == expected[key].shape, key
    assert sum(not k.endswith("num_batches_tracked") for k in converted.state) == 602

    from_source = [o for o in converted.origin.values() if not o.startswith("constant:")]
    assert len(from_source) == len(set(from_source)), "a source tensor is used twice"
    assert set(from_source) == set(sources) == set(converted.source_names)
    for key, origin in converted.origin.items():
        if origin.startswith("constant:"):
            continue
        array = sources[origin]
        array = {4: lambda a: a.transpose(3, 2, 0, 1), 2: lambda a: a.T}.get(
            array.ndim, lambda a: a
        )(array)
        assert np.array_equal(converted.state[key].numpy(), array), key


@pytest.mark.weights
def test_keras_conversion_is_one_to_one(keras_weights):
    converted = keras_state_dict(keras_weights)
    assert converted.embedding_dim == 128
    assert len(keras_weights.tensors) == 490
    _check_one_to_one(converted, keras_weights.tensors, 128)
    origin, state = converted.origin, converted.state
    # A few entries spelled out by hand (Keras names differ from TF-slim's).
    assert origin["conv2d_1a.conv.weight"] == "Conv2d_1a_3x3/kernel"
    assert origin["repeat_2.3.branch1.2.conv.weight"] == "Block17_4_Branch_1_Conv2d_0c_7x1/kernel"
    assert state["repeat_2.3.branch1.2.conv.weight"].shape == (128, 128, 7, 1)
    assert origin["block8.conv2d.bias"] == "Block8_6_Conv2d_1x1/bias"
    assert origin["mixed_7a.branch2.2.bn.running_var"] == (
        "Mixed_7a_Branch_2_Conv2d_1a_3x3_BatchNorm/moving_variance"
    )
    assert origin["last_linear.weight"] == "Bottleneck/kernel"
    # The file's BatchNorms have scale=False: every gamma is the constant 1.
    gammas = [k for k in state if k.endswith("bn.weight")]
    assert len(gammas) == 112 and all(bool((state[k] == 1).all()) for k in gammas)


@pytest.mark.weights
def test_graphdef_conversion_is_one_to_one(graph):
    converted = graphdef_state_dict(graph)
    assert converted.embedding_dim == 512
    consts = graphdef_constants(graph)
    sources = {k: consts[k] for k in converted.source_names}
    assert len(sources) == 269
    _check_one_to_one(converted, sources, 512)
    # Float constants left out are exactly the 21 residual scales and the L2-norm epsilon.
    floats = {k for k, v in consts.items() if np.issubdtype(v.dtype, np.floating)}
    left_out = floats - set(sources)
    assert len(left_out) == 22 and "embeddings/Maximum/y" in left_out
    origin, state = converted.origin, converted.state
    scope = "InceptionResnetV1/Repeat_1/block17_4/Branch_1/Conv2d_0c_7x1"
    assert origin["repeat_2.3.branch1.2.conv.weight"] == f"{scope}/weights"
    assert origin["repeat_2.3.branch1.2.bn.bias"] == f"{scope}/Conv2D_bn_offset"
    assert origin["block8.conv2d.bias"] == "InceptionResnetV1/Block8/Conv2d_1x1/biases"
    assert origin["last_bn.running_var"] == "InceptionResnetV1/Bottleneck/BatchNorm/moving_variance"
    # Folded BatchNorms are identities: 1 / sqrt(running_var + eps) == 1 exactly in float32.
    for key in (k for k in state if k.endswith(".bn.running_var")):
        assert torch.equal(torch.rsqrt(state[key] + BN_EPS), torch.ones_like(state[key])), key
        assert bool((state[key.replace("running_var", "running_mean")] == 0).all())


@pytest.mark.weights
def test_real_conversions_refuse_stray_or_missing_tensors(keras_weights, graph):
    stray = copy.copy(keras_weights)
    stray.tensors = {**keras_weights.tensors, "Logits/kernel": np.zeros((128, 10), np.float32)}
    with pytest.raises(WeightsError, match="unused.*Logits/kernel"):
        keras_state_dict(stray)
    bad_scale = copy.copy(keras_weights)
    bad_scale.layers = copy.deepcopy(keras_weights.layers)
    bad_scale.layers["lambda_7"]["arguments"]["scale"] = 0.2
    with pytest.raises(WeightsError, match="scale"):
        keras_state_dict(bad_scale)

    from tensorboardX.proto import graph_pb2

    g = graph_pb2.GraphDef()
    g.CopyFrom(graph)
    node = g.node.add(name="Logits/weights", op="Const")
    _graphdef_tensor(node.attr["value"].tensor, np.zeros((512, 10), np.float32), False)
    with pytest.raises(WeightsError, match="unused.*Logits/weights"):
        graphdef_state_dict(g)
    del g.node[-1]
    offset = "InceptionResnetV1/Repeat/block35_2/Branch_2/Conv2d_0b_3x3/Conv2D_bn_offset"
    (index,) = [i for i, n in enumerate(g.node) if n.name == offset]
    del g.node[index]
    with pytest.raises(WeightsError, match="missing"):
        graphdef_state_dict(g)


@pytest.fixture(scope="module")
def converted_files(tmp_path_factory, keras_source, graph_source) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("converted")
    convert_keras_h5(keras_source, out / "facenet128.safetensors")
    convert_tf_graphdef(graph_source, out / "facenet512.safetensors")
    return {
        "facenet128": out / "facenet128.safetensors",
        "facenet512": out / "facenet512.safetensors",
    }


@pytest.mark.weights
def test_converted_files_are_complete_and_atomic(converted_files):
    from safetensors import safe_open

    folder = converted_files["facenet128"].parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "facenet128.safetensors",
        "facenet512.safetensors",
    ]
    for name, dim in (("facenet128", 128), ("facenet512", 512)):
        with safe_open(str(converted_files[name]), "pt") as f:
            assert set(f.keys()) == set(FaceNetEmbedder(dim).state_dict())
            assert f.metadata()["embedding_dim"] == str(dim)
        with pytest.raises(WeightsError, match="does not fit"):
            load_inception_resnet_v1(converted_files[name], 640 - dim)


def _largest_face(mtcnn, image):
    boxes, _ = mtcnn.detect(image)
    assert boxes is not None, "no face found"
    boxes = np.asarray(boxes, np.float32)
    return boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]


@pytest.fixture(scope="module")
def face_photos(astronaut_rgb, faces_dev):
    """The astronaut and the first photo of three faces-dev identities, with MTCNN face boxes."""
    from facenet_pytorch import MTCNN
    from PIL import Image, ImageOps

    mtcnn = MTCNN(image_size=160, post_process=False)
    photos = [Image.fromarray(astronaut_rgb)]
    for folder in sorted(glob.glob(str(faces_dev / "*")))[:3]:
        image = ImageOps.exif_transpose(Image.open(sorted(glob.glob(folder + "/*"))[0]))
        image = image.convert("RGB")
        image.thumbnail((640, 640))
        photos.append(image)
    return [(p, _largest_face(mtcnn, p)) for p in photos]


@pytest.mark.weights
@pytest.mark.parametrize("name", ["facenet128", "facenet512"])
def test_converted_models_tell_faces_apart(name, converted_files, face_photos):
    from facenet_pytorch.models.utils.detect_face import extract_face

    from lowkey.models.recognizer import FaceRecognizer
    from lowkey.models.registry import get_record

    record = get_record(name)
    model = FaceRecognizer(
        record, load_inception_resnet_v1(converted_files[name], record.embedding_dim)
    )
    margin = int(record.contract.box_margin)
    (astronaut, box), others = face_photos[0], face_photos[1:]
    crop = extract_face(astronaut, box, 160, margin)
    shifted = extract_face(astronaut, box + np.array([4, 3, 4, 3], np.float32), 160, margin)
    faces = [crop, crop.flip(-1), shifted] + [extract_face(p, b, 160, margin) for p, b in others]
    x = (torch.stack(faces) / 255.0).requires_grad_(True)  # RGB in [0, 1]

    emb = model(x)
    assert emb.shape == (len(faces), record.embedding_dim)
    cos = nn.functional.normalize(emb, dim=1) @ nn.functional.normalize(emb[0], dim=0)
    # Measured: flip 0.985 / 0.987, shift 0.970 / 0.979, other people -0.14..0.02 / -0.09..0.05
    # (128-d / 512-d); over all 13 faces-dev identities the highest was 0.20 / 0.29.
    assert cos[1] > 0.9 and cos[2] > 0.9, cos
    assert cos[3:].max() < 0.45, cos
    # Raw embeddings (norms 10.6..12.2 / 18..24 measured), not unit vectors.
    norms = emb.detach().norm(dim=1)
    assert norms.min() > 2 and (norms.max() - norms.min()) / norms.mean() > 0.02, norms
    emb[0].norm().backward()
    grad = x.grad[0]
    assert torch.isfinite(grad).all() and (grad[:, :157, :157] != 0).float().mean() > 0.95
    assert x.grad[1:].abs().sum() == 0
