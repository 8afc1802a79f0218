"""The built-in sample photo: scikit-image's astronaut (Eileen Collins; NASA, public domain).

One place for it: ``lowkey protect --sample``, ``lowkey faces --sample``, the daemon's warm-up,
the tests and the benchmarks all take it from here.
"""

from __future__ import annotations

import io

import numpy as np

#: the name a report gives the sample
SAMPLE_NAME = "astronaut.png"


def sample_photo() -> np.ndarray:
    """The sample as (512, 512, 3) uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def sample_png() -> bytes:
    """The sample as PNG bytes, as a user's file would be."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(sample_photo()).save(buffer, format="PNG")
    return buffer.getvalue()
