"""FaceNet (Inception-ResNet-v1) as a differentiable torch module, built from converted weights.

The architecture is facenet-pytorch's ``InceptionResnetV1`` (that of David Sandberg's TF-slim
FaceNet), for two weight sources of the same layout, converted once into safetensors whose keys
are exactly ``InceptionResnetV1``'s state-dict keys (without ``logits``):

- ``facenet128``: a Keras 2 ``.h5`` file, 128-d embeddings (:mod:`lowkey.models.facenet_keras`);
- ``facenet512``: Sandberg's frozen TensorFlow GraphDef, 512-d embeddings
  (:mod:`lowkey.models.facenet_graphdef`).

:func:`load_inception_resnet_v1` builds :class:`FaceNetEmbedder` from a converted file.

Input contract of the built module (the record's normalisation is applied before it, by
:class:`lowkey.models.recognizer.FaceRecognizer`): ``(B, 3, 160, 160)`` float32, RGB, already
normalised - per-image standardisation for ``facenet128``, ``(255 x - 127.5) / 128`` for
``facenet512``. Both sources were trained on RGB (checked on real faces: BGR input lowers the
same-identity cosine and the pair accuracy).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lowkey.errors import WeightsError

try:
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the FaceNet models need facenet-pytorch, a dependency of LowKey: reinstall LowKey "
        "(pip install lowkey, or bash installers/setup.sh)"
    ) from _exc

#: Side of the square input, in pixels. The TF graph ends with a 3x3 VALID average pool, which
#: equals facenet-pytorch's global average pool only at this size.
INPUT_SIZE = 160
#: Channels of the pooled feature vector (input of the bottleneck layer).
FEATURE_DIM = 1792
#: Epsilon of every BatchNorm in both sources (checked against each file).
BN_EPS = 1e-3



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
    model = shape_only(embedding_dim)
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


def shape_only(embedding_dim: int) -> FaceNetEmbedder:
    """The architecture on the meta device: shapes and hyper-parameters, no memory, no init."""
    with torch.device("meta"):
        return FaceNetEmbedder(embedding_dim)


__all__ = ["BN_EPS", "FEATURE_DIM", "INPUT_SIZE", "FaceNetEmbedder", "load_inception_resnet_v1",
           "shape_only"]
