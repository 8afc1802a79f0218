"""The native host as the browser runs it: ``lowkey-native-host`` in a subprocess, the real
framing on its stdin/stdout, and (where a photo is protected) a real ``lowkey daemon`` with SFace
alone. Every message the host sends is checked against ``native_host/messages.schema.json`` and
the browser's 1 MB limit.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import stat
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from native_host_helpers import HostProcess, host_env, host_log, reassemble
from PIL import Image
from test_daemon_e2e import RunningDaemon, call, free_port
from test_daemon_helpers import encode, face_crop

from lowkey_native_host import data_file
from lowkey_native_host.protocol import MAX_INCOMING, MAX_OUTGOING, encode_message, read_message

ONE_MB = 1024 * 1024


# -- without a daemon ---------------------------------------------------------------------------

@pytest.fixture
def lone_host(tmp_path):
    """A host whose daemon is down and which may not start one."""
    env = host_env(tmp_path / "config", tmp_path / "state", free_port())
    host = HostProcess(env)
    yield host
    host.stop()


def test_the_host_never_imports_torch():
    code = ("import sys, lowkey_native_host.host\n"
            "assert 'torch' not in sys.modules and 'lowkey.protect' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_hello_reports_a_down_daemon(lone_host):
    lone_host.send({"id": "h1", "type": "hello", "extension": {"browser": "test"}})
    reply = lone_host.recv(30)
    assert reply["id"] == "h1" and reply["type"] == "hello" and reply["protocol"] == 1
    assert reply["daemon"]["state"] == "down" and reply["daemon"]["ready"] is False
    assert "not running" in reply["daemon"]["message"]
    assert not lone_host.problems


def test_requests_to_a_down_daemon_fail_with_daemon_down(lone_host, astronaut_rgb):
    photo = base64.b64encode(encode(face_crop(astronaut_rgb), "JPEG")).decode()
    lone_host.send({"id": "p1", "type": "protect", "name": "a.jpg", "mime": "image/jpeg",
                    "data": photo})
    lone_host.send({"id": "p2", "type": "pause"})
    replies = {m["id"]: m for m in (lone_host.recv(30), lone_host.recv(30))}
    assert {r["code"] for r in replies.values()} == {"daemon-down"}
    assert set(replies) == {"p1", "p2"}


def test_bad_messages_get_bad_message_and_the_host_goes_on(lone_host):
    lone_host.send_raw(b"{not json")
    lone_host.send_raw("\u00e9t\u00e9".encode("latin-1"))  # not UTF-8
    lone_host.send_raw(b"[1, 2]")  # JSON, not an object
    lone_host.send({"type": "hello"}, check=False)  # no id
    lone_host.send({"id": "u1", "type": "upload"}, check=False)  # unknown type
    lone_host.send({"id": "b1", "type": "protect", "name": "x.jpg", "mime": "image/jpeg",
                    "data": "not base64!"}, check=False)
    lone_host.send({"id": "c1", "type": "cancel"}, check=False)  # no target
    errors = [lone_host.recv(30) for _ in range(7)]
    assert all(e["type"] == "error" and e["code"] == "bad-message" for e in errors), errors
    assert [e["id"] for e in errors[:4]] == [None] * 4
    assert {e["id"] for e in errors[4:]} == {"u1", "b1", "c1"}
    lone_host.send({"id": "h2", "type": "hello"})
    assert lone_host.recv(30)["type"] == "hello"
    assert not lone_host.problems


def test_deeply_nested_json_is_a_bad_message_and_the_host_goes_on_then_exits(lone_host):
    lone_host.send_raw(b"[" * 1000 + b"]" * 1000)  # json.loads: RecursionError
    error = lone_host.recv(30)
    assert error["type"] == "error" and error["code"] == "bad-message" and error["id"] is None
    lone_host.send({"id": "after", "type": "hello"})
    assert lone_host.recv(30)["id"] == "after"
    lone_host.close_stdin()
    assert lone_host.wait(10) == 0
    assert lone_host.process.stderr.read() == b""  # no traceback
    assert not lone_host.problems


def test_whatever_a_body_holds_it_is_a_message_or_bad_message():
    from lowkey_native_host.protocol import BadMessage, parse_body

    for body in (b"[" * 100_000, b'{"a":' * 5000, b"\xff\xfe", b"1e999999", b"", b"null"):
        with pytest.raises(BadMessage):
            parse_body(body)
    assert parse_body(b'{"id": "x"}') == {"id": "x"}


def test_a_message_over_the_cap_is_refused_before_it_is_read(lone_host):
    # Only the header is sent: the refusal must come without the host reading the body.
    lone_host.send_raw(b"", length=MAX_INCOMING + 1)
    error = lone_host.recv(30)
    assert error == {"id": None, "type": "error", "code": "too-large",
                     "message": error["message"]}
    assert str(MAX_INCOMING) in error["message"]
    # Then the body arrives and is skipped: the stream stays in step.
    block = b"x" * ONE_MB
    for _ in range(64):
        lone_host.process.stdin.write(block)
    lone_host.process.stdin.write(b"x")
    lone_host.send({"id": "after", "type": "hello"})
    assert lone_host.recv(60)["id"] == "after"
    assert lone_host.process.poll() is None


@pytest.mark.parametrize("raw", [b"\x05\x00", struct.pack("=I", 100) + b'{"id": "t"'],
                         ids=["truncated-header", "truncated-body"])
def test_a_pipe_closed_mid_message_ends_the_host_cleanly(lone_host, raw):
    lone_host.process.stdin.write(raw)
    lone_host.close_stdin()
    assert lone_host.wait(20) == 0
    assert lone_host.recv(5) is None  # it wrote nothing
    assert "mid-message" in host_log(lone_host.env).read_text()


def test_the_host_exits_when_the_browser_closes_the_pipe(lone_host):
    lone_host.send({"id": "h", "type": "hello"})
    assert lone_host.recv(30)["type"] == "hello"
    lone_host.close_stdin()
    assert lone_host.wait(20) == 0
    assert lone_host.process.stderr.read() == b""  # nothing printed anywhere but the log


def test_the_hosts_log_is_0600_in_a_0700_folder(lone_host):
    lone_host.send({"id": "h", "type": "hello"})
    assert lone_host.recv(30)["type"] == "hello"
    lone_host.close_stdin()
    assert lone_host.wait(20) == 0
    log = host_log(lone_host.env)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_framing_is_native_order_and_outgoing_messages_stay_under_1_mb():
    framed = encode_message({"id": "\u540d\u524d", "type": "hello"})
    assert framed[:4] == struct.pack("=I", len(framed) - 4)
    assert read_message(io.BytesIO(framed)) == {"id": "\u540d\u524d", "type": "hello"}
    with pytest.raises(ValueError, match="over the browser's limit"):
        encode_message({"id": "x", "type": "chunk", "data": "A" * MAX_OUTGOING})


def test_the_schema_file_is_valid_and_names_every_request_type():
    import jsonschema

    from lowkey_native_host.host import REQUEST_TYPES

    schema = json.loads(data_file("messages.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {f"request_{t}" for t in REQUEST_TYPES} <= set(schema["$defs"])
    codes = set(schema["$defs"]["message_error"]["properties"]["code"]["enum"])
    assert {"daemon-down", "starting", "paused", "bad-image", "no-face", "too-large",
            "timeout", "cancelled", "internal"} <= codes
    from lowkey_native_host.daemon_client import DAEMON_CODES

    assert set(DAEMON_CODES.values()) <= codes


# -- against a real daemon (SFace alone) -------------------------------------------------------

@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("daemon")
    running = RunningDaemon(tmp, "--preset", "default", "--models", "sface", "--no-warm-up")
    try:
        assert running.wait_ready()["status"] == "ready"
        yield running
    finally:
        running.close()


@pytest.fixture
def host(daemon, tmp_path):
    env = dict(daemon.env, LOWKEY_DAEMON_PORT=str(daemon.port), LOWKEY_NO_AUTOSTART="1")
    process = HostProcess(env)
    yield process
    process.stop()


def big_png(astronaut: np.ndarray) -> bytes:
    """The astronaut at 1024 px with grain: a PNG well over 1 MB."""
    image = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.BICUBIC))
    grain = np.random.default_rng(0).integers(-6, 7, image.shape)
    return encode(np.clip(image.astype(int) + grain, 0, 255).astype(np.uint8), "PNG")


def daemon_status(daemon) -> dict:
    token = daemon.lowkey("token").stdout.strip()
    status, _, body = call(daemon.port, "GET", "/v1/status", token)
    assert status == 200
    return json.loads(body)


@pytest.mark.weights
def test_a_photo_over_1_mb_round_trips_in_chunks_with_its_checksum(host, astronaut_rgb):
    photo = big_png(astronaut_rgb)
    assert len(photo) > 1.2 * ONE_MB
    name = "\u00c9t\u00e9 \u5199\u771f \U0001f600.png"
    host.send({"id": "r1", "type": "hello"})
    assert host.recv(60)["daemon"]["state"] == "ready"
    host.send({"id": "r2", "type": "protect", "name": name, "mime": "image/png",
               "data": base64.b64encode(photo).decode(), "strength": 2})
    messages = host.until("r2", "result", timeout=600)
    assert messages[-1]["type"] == "result", messages[-1]
    phases = [m["phase"] for m in messages if m["type"] == "progress"]
    # the last event seen depends on timing: the encode, the measure, or the done phase
    assert "attack" in phases and phases[-1] in ("encode", "measure", "done")
    data, result = reassemble(messages)
    assert result["chunks"] >= 2 and result["name"] == name and result["mime"] == "image/png"
    assert result["size"] == len(data) and result["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["report"]["faces"], result["report"]
    protected = np.asarray(Image.open(io.BytesIO(data)))
    original = np.asarray(Image.open(io.BytesIO(photo)))
    assert protected.shape == original.shape and not np.array_equal(protected, original)
    assert max(host.frame_sizes) <= MAX_OUTGOING and not host.problems
    # The daemon keeps nothing once the host has the file.
    assert daemon_status_via(host)["queue"] == {"queued": 0, "running": 0,
                                                "capacity": 8, "batch": 1}


def daemon_status_via(host: HostProcess) -> dict:
    host.send({"id": "s", "type": "status"})
    reply = host.until("s", "status", 60)[-1]
    assert reply["daemon"]["ready"] is True
    return reply["status"]


@pytest.mark.weights
def test_requests_interleave_and_cancel_reaches_the_daemon(host, daemon, astronaut_rgb):
    before = daemon_status(daemon)["jobs"]
    small = base64.b64encode(encode(face_crop(astronaut_rgb), "JPEG")).decode()
    long = base64.b64encode(big_png(astronaut_rgb)).decode()
    host.send({"id": "slow", "type": "protect", "name": "big.png", "mime": "image/png",
               "data": long, "strength": 200})
    # Once the long job runs, send a second photo (queued behind it), ask hello while both are
    # in flight, and cancel the long one.
    while (m := host.recv(300))["phase"] != "attack":
        assert m["id"] == "slow" and m["type"] == "progress", m
    host.send({"id": "quick", "type": "protect", "name": "small.jpg", "mime": "image/jpeg",
               "data": small, "strength": 2})
    host.send({"id": "hi", "type": "hello"})
    assert host.until("hi", "hello", 60)[-1]["type"] == "hello"
    host.send({"id": "stop", "type": "cancel", "target": "slow"})
    slow = host.until("slow", "error", 120)
    assert slow[-1]["code"] == "cancelled"
    cancel = host.until("stop", "cancel", 60)[-1]
    assert cancel == {"id": "stop", "type": "cancel", "target": "slow", "cancelled": True}
    quick = host.until("quick", "result", 600)
    data, result = reassemble(quick)
    assert result["name"] == "small.jpg" and Image.open(io.BytesIO(data)).format == "JPEG"
    after = daemon_status(daemon)["jobs"]
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["done"] == before["done"] + 1
    assert not host.problems


@pytest.mark.weights
def test_closing_the_pipe_mid_job_cancels_the_daemon_job(host, daemon, astronaut_rgb):
    before = daemon_status(daemon)["jobs"]
    host.send({"id": "gone", "type": "protect", "name": "big.png", "mime": "image/png",
               "data": base64.b64encode(big_png(astronaut_rgb)).decode(), "strength": 200})
    while (m := host.recv(300))["phase"] != "attack":
        assert m["type"] == "progress", m
    host.close_stdin()
    assert host.wait(30) == 0
    status = daemon_status(daemon)
    assert status["jobs"]["cancelled"] == before["cancelled"] + 1
    assert status["queue"]["running"] == 0 and status["queue"]["queued"] == 0


@pytest.mark.weights
def test_daemon_errors_become_host_codes(host, daemon, astronaut_rgb):
    blank = base64.b64encode(encode(np.full((200, 200, 3), 128, np.uint8), "PNG")).decode()
    host.send({"id": "nf", "type": "protect", "name": "wall.png", "mime": "image/png",
               "data": blank, "strength": 1})
    assert host.until("nf", "result", 300)[-1]["code"] == "no-face"
    host.send({"id": "bi", "type": "protect", "name": "notes.jpg", "mime": "image/jpeg",
               "data": base64.b64encode(b"hello, not a photo").decode()})
    assert host.until("bi", "result", 60)[-1]["code"] == "bad-image"
    host.send({"id": "pa", "type": "pause"})
    assert host.until("pa", "pause", 60)[-1]["paused"] is True
    try:
        host.send({"id": "pp", "type": "protect", "name": "a.jpg", "mime": "image/jpeg",
                   "data": base64.b64encode(encode(face_crop(astronaut_rgb), "JPEG")).decode()})
        assert host.until("pp", "result", 60)[-1]["code"] == "paused"
    finally:
        host.send({"id": "re", "type": "resume"})
        assert host.until("re", "resume", 60)[-1]["paused"] is False
    assert not host.problems


@pytest.mark.weights
def test_the_preset_of_a_protect_request_reaches_the_daemon(host, astronaut_rgb):
    """The extension sends the user's choice in ``preset``: the daemon (started with
    ``default``) protects with it; without one, with its own."""
    photo = base64.b64encode(encode(face_crop(astronaut_rgb), "JPEG")).decode()
    for rid, preset in (("sub", "subtle"), ("own", None)):
        request = {"id": rid, "type": "protect", "name": "a.jpg", "mime": "image/jpeg",
                   "data": photo, "strength": 1}
        if preset:
            request["preset"] = preset
        host.send(request)
        result = host.until(rid, "result", 600)[-1]
        assert result["type"] == "result", result
        assert result["report"]["preset"] == (preset or "default")
    assert not host.problems


@pytest.mark.weights
def test_a_down_daemon_is_started_by_the_host(tmp_path, astronaut_rgb):
    config = tmp_path / "config"
    config.mkdir()
    # What the daemon started by the host runs with: daemon.toml, as a user would set it.
    (config / "daemon.toml").write_text('preset = "default"\nmodels = ["sface"]\n'
                                        "warm_up = false\n")
    port = free_port()
    env = host_env(config, tmp_path / "state", port, autostart=True)
    host = HostProcess(env)
    try:
        host.send({"id": "h", "type": "hello"})
        hello = host.recv(60)
        assert hello["daemon"]["state"] == "starting", hello
        host.send({"id": "p", "type": "protect", "name": "a.jpg", "mime": "image/jpeg",
                   "data": base64.b64encode(encode(face_crop(astronaut_rgb), "JPEG")).decode(),
                   "strength": 2})
        messages = host.until("p", "result", 600)
        assert messages[0] == {"id": "p", "type": "progress", "phase": "starting",
                               "percent": 0}
        data, result = reassemble(messages)
        assert result["sha256"] == hashlib.sha256(data).hexdigest()
        host.close_stdin()
        assert host.wait(30) == 0
        # The daemon outlives the host (the next browser message finds it warm).
        time.sleep(0.5)
        status, _, body = call(port, "GET", "/v1/health", timeout=5)
        assert status == 200 and json.loads(body)["ready"] is True
    finally:
        host.stop()
        subprocess.run([sys.executable, "-m", "lowkey_daemon", "stop"],
                       env=env, capture_output=True, timeout=60)
        _wait_down(port)


def _wait_down(port: int) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            call(port, "GET", "/v1/health", timeout=1)
        except OSError:
            return
        time.sleep(0.2)
    raise AssertionError(f"the daemon on port {port} did not stop")
