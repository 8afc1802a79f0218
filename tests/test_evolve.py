"""face.evoLVe IR / ResNet backbones: layout, shapes, checkpoint conversion and loading.

The key names and shapes below are those of face.evoLVe's ``backbone/model_irse.py`` (``Backbone``,
``bottleneck_IR``) and ``backbone/model_resnet.py`` (``ResNet``, ``Bottleneck``), as in
ZhaoJ9014/face.evoLVe and the LowKey port cmu-spuds/lowkey_gradio; a checkpoint those classes wrote
must load here key for key. Everything runs on random weights (the real checkpoints need the
network), so the tests stay fast on a 2-core CPU.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file

from lowkey.errors import WeightsError
from lowkey.models.evolve import (
    ARCHITECTURES,
    build_backbone,
    convert_evolve_pth,
    detect_architecture,
    expected_shapes,
    load_evolve,
)
from lowkey.models.registry import EVOLVE_ARCHITECTURES

STAGES = {
    "ir_50": (3, 4, 14, 3),
    "ir_152": (3, 8, 36, 3),
    "resnet_50": (3, 4, 6, 3),
    "resnet_152": (3, 8, 36, 3),
}


# ----------------------------------------------------------------- parameter counts by hand


def _bn(c: int) -> int:
    return 2 * c  # weight and bias (running stats are buffers, not parameters)


def _ir_params(stages: tuple[int, ...]) -> int:
    """Count face.evoLVe IR parameters from its layout, without building anything."""
    total = 3 * 64 * 9 + _bn(64) + 64  # input_layer: conv 3x3, BN, PReLU
    c = 64
    for d, n in zip((64, 128, 256, 512), stages, strict=True):
        for _ in range(n):
            shortcut = 0 if c == d else c * d + _bn(d)  # MaxPool2d(1) or conv 1x1 + BN
            res = _bn(c) + 9 * c * d + d + 9 * d * d + _bn(d)  # BN, conv, PReLU, conv, BN
            total += shortcut + res
            c = d
    return total + _bn(512) + (512 * 7 * 7 * 512 + 512) + _bn(512)  # output_layer


def _resnet_params(stages: tuple[int, ...]) -> int:
    """Count face.evoLVe ResNet parameters from its layout, without building anything."""
    total = 3 * 64 * 49 + _bn(64)  # conv1 7x7, bn1
    c = 64
    for p, n in zip((64, 128, 256, 512), stages, strict=True):
        for _ in range(n):
            block = c * p + _bn(p) + 9 * p * p + _bn(p) + p * 4 * p + _bn(4 * p)
            # The first block of every stage changes the width (stage 1: 64 -> 256 at stride 1;
            # the others also halve the size): only those have a conv 1x1 + BN downsample.
            downsample = c * 4 * p + _bn(4 * p) if c != 4 * p else 0
            total += block + downsample
            c = 4 * p
    return total + _bn(2048) + (2048 * 4 * 4 * 512 + 512) + _bn(512)  # bn_o1, fc, bn_o2


#: What the layouts above give (also what face.evoLVe's own classes report for 112x112 input).
PARAMS = {
    "ir_50": 43_574_976,
    "ir_152": 70_737_600,
    "resnet_50": 40_290_880,
    "resnet_152": 74_926_656,
}
#: Number of state-dict entries (parameters and batch-norm buffers, num_batches_tracked included).
STATE_KEYS = {"ir_50": 349, "ir_152": 687, "resnet_50": 330, "resnet_152": 942}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch_model(request):
    """(architecture, backbone in eval mode); one alive at a time."""
    torch.manual_seed(0)
    return request.param, build_backbone(request.param).eval()


def test_architectures_match_registry():
    assert set(ARCHITECTURES) == set(EVOLVE_ARCHITECTURES)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_count(arch):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = build_backbone(arch)
    counted = sum(p.numel() for p in model.parameters())
    by_hand = (_ir_params if arch.startswith("ir") else _resnet_params)(STAGES[arch])
    assert counted == by_hand == PARAMS[arch]
    assert len(model.state_dict()) == STATE_KEYS[arch]


def test_output_shape(arch_model):
    arch, model = arch_model
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == dict(expected_shapes(arch))
    batches = (1, 2) if arch.endswith("_50") else (1,)  # the 152s once, to keep the CPU time low
    for b in batches:
        with torch.no_grad():
            y = model(torch.rand(b, 3, 112, 112) * 2 - 1)
        assert y.shape == (b, 512)
        assert torch.isfinite(y).all()
        # A raw embedding: not L2-normalised.
        assert not torch.allclose(y.norm(dim=1), torch.ones(b), atol=1e-3)
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\)"):
        model(torch.zeros(1, 3, 160, 160))


def test_unknown_architecture():
    with pytest.raises(ValueError, match="ir_152"):
        build_backbone("ir_101")


# ----------------------------------------------------------- face.evoLVe key names and shapes

_IR_COMMON = {
    "input_layer.0.weight": (64, 3, 3, 3),
    "input_layer.1.running_var": (64,),
    "input_layer.2.weight": (64,),  # PReLU
    "body.0.res_layer.0.weight": (64,),
    "body.0.res_layer.1.weight": (64, 64, 3, 3),
    "body.0.res_layer.2.weight": (64,),
    "body.0.res_layer.3.weight": (64, 64, 3, 3),
    "body.0.res_layer.4.running_mean": (64,),
    "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),  # first unit of stage 2
    "body.3.shortcut_layer.1.weight": (128,),
    "body.3.res_layer.1.weight": (128, 64, 3, 3),
    "output_layer.0.weight": (512,),
    "output_layer.3.weight": (512, 25088),
    "output_layer.3.bias": (512,),
    "output_layer.4.running_var": (512,),
}
_RESNET_COMMON = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_mean": (64,),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.1.conv1.weight": (64, 256, 1, 1),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer2.0.downsample.1.running_var": (512,),
    "layer3.0.downsample.0.weight": (1024, 512, 1, 1),
    "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
    "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "layer4.2.bn3.num_batches_tracked": (),
    "bn_o1.weight": (2048,),
    "fc.weight": (512, 32768),
    "fc.bias": (512,),
    "bn_o2.running_var": (512,),
}
EVOLVE_KEYS = {
    "ir_50": {
        **_IR_COMMON,
        "body.7.shortcut_layer.0.weight": (256, 128, 1, 1),  # 3 + 4
        "body.21.shortcut_layer.0.weight": (512, 256, 1, 1),  # 3 + 4 + 14
        "body.23.res_layer.3.weight": (512, 512, 3, 3),  # last of 24 units
    },
    "ir_152": {
        **_IR_COMMON,
        "body.11.shortcut_layer.0.weight": (256, 128, 1, 1),  # 3 + 8
        "body.47.shortcut_layer.0.weight": (512, 256, 1, 1),  # 3 + 8 + 36
        "body.49.res_layer.3.weight": (512, 512, 3, 3),  # last of 50 units
    },
    "resnet_50": {**_RESNET_COMMON, "layer3.5.conv3.weight": (1024, 256, 1, 1)},
    "resnet_152": {
        **_RESNET_COMMON,
        "layer2.7.bn2.weight": (128,),
        "layer3.35.conv1.weight": (256, 1024, 1, 1),
    },
}
ABSENT_KEYS = {
    # MaxPool2d shortcuts (depth unchanged) carry no parameters.
    "ir_50": [
        "body.0.shortcut_layer.0.weight",
        "body.4.shortcut_layer.0.weight",
        "body.24.res_layer.0.weight",
    ],
    "ir_152": [
        "body.0.shortcut_layer.0.weight",
        "body.12.shortcut_layer.0.weight",
        "body.50.res_layer.0.weight",
    ],
    "resnet_50": ["layer1.1.downsample.0.weight", "layer3.6.conv1.weight", "avgpool.weight"],
    "resnet_152": ["layer1.1.downsample.0.weight", "layer3.36.conv1.weight", "avgpool.weight"],
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_evolve_key_names_and_shapes(arch):
    shapes = expected_shapes(arch)
    for key, shape in EVOLVE_KEYS[arch].items():
        assert key in shapes, key
        assert shapes[key] == shape, key
    for key in ABSENT_KEYS[arch]:
        assert key not in shapes, key
    body_units = {k.split(".")[1] for k in shapes if k.startswith("body.")}
    assert len(body_units) == (sum(STAGES[arch]) if arch.startswith("ir") else 0)


# ------------------------------------------------------------------------------- conversion


def _randomised(arch: str, seed: int) -> torch.nn.Module:
    """A backbone with every parameter and batch-norm statistic random (so nothing is trivial)."""
    g = torch.Generator().manual_seed(seed)
    model = build_backbone(arch)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(seed)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.ndim == 1:  # BN weight/bias, running_mean, PReLU slopes, linear bias
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.25)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    return model.eval()


def _cheap_checkpoint(arch: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Right keys and shapes, a few bytes on disk: expanded scalars keep a one-element storage."""
    return {
        prefix + k: (torch.zeros((), dtype=torch.long) if not s else torch.zeros(()).expand(s))
        for k, s in expected_shapes(arch).items()
    }


