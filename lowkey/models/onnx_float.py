"""Float ONNX face-recognition networks (InsightFace's ArcFace models and the like) as torch
modules.

:func:`convert_onnx` checks the source once and writes the cached "converted" ONNX with a
dynamic batch dimension (a final ``Reshape`` to a fixed ``[1, -1]``, as some exports have, is
made ``[-1, D]``); :func:`load_onnx` turns it into a differentiable torch module with onnx2torch.
The network's input layout, colour order and value range are the registry record's
:class:`~lowkey.models.registry.InputContract`; this module does not normalise anything.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from lowkey.errors import WeightsError
from lowkey.files import write_atomic
from lowkey.models.sface import make_batch_dynamic

logger = logging.getLogger(__name__)


def _unfix_final_reshape(model: onnx.ModelProto) -> int:
    """Turn constant ``Reshape`` shapes of ``[1, -1]`` into ``[-1, D]`` (D: the output's last
    dimension), so a batch of faces keeps its rows. Returns how many were changed."""
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    width = out_dims[-1].dim_value if out_dims else 0
    constants = {init.name: init for init in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in constants:
            continue
        init = constants[node.input[1]]
        if list(numpy_helper.to_array(init)) == [1, -1] and width > 0:
            init.CopyFrom(numpy_helper.from_array(np.array([-1, width], np.int64), init.name))
            changed += 1
    return changed


def convert_onnx(source: Path, dest: Path) -> None:
    """Check the float ONNX at ``source`` and write it to ``dest`` (atomically) with a dynamic
    batch dimension. Raises :class:`~lowkey.errors.WeightsError` when it is not a one-input,
    one-output graph that onnx accepts."""
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise WeightsError(f"cannot read ONNX {source}: {exc}") from exc
    initialisers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initialisers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise WeightsError(f"{source}: expected one input and one output, got "
                           f"{[i.name for i in inputs]} and "
                           f"{[o.name for o in model.graph.output]}")
    reshapes = _unfix_final_reshape(model)
    make_batch_dynamic(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise WeightsError(f"{source}: not a valid ONNX graph: {exc}") from exc
    write_atomic(dest, model.SerializeToString())
    logger.info("wrote %s (%d fixed reshapes made batch-wise)", dest, reshapes)


def load_onnx(path: Path) -> torch.nn.Module:
    """The converted ONNX at ``path`` as a float32 torch module in eval mode (onnx2torch):
    ``forward(x)`` takes ``(B, 3, S, S)`` as the record's contract says and returns ``(B, D)``
    raw embeddings."""
    from onnx2torch import convert

    try:
        module = convert(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot turn {path} into torch: {exc}") from exc
    return module.float().eval()


__all__ = ["convert_onnx", "load_onnx"]
