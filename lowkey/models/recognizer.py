"""A face-recognition network behind one uniform interface: RGB faces in [0, 1] in, embeddings out.

The record's :class:`~lowkey.models.registry.InputContract` (colour order, value range,
standardisation) is applied here, inside the module, so that alignment and attack code never
deal with a model's private conventions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lowkey.models.registry import WeightRecord


class FaceRecognizer(nn.Module):
    """Wrap a converted network with its record's input contract.

    ``forward(faces)``: ``faces`` is ``(B, 3, S, S)`` float, RGB, values in [0, 1], already
    aligned to this model's template and ``S = record.contract.size``. Returns ``(B, D)`` raw
    (not normalised) embeddings, ``D = record.embedding_dim``.
    """

    def __init__(self, record: WeightRecord, net: nn.Module) -> None:
        super().__init__()
        self.record = record
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def input_size(self) -> int:
        return self.record.contract.size

    def prepare(self, faces: torch.Tensor) -> torch.Tensor:
        """Apply colour order and normalisation: ``(B, 3, S, S)`` RGB [0, 1] -> network input."""
        contract = self.record.contract
        size = contract.size
        if faces.ndim != 4 or faces.shape[1] != 3 or faces.shape[-2:] != (size, size):
            raise ValueError(
                f"{self.name} expects faces of shape (B, 3, {size}, {size}), got {tuple(faces.shape)}"
            )
        x = faces.flip(1) if contract.colour == "BGR" else faces
        if contract.normalisation == "unit":
            return x
        if contract.normalisation == "scale255":
            return x * 255.0
        if contract.normalisation == "fixed_standardise":
            return (x * 255.0 - 127.5) / 128.0
        if contract.normalisation == "half":
            return (x - 0.5) / 0.5
        if contract.normalisation == "per_image_standardise":
            x = x * 255.0
            n = x[0].numel()
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
            return (x - mean) / std.clamp_min(1.0 / math.sqrt(n))
        raise ValueError(f"unknown normalisation {contract.normalisation!r}")

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(faces))