@pytest.mark.parametrize(
    ("arch", "wrap"),
    [("ir_50", "state_dict"), ("resnet_50", None)],
)
def test_round_trip_with_module_prefix(tmp_path, arch, wrap):
    original = _randomised(arch, seed=3)
    state = {"module." + k: v for k, v in original.state_dict().items()}
    src = tmp_path / f"Backbone_{arch}.pth"
    torch.save({"state_dict": state, "epoch": 7} if wrap else state, src)
    dest = tmp_path / "converted" / f"{arch}.safetensors"

    convert_evolve_pth(src, dest, arch)
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no temp file left
    stored = load_file(str(dest))
    assert set(stored) == set(expected_shapes(arch))  # prefix stripped, nothing added
    assert not any(k.startswith("module.") for k in stored)

    loaded = load_evolve(dest, arch)
    assert not loaded.training
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        expected, got = original(x), loaded(x)
    assert torch.equal(expected, got)
    assert expected.std() > 0.1  # the comparison is not between two constant outputs

    other = {"ir_50": "ir_152", "resnet_50": "resnet_152"}[arch]
    with pytest.raises(WeightsError, match=f"converted for {arch}, not {other}"):
        load_evolve(dest, other)


def test_checkpoint_without_num_batches_tracked_converts(tmp_path):
    """Checkpoints saved by PyTorch < 0.4.1 have no num_batches_tracked; strict loaders cope."""
    state = {k: v for k, v in _cheap_checkpoint("resnet_50").items() if "num_batches" not in k}
    state["fc.bias"] = torch.arange(512.0)
    src = tmp_path / "old.pth"
    torch.save(state, src)
    dest = tmp_path / "old.safetensors"
    convert_evolve_pth(src, dest, "resnet_50")
    stored = load_file(str(dest))
    assert stored["bn1.num_batches_tracked"].item() == 0
    assert torch.equal(stored["fc.bias"], torch.arange(512.0))
    assert stored["fc.weight"].shape == (512, 32768)


