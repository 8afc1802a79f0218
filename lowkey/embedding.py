"""Faces in a photo -> each model's aligned crops -> embeddings, differentiably.

This is the ``f_i(A(x))`` of the LowKey objective: ``A`` is :func:`aligned_faces` (constant
transforms from the detector, differentiable warps of the photo) and ``f_i`` a
:class:`~lowkey.models.recognizer.FaceRecognizer`.
"""

from __future__ import annotations

import torch

from lowkey.align import align, alignment_matrix
from lowkey.faces import Face
from lowkey.models.recognizer import FaceRecognizer
from lowkey.models.registry import InputContract


def aligned_faces(pixels: torch.Tensor, faces: list[Face],
                  contract: InputContract) -> torch.Tensor:
    """Crops (N, 3, S, S) RGB [0, 1] of every face in ``pixels`` (3, H, W), per ``contract``."""
    if not faces:
        raise ValueError("no faces to align")
    height, width = pixels.shape[-2:]
    crops = [
        align(pixels, alignment_matrix(contract, face.landmarks_array(), face.box,
                                       (width, height)), contract.size)
        for face in faces
    ]
    return torch.stack(crops)


def embed_faces(pixels: torch.Tensor, faces: list[Face],
                recognizer: FaceRecognizer) -> torch.Tensor:
    """Raw embeddings (N, D) of every face of ``pixels`` (3, H, W) RGB [0, 1] by one model."""
    crops = aligned_faces(pixels, faces, recognizer.record.contract)
    device = next(recognizer.parameters()).device
    return recognizer(crops.to(device))
