"""Which torch device LowKey works on: the one asked for, else CUDA when there is one, else the CPU.

The one place this rule lives (the CLI, the model pool, the daemon's workers, the evaluation and
the benchmarks all ask here). It imports nothing of LowKey, so any caller can use it cheaply.
"""

from __future__ import annotations

import torch

__all__ = ["default_device"]


def default_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` (e.g. ``"cpu"``, ``"cuda:1"``) as a :class:`torch.device`; when it is None
    or empty, ``cuda`` if CUDA is available, else ``cpu``."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