def test_wrong_architecture_names_keys(tmp_path):
    src = tmp_path / "Backbone_IR_152_Arcface_Epoch_112.pth"
    torch.save(_cheap_checkpoint("ir_152", prefix="module."), src)
    dest = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError) as info:
        convert_evolve_pth(src, dest, "resnet_152")
    message = str(info.value)
    assert "missing keys" in message and "conv1.weight" in message
    assert "unexpected keys" in message and "input_layer.0.weight" in message
    assert "ir_152" in message  # what the file really is
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [src]  # no temp file either


def test_wrong_depth_names_missing_units(tmp_path):
    src = tmp_path / "ir50.pth"
    torch.save(_cheap_checkpoint("ir_50"), src)
    with pytest.raises(WeightsError) as info:
        convert_evolve_pth(src, tmp_path / "out.safetensors", "ir_152")
    message = str(info.value)
    assert "missing keys: body.11.shortcut_layer.0.weight" in message  # IR-152's stage 3 start
    assert "unexpected keys: body.7.shortcut_layer.0.weight" in message  # IR-50's stage 3 start
    assert "body.7.res_layer.1.weight: (256, 128, 3, 3) instead of (128, 128, 3, 3)" in message
    assert "face.evoLVe ir_50 checkpoint" in message


def test_wrong_shape_is_named(tmp_path):
    state = _cheap_checkpoint("ir_50")
    state["output_layer.3.weight"] = torch.zeros(()).expand(512, 512 * 14 * 14)  # a 224 model
    src = tmp_path / "ir50_224.pth"
    torch.save(state, src)
    with pytest.raises(WeightsError, match=r"output_layer\.3\.weight: \(512, 100352\)"):
        convert_evolve_pth(src, tmp_path / "out.safetensors", "ir_50")


