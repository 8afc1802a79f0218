"""Helpers for the daemon's tests (no tests here): photos, apps over one shared small real model,
checking answers against daemon/openapi.json, and what lets a test meet time without racing it:
a :class:`Gate` that holds jobs in a phase, and a :class:`TestClock` the test moves."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import threading
from pathlib import Path

import jsonschema
import numpy as np
from PIL import Image

import lowkey_daemon.queue
from lowkey.jobs import JobControl, JobProgress
from lowkey.presets import PRESETS, Preset
from lowkey.service import TokenStore
from lowkey_daemon.config import DaemonConfig

REPO = Path(__file__).resolve().parents[1]
OPENAPI = json.loads((REPO / "daemon" / "openapi.json").read_text())


#: A preset for tests, independent of how the real presets evolve: SFace alone, the paper's
#: plain signed-gradient steps of 0.0025, no quality floor.
TINY = Preset("tiny", "tests: SFace alone, plain signed-gradient steps, no floor", ("sface",))


def install_tiny_preset(monkeypatch) -> None:
    """Make :data:`TINY` a preset for the duration of a test (or a module's MonkeyPatch)."""
    monkeypatch.setitem(PRESETS, TINY.name, TINY)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format=fmt)
    return buffer.getvalue()


def face_crop(astronaut: np.ndarray, dx: int = 0, dy: int = 0, size: int = 256) -> np.ndarray:
    """A crop of the astronaut around her face (about 256 px: a small, quick photo)."""
    return np.ascontiguousarray(astronaut[20 + dy:20 + dy + size, 90 + dx:90 + dx + size])


def small_config(tmp_path: Path, **changes: object) -> DaemonConfig:
    """A daemon with the :data:`TINY` preset (install it first), not warmed up, with generous
    rate limits."""
    settings = dict(preset="tiny", warm_up=False, queue_size=8,
                    rate=1000.0, burst=1000, config_dir=tmp_path / "config",
                    state_dir=tmp_path / "state", max_body_bytes=8 * 1024 * 1024,
                    max_pixels=4_000_000)
    settings.update(changes)
    return DaemonConfig(**settings)


def file_tokens(config: DaemonConfig) -> TokenStore:
    return TokenStore(config.config_dir, use_keyring=False)


async def wait_ready(client, timeout: float = 120.0) -> dict:
    """Poll GET /v1/health until it is no longer loading; returns its JSON."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        response = await client.get("/v1/health")
        body = await response.json()
        if body["status"] != "loading" or loop.time() > end:
            return body
        await asyncio.sleep(0.05)


def _nullable(schema: object) -> object:
    """OpenAPI 3.0's ``nullable`` as JSON Schema."""
    if isinstance(schema, dict):
        out = {k: _nullable(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable") and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_nullable(v) for v in schema]
    return schema


_COMPONENTS = _nullable(copy.deepcopy(OPENAPI["components"]))


def validate_answer(status: int, content_type: str, body: bytes, path: str,
                    method: str) -> None:
    """The answer's status is documented for the operation (or falls under ``default``) and a
    JSON body matches the documented schema; every error is the envelope."""
    operation = OPENAPI["paths"][path][method.lower()]
    responses = operation["responses"]
    documented = responses.get(str(status)) or responses.get("default")
    assert documented is not None, f"{status} not documented for {method} {path}"
    if status >= 400:
        assert content_type == "application/json", content_type
    if content_type == "application/json":
        schema = documented["content"]["application/json"]["schema"]
        document = {"components": _COMPONENTS, **_nullable(schema)}
        jsonschema.Draft7Validator(document).validate(json.loads(body))
        if status >= 400:
            assert set(json.loads(body)) == {"error"}
    else:
        assert content_type in documented.get("content", {}), (status, content_type)


async def checked(response, path: str, method: str) -> bytes:
    """Read ``response`` and :func:`validate_answer` it; returns the body."""
    body = await response.read()
    validate_answer(response.status, response.content_type, body, path, method)
    return body


class TestClock:
    """A monotonic clock that moves only when the test says: ``JobQueue.clock`` for deadlines,
    run times and result retention."""

    __test__ = False  # not a test class

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Gate:
    """Holds every job the daemon works on when it reaches ``phase``, until the job is stopped
    (cancelled, timed out, the daemon closing) or the test calls :meth:`open`. A held job is
    running, for as long as the test needs, on any machine: no job is "long enough"."""

    #: a held job goes on after this long anyway, so that a failing test cannot hang
    LIMIT_S = 300.0

    def __init__(self, monkeypatch, phase: str = "attack") -> None:
        self.phase = phase
        self._open = threading.Event()
        self._arrived = threading.Condition()
        self.arrivals = 0
        real = lowkey_daemon.queue.protect_bytes_batch

        def protect_bytes_batch(jobs, pool, **kwargs):
            for _, _, control in jobs:
                self._watch(control)
            return real(jobs, pool, **kwargs)

        monkeypatch.setattr(lowkey_daemon.queue, "protect_bytes_batch", protect_bytes_batch)

    def _watch(self, control: JobControl) -> None:
        watcher, held = control.on_progress, []

        def hold(progress: JobProgress) -> None:
            if watcher is not None:
                watcher(progress)
            if progress.phase != self.phase or held:
                return
            held.append(True)
            with self._arrived:
                self.arrivals += 1
                self._arrived.notify_all()
            for _ in range(int(self.LIMIT_S / 0.01)):
                if control.cancelled or self._open.wait(0.01):
                    return

        control.on_progress = hold

    async def reached(self, count: int = 1, timeout: float = 120.0) -> None:
        """Return once ``count`` jobs in all have been held (without blocking the event loop)."""
        def wait() -> bool:
            with self._arrived:
                return self._arrived.wait_for(lambda: self.arrivals >= count, timeout)

        assert await asyncio.get_running_loop().run_in_executor(None, wait), (
            f"{self.arrivals} of {count} jobs reached {self.phase}")

    def open(self) -> None:
        """Let every held job (and every later one) go on."""
        self._open.set()
