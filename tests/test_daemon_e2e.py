"""End to end: ``lowkey daemon`` started as a subprocess, a real photo protected over HTTP, then
``lowkey daemon status``, ``token`` and ``stop`` against it.

The fast tier attacks SFace alone for two steps; the slow tier runs the ``default`` preset's whole
ensemble (30 steps, on the whole 512 px astronaut) with the daemon's warm-up, and checks that dlib
(never attacked) now sees another face: about 9 minutes on a contended 2-core CPU.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_daemon_helpers import encode, face_crop

from lowkey.image_decode import load_photo

pytestmark = pytest.mark.weights

LOWKEY = str(Path(sys.executable).with_name("lowkey"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, token: str | None = None, data: bytes | None = None,
         content_type: str | None = None, timeout: float = 300.0) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class RunningDaemon:
    """``lowkey daemon`` in a subprocess, with its config and state in ``tmp_path``."""

    def __init__(self, tmp_path: Path, *args: str, port_by_env: bool = False) -> None:
        self.port = free_port()
        self.env = dict(os.environ, LOWKEY_CONFIG_DIR=str(tmp_path / "config"),
                        XDG_STATE_HOME=str(tmp_path / "state"),
                        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
        self.env.pop("LOWKEY_DAEMON_PORT", None)
        command = [LOWKEY, "daemon", *args]
        if port_by_env:
            self.env["LOWKEY_DAEMON_PORT"] = str(self.port)
        else:
            command += ["--port", str(self.port)]
        self.log = (tmp_path / "daemon.out").open("wb")
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.output = tmp_path / "daemon.out"

    def lowkey(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([LOWKEY, "daemon", *args], env=self.env, capture_output=True,
                              text=True, timeout=120)

    def wait_ready(self, timeout: float = 300.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.process.poll() is None, self.output.read_text()[-3000:]
            try:
                status, _, body = call(self.port, "GET", "/v1/health", timeout=2)
                health = json.loads(body)
                if health["status"] != "loading":
                    return health
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the daemon did not get ready in time")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture
def running(tmp_path):
    daemons = []

    def start(*args: str, **kwargs) -> RunningDaemon:
        daemons.append(RunningDaemon(tmp_path, *args, **kwargs))
        return daemons[-1]

    yield start
    for d in daemons:
        d.close()


def test_lowkey_daemon_serves_status_token_and_stops(running, astronaut_rgb, tmp_path):
    daemon = running("--preset", "default", "--models", "sface", "--no-warm-up", port_by_env=True)
    assert daemon.wait_ready()["status"] == "ready"
    token = daemon.lowkey("token").stdout.strip()
    token_file = tmp_path / "config" / "daemon-token"
    assert token and token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    photo = encode(face_crop(astronaut_rgb))
    status, headers, body = call(daemon.port, "POST", "/v1/protect?strength=2&measure=false",
                                 token, photo, "image/png")
    assert status == 200, body[:300]
    assert json.loads(headers["X-LowKey-Report"])["status"] == "protected"
    assert load_photo(body).size == (256, 256)
    status, _, body = call(daemon.port, "POST", "/v1/protect", "wrong", photo, "image/png")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    result = daemon.lowkey("status", "--port", str(daemon.port), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["status"]["jobs"]["done"] == 1 and info["status"]["ensemble"] == ["sface"]
    rotated = daemon.lowkey("token", "--rotate").stdout.strip()
    assert rotated != token
    assert call(daemon.port, "GET", "/v1/status", token)[0] == 401
    assert call(daemon.port, "GET", "/v1/status", rotated)[0] == 200
    result = daemon.lowkey("stop", "--port", str(daemon.port))
    assert result.returncode == 0, result.stderr
    assert daemon.process.wait(30) == 0
    log = tmp_path / "state" / "lowkey" / "daemon.log"
    assert "job" in log.read_text() and rotated not in log.read_text()
    assert daemon.lowkey("status", "--port", str(daemon.port)).returncode == 1


@pytest.mark.slow
def test_a_real_photo_through_the_daemon_moves_the_face_for_dlib(running, astronaut_rgb):
    from lowkey.dlib_judge import dlib_available

    if not dlib_available():
        pytest.skip("dlib is not installed: no black-box check")
    daemon = running("--preset", "default")  # the whole ensemble, warmed up at start
    assert daemon.wait_ready(600)["status"] == "ready"
    token = daemon.lowkey("token").stdout.strip()
    status, headers, body = call(daemon.port, "POST", "/v1/protect?strength=30&report=body",
                                 token, encode(astronaut_rgb), "image/png", timeout=900)
    assert status == 200, body[:300]
    result = json.loads(body)
    (face,) = result["report"]["faces"]
    # measured: dlib 0.74 (over its 0.6 same-person threshold), cosines about 0
    assert face["dlib_distance"] is not None and face["dlib_distance"] > 0.5
    assert all(c is not None and c < 0.5 for c in face["cosine"].values())
    daemon.process.terminate()  # SIGTERM: graceful
    assert daemon.process.wait(30) == 0