def _write_pickle(path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize(
    "kind", ["list", "dict_of_numbers", "empty_dict", "whole_module", "plain_pickle", "garbage"]
)
def test_not_a_state_dict(tmp_path, kind):
    src = tmp_path / f"{kind}.pth"
    if kind == "list":
        torch.save([torch.zeros(3)], src)
    elif kind == "dict_of_numbers":
        torch.save({"input_layer.0.weight": 1, "epoch": 3}, src)
    elif kind == "empty_dict":
        torch.save({}, src)
    elif kind == "whole_module":  # weights_only refuses to unpickle arbitrary classes
        torch.save(torch.nn.Linear(2, 2), src)
    elif kind == "plain_pickle":
        _write_pickle(src, {"a": 1})
    else:
        src.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint at all" * 10)
    dest = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError, match=str(src.name)):
        convert_evolve_pth(src, dest, "ir_50")
    assert not dest.exists()


def test_unknown_architecture_in_convert(tmp_path):
    src = tmp_path / "x.pth"
    torch.save(_cheap_checkpoint("ir_50"), src)
    with pytest.raises(WeightsError, match="ir_101"):
        convert_evolve_pth(src, tmp_path / "out.safetensors", "ir_101")


def test_load_evolve_rejects_garbage(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"nope")
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        load_evolve(garbage, "resnet_50")


# ---------------------------------------------------------------------------------- detection


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_detect_architecture(arch):
    state = _cheap_checkpoint(arch)
    assert detect_architecture(state) == arch
    assert detect_architecture({"module." + k: v for k, v in state.items()}) == arch
    assert detect_architecture({"state_dict": state}) == arch
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert detect_architecture(old) == arch


def test_detect_architecture_on_real_state_dict():
    with torch.device("meta"):
        state = build_backbone("resnet_50").state_dict()
    assert detect_architecture(state) == "resnet_50"


def test_detect_architecture_declines_unsupported_layouts():
    ir50 = _cheap_checkpoint("ir_50")
    # IR-SE-50: the same units plus a squeeze-excitation module in each.
    se = dict(ir50, **{"body.0.res_layer.5.fc1.weight": torch.zeros(4, 64, 1, 1)})
    assert detect_architecture(se) is None
    # ResNet-101: layer3 has 23 blocks, between ResNet-50's 6 and ResNet-152's 36.
    r152 = _cheap_checkpoint("resnet_152")
    r101 = {
        k: v
        for k, v in r152.items()
        if not k.startswith(("layer2.4", "layer2.5", "layer2.6", "layer2.7"))
    }
    r101 = {
        k: v
        for k, v in r101.items()
        if not any(k.startswith(f"layer3.{i}.") for i in range(23, 36))
    }
    assert detect_architecture(r101) is None
    # A 224x224 model: same keys, a bigger linear layer.
    big = dict(ir50, **{"output_layer.3.weight": torch.zeros(()).expand(512, 100352)})
    assert detect_architecture(big) is None
    assert detect_architecture({}) is None
    assert detect_architecture({"epoch": 3}) is None
