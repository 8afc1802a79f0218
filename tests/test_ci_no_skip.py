"""tests/conftest.py's CI switch and browser tier: with LOWKEY_CI_NO_SKIP=1 a skip for a missing
install fails, other skips stay skips; without it every skip is a skip (run in a copy of the
conftest, on a small test module of known skips)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SKIPS = '''
import pytest

def test_no_dlib():
    pytest.skip("dlib is not installed (pip install 'lowkey[judge]')")

def test_no_weights():
    pytest.skip("weights for sface not available: offline")

def test_no_module():
    pytest.importorskip("a_module_that_does_not_exist_anywhere")

@pytest.mark.skipif(True, reason="faiss-cpu is not installed")
def test_no_faiss():
    pass

def test_no_photos():
    pytest.skip("../shared/data/faces-dev is absent (real photos live outside the repository)")

def test_no_heif():
    pytest.skip("pillow-heif (the heif extra) is not installed")

@pytest.mark.browser
def test_no_browser():
    pytest.skip("chromium is not installed (apt-get install -y chromium firefox-esr xvfb; "
                "or name one in $LOWKEY_CHROMIUM)")

def test_no_node():
    pytest.skip("node is not installed (Node 20 or newer builds and tests the extension)")

@pytest.mark.browser
def test_browser_without_dlib():
    pytest.skip("dlib is not installed (pip install lowkey[judge])")
'''


def _outcomes(folder: Path, no_skip: bool) -> tuple[int, dict[str, str]]:
    """The run's exit code and each test's outcome: passed, failed (a failure in setup, as a
    skipif's, or in the call) or skipped."""
    env = {k: v for k, v in os.environ.items() if k != "LOWKEY_CI_NO_SKIP"}
    if no_skip:
        env["LOWKEY_CI_NO_SKIP"] = "1"
    junit = folder / f"junit-{no_skip}.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "--rootdir", str(folder), "-c", os.devnull, f"--junitxml={junit}",
                    str(folder / "test_skips.py")],
                   cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = kinds[0] if kinds else "passed"
        outcomes[case.get("name")] = "failed" if outcome in ("failure", "error") else outcome
    return done.returncode, outcomes


@pytest.fixture
def folder(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(TESTS / "browser_helpers.py", tmp_path / "browser_helpers.py")
    (tmp_path / "test_skips.py").write_text(SKIPS)
    return tmp_path


def test_in_ci_a_skip_for_a_missing_install_fails_and_other_skips_stay(folder):
    code, outcomes = _outcomes(folder, no_skip=True)
    assert outcomes == {
        "test_no_dlib": "failed", "test_no_weights": "failed", "test_no_module": "failed",
        "test_no_faiss": "failed", "test_no_heif": "failed", "test_browser_without_dlib": "failed",
        "test_no_photos": "skipped", "test_no_browser": "skipped", "test_no_node": "skipped"}
    assert code == 1  # the run fails


def test_outside_ci_every_skip_is_a_skip(folder):
    code, outcomes = _outcomes(folder, no_skip=False)
    assert set(outcomes.values()) == {"skipped"} and len(outcomes) == 9 and code == 0


def test_a_test_that_drives_a_browser_without_the_browser_marker_is_refused(folder):
    (folder / "test_skips.py").write_text("def test_unmarked(chromium_driver):\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(folder), "-c", os.devnull, "--collect-only",
                           str(folder / "test_skips.py")],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error
    assert "must be marked browser: test_skips.py::test_unmarked" in done.stdout + done.stderr
