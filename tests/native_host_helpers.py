"""Helpers for the native host's tests (no tests here): the host as a real subprocess speaking the
real framing, with every message it sends checked against ``native_host/messages.schema.json``."""

from __future__ import annotations

import json
import os
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "native_host" / "messages.schema.json").read_text())
HOST = str(Path(sys.executable).with_name("lowkey-native-host"))
ONE_MB = 1024 * 1024


def validator(definition: str) -> jsonschema.Draft202012Validator:
    """A validator for ``#/$defs/<definition>`` (``request`` or ``message``) of the schema."""
    schema = dict(SCHEMA, oneOf=[{"$ref": f"#/$defs/{definition}"}])
    return jsonschema.Draft202012Validator(schema)


REQUEST = validator("request")
MESSAGE = validator("message")


class HostProcess:
    """``lowkey-native-host`` started as a browser starts it; a thread reads its messages, checks
    each frame's length (<= 1 MB, as the browser demands) and its schema, and queues them."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.process = subprocess.Popen([HOST, *(args or ("chrome-extension://test/",))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env)
        self.messages: queue.Queue = queue.Queue()
        self.frame_sizes: list[int] = []
        self.problems: list[str] = []
        self.others: list[dict] = []  # messages of other requests met by until()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        out = self.process.stdout
        while True:
            header = out.read(4)
            if len(header) < 4:
                if header:
                    self.problems.append(f"truncated header from the host: {header!r}")
                self.messages.put(None)
                return
            (length,) = struct.unpack("=I", header)
            body = out.read(length)
            self.frame_sizes.append(length)
            if length > ONE_MB:
                self.problems.append(f"a message of {length} bytes (over 1 MB)")
            try:
                message = json.loads(body.decode("utf-8"))
                MESSAGE.validate(message)
            except (ValueError, jsonschema.ValidationError) as exc:
                self.problems.append(f"{exc}: {body[:300]!r}")
                message = {"unreadable": True}
            self.messages.put(message)

    def send(self, message: dict, check: bool = True) -> None:
        if check:
            REQUEST.validate(message)
        self.send_raw(json.dumps(message).encode("utf-8"))

    def send_raw(self, body: bytes, length: int | None = None) -> None:
        self.process.stdin.write(struct.pack("=I", len(body) if length is None else length)
                                 + body)
        self.process.stdin.flush()

    def recv(self, timeout: float = 60.0) -> dict | None:
        """The next message (None once the host closed its stdout)."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the host in {timeout} s") from None

    def until(self, rid: str, kind: str, timeout: float = 300.0) -> list[dict]:
        """Messages for request ``rid`` up to and including one of type ``kind`` (or error);
        other requests' messages met on the way are kept in :attr:`others` for their turn."""
        got: list[dict] = []
        while True:
            mine = next((m for m in self.others if m.get("id") == rid), None)
            if mine is not None:
                self.others.remove(mine)
                message = mine
            else:
                message = self.recv(timeout)
                assert message is not None, f"the host closed its output; got {got}"
                if message.get("id") != rid:
                    self.others.append(message)
                    continue
            got.append(message)
            if message["type"] in (kind, "error"):
                return got

    def close_stdin(self) -> None:
        self.process.stdin.close()

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def host_env(config_dir: Path, state_dir: Path, port: int, autostart: bool = False
             ) -> dict[str, str]:
    """The environment a browser would pass: the daemon's folders, its port, no keyring."""
    env = dict(os.environ, LOWKEY_CONFIG_DIR=str(config_dir), XDG_STATE_HOME=str(state_dir),
               LOWKEY_DAEMON_PORT=str(port),
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    if not autostart:
        env["LOWKEY_NO_AUTOSTART"] = "1"
    else:
        env.pop("LOWKEY_NO_AUTOSTART", None)
    return env


def host_log(env: dict[str, str]) -> Path:
    """Where the host started with ``env`` logs (the daemon's state folder)."""
    if env.get("LOWKEY_CACHE_DIR"):
        return Path(env["LOWKEY_CACHE_DIR"]) / "daemon" / "native-host.log"
    return Path(env["XDG_STATE_HOME"]) / "lowkey" / "native-host.log"


def reassemble(messages: list[dict]) -> tuple[bytes, dict]:
    """The file from ``chunk`` messages (checked in order, complete) and the ``result``."""
    import base64

    chunks = [m for m in messages if m["type"] == "chunk"]
    result = messages[-1]
    assert result["type"] == "result", messages[-1]
    assert [c["index"] for c in chunks] == list(range(result["chunks"]))
    assert all(c["count"] == result["chunks"] for c in chunks)
    data = b"".join(base64.b64decode(c["data"]) for c in chunks)
    return data, result
