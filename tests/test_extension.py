"""The extension's build, unit tests and lint, from the project's test command: ``npm test``'s
Node unit tests (``extension/test/``), a release build (both manifests from the one template, the
ids from ``native_host/extension_ids.json``, no test hosts), and ``web-ext lint`` of the Firefox
package. Skipped, saying why, without Node 20 (and, for the lint, ``npm ci --prefix extension``).
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile

import pytest
from browser_helpers import NODE_MODULES, REPO, _ids, _require, _require_node_tools

EXTENSION = REPO / "extension"


@pytest.fixture(scope="module")
def node():
    node = _require("node", "LOWKEY_NODE", "Node 20 or newer builds and tests the extension")
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 20:
        pytest.skip(f"node {version} is too old (Node 20 or newer)")
    return node


@pytest.fixture(scope="module")
def release(node, tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    done = subprocess.run([str(node), str(EXTENSION / "scripts" / "build.mjs"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_node_unit_tests_pass(node):
    done = subprocess.run([str(node), "--test", "test/"], cwd=EXTENSION, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass " in done.stdout


def test_release_build_pins_the_ids_and_has_no_test_hosts(release):
    ids = _ids()
    chromium = json.loads((release / "chromium" / "manifest.json").read_text())
    firefox = json.loads((release / "firefox" / "manifest.json").read_text())
    assert chromium["manifest_version"] == firefox["manifest_version"] == 3
    assert chromium["key"] == ids["chromium"]["key"] and "key" not in firefox
    assert firefox["browser_specific_settings"]["gecko"]["id"] == ids["firefox"]["id"]
    assert chromium["background"]["service_worker"] == "background.js"
    assert firefox["background"]["scripts"] == ["background.js"]
    for manifest in (chromium, firefox):
        assert "nativeMessaging" in manifest["permissions"]
        patterns = [m for script in manifest["content_scripts"] for m in script["matches"]]
        assert not any("127.0.0.1" in h or "localhost" in h
                       for h in manifest["host_permissions"] + patterns)
        # Nothing a page can fetch (issue 22): the content script is one bundled file.
        assert "web_accessible_resources" not in manifest
    assert not (release / "chromium" / "content" / "controller.js").exists()
    assert "import(" not in (release / "firefox" / "content.js").read_text()
    config = (release / "chromium" / "config.js").read_text()
    assert json.dumps(ids["native_host_name"]) in config and "EXTRA_SITES = []" in config
    assert (release / "firefox" / "messages.schema.json").read_bytes() == (
        REPO / "native_host" / "messages.schema.json").read_bytes()
    with zipfile.ZipFile(release / "lowkey-firefox.xpi") as xpi:
        assert xpi.testzip() is None and "manifest.json" in xpi.namelist()
    with zipfile.ZipFile(release / "lowkey-chromium.zip") as package:
        assert json.loads(package.read("manifest.json")) == chromium


def test_firefox_package_passes_web_ext_lint(release, tmp_path):
    node = _require_node_tools("web-ext")
    done = subprocess.run([str(node), str(NODE_MODULES / "web-ext" / "bin" / "web-ext.js"), "lint",
                           "--source-dir", str(release / "firefox"), "--output", "json",
                           "--no-config-discovery"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(tmp_path)})
    lint = json.loads(done.stdout[done.stdout.find("{"):])
    assert lint["errors"] == [], json.dumps(lint["errors"], indent=2)
    assert lint["warnings"] == [], json.dumps(lint["warnings"], indent=2)
