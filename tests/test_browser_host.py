"""The real browsers find the real native host (issue 11).

Debian's chromium and firefox-esr, headless, each load a minimal MV3 test extension
(``tests/browser/hello_extension/``) that sends ``hello`` to ``org.lowkey.native_host`` and POSTs
the reply to a small HTTP server of this test. The native-messaging manifests are written by the
real ``lowkey install --user`` into a temporary HOME; the host is the real ``lowkey-native-host``.
No daemon runs: the host answers hello with the daemon's state, looking at a free port where
nothing listens, and ``LOWKEY_NO_AUTOSTART=1`` keeps it from starting one.

The browsers are driven from Node (``tests/browser/hello_*.mjs``; playwright-core for Chromium,
puppeteer-core over WebDriver BiDi for Firefox, see ``../shared/docs/BROWSER.md``), with the tools
from ``extension/node_modules`` (``npm ci --prefix extension``). Skipped, with the reason, when
node, those modules or a browser are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browser_helpers import BROWSER_DIR, NODE_MODULES, _ids, _require_node_tools, _run_driver

HELLO_EXTENSION = BROWSER_DIR / "hello_extension"
HELLO_ID = "hello-1"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


# -- the test extension ----------------------------------------------------------------------------


def make_hello_extension(dest: Path, *, server_port: int) -> Path:
    """A temp copy of the hello extension with its manifest generated from extension_ids.json.

    The ids live only in ``native_host/extension_ids.json``: the manifest gets Chromium's pinned
    ``key`` and Firefox's gecko id from there, and ``config.json`` tells the background script the
    host's name and the test server's port.
    """
    ids = _ids()
    dest.mkdir(parents=True)
    shutil.copy2(HELLO_EXTENSION / "background.js", dest / "background.js")
    manifest = json.loads((HELLO_EXTENSION / "manifest.base.json").read_text(encoding="utf-8"))
    manifest = {k: v for k, v in manifest.items() if not k.startswith("_")}
    manifest["key"] = ids["chromium"]["key"]
    manifest["host_permissions"] = [f"http://127.0.0.1:{server_port}/*"]
    manifest["browser_specific_settings"] = {
        "gecko": {"id": ids["firefox"]["id"], "data_collection_permissions": {"required": ["none"]}}
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    config = {"host": ids["native_host_name"], "port": server_port}
    (dest / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return dest


# -- the server the extension reports to -----------------------------------------------------------


class _ReportServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReportHandler)
        self.reports: list[dict] = []
        self.arrived = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _ReportHandler(BaseHTTPRequestHandler):
    server: _ReportServer

    def _send(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # the extension: its result
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            report = json.loads(raw)
        except ValueError:
            report = {"ok": False, "error": f"unparsable report: {raw[:200]!r}"}
        report["origin"] = self.headers.get("Origin")
        self.server.reports.append(report)
        self.server.arrived.set()
        self._send(204)

    def do_GET(self) -> None:  # the driver: has it arrived? (204 until it has)
        if self.server.reports:
            self._send(200, json.dumps(self.server.reports[0]).encode())
        else:
            self._send(204)

    def do_OPTIONS(self) -> None:
        self._send(204)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep pytest quiet
        pass


@pytest.fixture
def report_server() -> Iterator[_ReportServer]:
    server = _ReportServer()
    thread = threading.Thread(target=server.serve_forever, name="report-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _check_hello(report: dict, *, where: str, manifest: Path) -> dict:
    if not report.get("ok"):
        text = manifest.read_text(encoding="utf-8") if manifest.is_file() else "(absent)"
        pytest.fail(f"{where}: the extension got no reply: {report.get('error')!r}\n"
                    f"host manifest {manifest}:\n{text}")
    reply = report["reply"]
    assert isinstance(reply, dict), f"{where}: reply {reply!r}"
    assert reply.get("id") == HELLO_ID, f"{where}: reply {reply!r}"
    assert reply.get("type") == "hello", f"{where}: reply {reply!r}"
    assert isinstance(reply.get("version"), str) and reply["version"], f"{where}: reply {reply!r}"
    daemon = reply.get("daemon")
    assert isinstance(daemon, dict), f"{where}: reply {reply!r}"
    assert isinstance(daemon.get("state"), str) and daemon["state"], f"{where}: reply {reply!r}"
    assert daemon["state"] != "ready", f"{where}: no daemon runs, yet the host says {daemon}"
    return reply


# -- the tests -------------------------------------------------------------------------------------


def test_chromium_finds_the_host(chromium_driver, installed_home, report_server, tmp_path):
    extension = make_hello_extension(tmp_path / "hello_extension", server_port=report_server.port)

    result, elapsed = _run_driver("hello_chromium.mjs", node=chromium_driver.node,
                                  browser=chromium_driver.browser,
                                  extension=extension, profile=installed_home.chromium_profile,
                                  port=report_server.port, env=installed_home.env)

    assert report_server.reports, "the extension reported nothing to the test server"
    report = report_server.reports[0]
    assert result["extension_id"] == _ids()["chromium"]["id"], "the manifest key did not pin the id"
    assert report["extension_id"] == _ids()["chromium"]["id"]
    reply = _check_hello(report, where=f"chromium {result.get('version')}",
                         manifest=installed_home.chromium_manifest)
    print(f"chromium {result.get('version')}: daemon {reply['daemon']['state']}; "
          f"launch {result['launch_ms']} ms, hello round trip {report['ms']} ms, "
          f"driver {result['total_ms']} ms, test {elapsed:.1f} s")


def test_firefox_finds_the_host(firefox_driver, installed_home, report_server, tmp_path):
    extension = make_hello_extension(tmp_path / "hello_extension", server_port=report_server.port)

    result, elapsed = _run_driver("hello_firefox.mjs", node=firefox_driver.node,
                                  browser=firefox_driver.browser,
                                  extension=extension, profile=tmp_path / "firefox-profile",
                                  port=report_server.port, env=installed_home.env)

    assert report_server.reports, "the extension reported nothing to the test server"
    report = report_server.reports[0]
    assert result["extension_id"] == _ids()["firefox"]["id"]
    assert report["extension_id"] == _ids()["firefox"]["id"]
    reply = _check_hello(report, where=f"firefox {result.get('version')}",
                         manifest=installed_home.firefox_manifest)
    print(f"firefox {result.get('version')}: daemon {reply['daemon']['state']}; "
          f"launch {result['launch_ms']} ms, installed {result['install_ms']} ms, "
          f"hello round trip {report['ms']} ms, driver {result['total_ms']} ms, "
          f"test {elapsed:.1f} s")


def test_hello_extension_lints(tmp_path):
    """`web-ext lint` on the generated extension: Firefox's view of the manifest is clean.

    Its one expected warning: Firefox ignores ``background.service_worker`` (it runs
    ``background.scripts``; Chromium runs the service worker).
    """
    node = _require_node_tools("web-ext")
    extension = make_hello_extension(tmp_path / "hello_extension", server_port=8)
    web_ext = NODE_MODULES / "web-ext" / "bin" / "web-ext.js"
    done = subprocess.run([str(node), str(web_ext), "lint", "--source-dir", str(extension),
                           "--output", "json", "--no-config-discovery"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp_path)})
    start = done.stdout.find("{")
    assert start >= 0, f"web-ext lint printed no JSON:\n{done.stdout}\n{done.stderr}"
    lint = json.loads(done.stdout[start:])
    assert lint["errors"] == [], json.dumps(lint["errors"], indent=2)
    warnings = [w for w in lint["warnings"] if w.get("code") != "BACKGROUND_SERVICE_WORKER_IGNORED"]
    assert warnings == [], json.dumps(warnings, indent=2)
