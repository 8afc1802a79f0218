"""The daemon's HTTP API against ``create_app(...)`` with the real core and a small real model
(SFace alone, one or two attack steps, 256 px crops of the astronaut). Every answer is checked
against daemon/openapi.json."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from test_daemon_helpers import (
    Gate,
    TestClock,
    checked,
    encode,
    face_crop,
    file_tokens,
    install_tiny_preset,
    small_config,
    wait_ready,
)

import lowkey_daemon.queue
from lowkey.image_decode import load_photo
from lowkey.jobs import ProtectOptions
from lowkey.pool import ModelPool
from lowkey.protect import protect_bytes
from lowkey_daemon.app import create_app
from lowkey_daemon.keys import QUEUE

pytestmark = pytest.mark.weights

POOL: ModelPool | None = None
QUICK = {"strength": "2", "measure": "false"}  # two attack steps, no measuring


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    install_tiny_preset(monkeypatch)


def shared_pool() -> ModelPool:
    global POOL
    if POOL is None:
        POOL = ModelPool("cpu")
    return POOL


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


@pytest.fixture
def make_client(aiohttp_client, tmp_path):
    """``await make_client(**config changes)`` -> (client, token), the app loaded and ready."""

    async def make(on_stop=None, clock=None, **changes):
        config = small_config(tmp_path, **changes)
        tokens = file_tokens(config)
        app = create_app(config, pools=[shared_pool()], tokens=tokens, on_stop=on_stop)
        client = await aiohttp_client(app)
        health = await wait_ready(client)
        assert health["status"] == "ready", health
        if clock is not None:  # deadlines and retention on the test's time
            client.app[QUEUE].clock = clock
        return client, tokens.get()

    return make


@pytest.fixture(scope="module")
def face(astronaut_rgb):
    return encode(face_crop(astronaut_rgb))


async def submit(client, token, data, params=QUICK, content_type="image/png") -> dict:
    response = await client.post("/v1/jobs", data=data, params=params,
                                 headers=auth(token, **{"Content-Type": content_type}))
    body = json.loads(await checked(response, "/v1/jobs", "POST"))
    assert response.status == 202, body
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    return body


async def job_now(client, token, job_id) -> dict:
    """``GET /v1/jobs/{id}``: the job as it is now."""
    response = await client.get(f"/v1/jobs/{job_id}", headers=auth(token))
    return json.loads(await checked(response, "/v1/jobs/{id}", "GET"))


async def wait_job(client, token, job_id, until=("done", "failed", "cancelled", "timed out"),
                   timeout=120.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        response = await client.get(f"/v1/jobs/{job_id}", headers=auth(token))
        body = json.loads(await checked(response, "/v1/jobs/{id}", "GET"))
        if body["status"] in until or time.monotonic() > end:
            return body
        await asyncio.sleep(0.05)


# -- routes ------------------------------------------------------------------------------------

async def test_health_needs_no_token_and_says_ready(make_client):
    client, _ = await make_client()
    response = await client.get("/v1/health")
    body = json.loads(await checked(response, "/v1/health", "GET"))
    assert body["status"] == "ready" and body["ready"] is True
    assert "token" not in json.dumps(body).lower()


async def test_status_and_openapi(make_client):
    client, token = await make_client()
    response = await client.get("/v1/status", headers=auth(token))
    body = json.loads(await checked(response, "/v1/status", "GET"))
    assert body["ensemble"] == ["sface"] and body["devices"] == ["cpu"]
    assert body["penalty"] == "1-ssim" and body["paused"] is False
    assert body["queue"] == {"queued": 0, "running": 0, "capacity": 8, "batch": 1}  # CPU
    response = await client.get("/v1/openapi.json", headers=auth(token))
    document = json.loads(await checked(response, "/v1/openapi.json", "GET"))
    assert document["openapi"].startswith("3.") and "/v1/protect" in document["paths"]


async def test_protect_returns_the_protected_image_and_its_report(make_client, face):
    client, token = await make_client()
    response = await client.post("/v1/protect", data=face, params=QUICK,
                                 headers=auth(token, **{"Content-Type": "image/png"}))
    body = await checked(response, "/v1/protect", "POST")
    assert response.status == 200 and response.content_type == "image/png"
    report = json.loads(response.headers["X-LowKey-Report"])
    assert report["status"] == "protected" and len(report["faces"]) == 1
    assert response.headers["X-LowKey-Measured"] == "false"
    out, original = load_photo(body), load_photo(face)
    assert out.size == original.size
    change = (out.pixels - original.pixels).abs()
    assert 0 < float(change.max()) <= 0.012  # two steps of 0.0025 plus the initial noise


async def test_protect_report_body_with_a_measured_report_and_jpeg(make_client, face):
    client, token = await make_client()
    response = await client.post("/v1/protect", data=face,
                                 params={"strength": "2", "report": "body", "format": "jpeg",
                                         "quality": "90"},
                                 headers=auth(token, **{"Content-Type": "image/png"}))
    body = json.loads(await checked(response, "/v1/protect", "POST"))
    assert body["media_type"] == "image/jpeg" and body["measured"] is True
    assert load_photo(base64.b64decode(body["image"])).format == "JPEG"
    (face_report,) = body["report"]["faces"]
    assert face_report["jod"] is not None and face_report["cosine"]["sface"] is not None


async def test_job_lifecycle_status_events_result_delete(make_client, face):
    client, token = await make_client()
    job = await submit(client, token, face)
    assert job["status"] in ("queued", "running")
    response = await client.get(f"/v1/jobs/{job['id']}/events", headers=auth(token))
    assert response.status == 200 and response.content_type == "text/event-stream"
    events = []
    async for line in response.content:
        text = line.decode().strip()
        if text.startswith("event:"):
            events.append(text.split(":", 1)[1].strip())
        elif text.startswith("data:"):
            events[-1] = (events[-1], json.loads(text[5:]))
    kinds = [e[0] for e in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) <= {"progress"}
    final = events[-1][1]
    assert final["status"] == "done" and final["percent"] == 100.0
    assert {e[1]["phase"] for e in events} <= {"queued", "decode", "detect", "attack", "encode",
                                               "done"}
    response = await client.get(f"/v1/jobs/{job['id']}/result", headers=auth(token))
    image = await checked(response, "/v1/jobs/{id}/result", "GET")
    assert response.status == 200 and load_photo(image).size == (256, 256)
    response = await client.delete(f"/v1/jobs/{job['id']}", headers=auth(token))
    body = json.loads(await checked(response, "/v1/jobs/{id}", "DELETE"))
    assert body["status"] == "done"
    response = await client.get(f"/v1/jobs/{job['id']}/result", headers=auth(token))
    body = json.loads(await checked(response, "/v1/jobs/{id}/result", "GET"))
    assert response.status == 404 and body["error"]["code"] == "job_not_found"


async def test_unknown_route_and_method_are_enveloped(make_client):
    client, token = await make_client()
    response = await client.get("/v1/nope", headers=auth(token))
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"
    response = await client.put("/v1/status", headers=auth(token))
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"


# -- security ----------------------------------------------------------------------------------

async def test_missing_wrong_and_rotated_token(make_client, face):
    client, token = await make_client()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token},
                    {"Authorization": f"Basic {token}"}):
        response = await client.get("/v1/status", headers=headers)
        body = json.loads(await checked(response, "/v1/status", "GET"))
        assert response.status == 401 and body["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    from lowkey_daemon.keys import TOKENS

    new = client.app[TOKENS].rotate()
    assert new != token
    response = await client.get("/v1/status", headers=auth(token))
    assert response.status == 401
    response = await client.get("/v1/status", headers=auth(new))
    assert response.status == 200


async def test_rotation_from_another_process_reaches_a_running_daemon(make_client, tmp_path):
    client, token = await make_client()
    other = file_tokens(small_config(tmp_path))  # as `lowkey daemon token --rotate` would
    new = other.rotate()
    assert (await client.get("/v1/status", headers=auth(token))).status == 401
    assert (await client.get("/v1/status", headers=auth(new))).status == 200


async def test_restart_keeps_the_token_in_a_0600_file(aiohttp_client, tmp_path):
    config = small_config(tmp_path)
    first = create_app(config, pools=[shared_pool()], tokens=file_tokens(config))
    token = file_tokens(config).get()
    path = config.config_dir / "daemon-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = create_app(config, pools=[shared_pool()], tokens=file_tokens(config))
    client = await aiohttp_client(second)
    await wait_ready(client)
    assert (await client.get("/v1/status", headers=auth(token))).status == 200
    assert first is not second and file_tokens(config).get() == token


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:1",
                                  "localhost", "127.0.0.1.nip.io:{port}", ""])
async def test_foreign_host_is_refused(make_client, host):
    client, token = await make_client()
    value = host.format(port=client.port)
    for path in ("/v1/health", "/v1/status"):
        response = await client.get(path, headers=auth(token, Host=value))
        body = json.loads(await checked(response, path, "GET"))
        assert response.status == 403 and body["error"]["code"] == "forbidden_host"
    for name in ("127.0.0.1", "localhost", "[::1]"):
        response = await client.get("/v1/status", headers=auth(token,
                                                                Host=f"{name}:{client.port}"))
        assert response.status == 200


@pytest.mark.parametrize("header", [("Origin", "null"), ("Origin", "https://evil.example"),
                                    ("Origin", "chrome-extension://abcdefghijklmnop"),
                                    ("Origin", "http://127.0.0.1:7787"),
                                    ("Sec-Fetch-Site", "cross-site")])
async def test_any_browser_origin_is_refused_and_there_is_no_cors(make_client, face, header):
    client, token = await make_client()
    name, value = header
    response = await client.get("/v1/health", headers={name: value})
    body = json.loads(await checked(response, "/v1/health", "GET"))
    assert response.status == 403 and body["error"]["code"] == "origin_refused"
    response = await client.post("/v1/protect", data=face, params=QUICK,
                                 headers=auth(token, **{name: value,
                                                        "Content-Type": "image/png"}))
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    response = await client.options("/v1/protect", headers={
        name: value, "Access-Control-Request-Method": "POST"})
    assert response.status == 403 and "Access-Control-Allow-Origin" not in response.headers


async def test_rate_limit_per_client(make_client):
    client, token = await make_client(rate=0.5, burst=3)
    codes = [(await client.get("/v1/status", headers=auth(token))).status for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    other = auth(token, **{"X-LowKey-Client": "native-host"})  # another client's own bucket
    assert (await client.get("/v1/status", headers=other)).status == 200
    response = await client.get("/v1/status", headers=auth(token))
    body = json.loads(await checked(response, "/v1/status", "GET"))
    assert body["error"]["code"] == "rate_limited" and int(response.headers["Retry-After"]) >= 1


# -- input limits ------------------------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` (header only: a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))


async def post_image(client, token, data, content_type="image/png", path="/v1/protect"):
    """POST an image; returns the response and its JSON (None for an image answer)."""
    response = await client.post(path, data=data, params=QUICK,
                                 headers=auth(token, **{"Content-Type": content_type}))
    body = await checked(response, path, "POST")
    return response, json.loads(body) if response.content_type == "application/json" else None


async def test_oversized_body(make_client):
    client, token = await make_client(max_body_bytes=100_000)
    for path in ("/v1/protect", "/v1/jobs"):
        response, body = await post_image(client, token, b"\x89PNG\r\n\x1a\n" + b"\0" * 150_000,
                                          path=path)
        assert response.status == 413 and body["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("size", [(3000, 3000), (60000, 60000)])
async def test_decompression_bomb(make_client, size):
    client, token = await make_client()
    for path in ("/v1/protect", "/v1/jobs"):
        response, body = await post_image(client, token, png_header(*size), path=path)
        assert response.status == 413 and body["error"]["code"] == "too_many_pixels"


async def test_truncated_non_image_and_wrong_type(make_client, face):
    client, token = await make_client()
    response, body = await post_image(client, token, face[: len(face) // 2])
    assert response.status == 422 and body["error"]["code"] == "bad_image"
    response, body = await post_image(client, token, b"hello, this is not an image")
    assert response.status == 415 and body["error"]["code"] == "unsupported_media_type"
    response, body = await post_image(client, token, b"")
    assert response.status == 422 and body["error"]["code"] == "bad_image"
    response, body = await post_image(client, token, face, content_type="text/plain")
    assert response.status == 415 and body["error"]["code"] == "unsupported_media_type"
    response, body = await post_image(client, token, b"GIF89a" + b"\0" * 50,
                                      content_type="image/gif")
    assert response.status == 415
    response, body = await post_image(client, token, b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    assert response.status == 422 and body["error"]["code"] == "bad_image"


async def test_bad_parameters(make_client, face):
    client, token = await make_client()
    for params in ({"strength": "0"}, {"strength": "x"}, {"preset": "nope"},
                   {"faces": "some"}, {"format": "gif"}, {"quality": "101"},
                   {"measure": "maybe"}, {"timeout": "-1"}, {"report": "xml"},
                   {"strenght": "2"}):
        response = await client.post("/v1/protect", data=face, params=params,
                                     headers=auth(token, **{"Content-Type": "image/png"}))
        body = json.loads(await checked(response, "/v1/protect", "POST"))
        assert response.status == 400 and body["error"]["code"] == "bad_request", params


async def test_no_face_is_its_own_error(make_client):
    client, token = await make_client()
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    response, body = await post_image(client, token, encode(noise))
    assert response.status == 422 and body["error"]["code"] == "no_face"


# -- queue, cancellation, deadline, pause --------------------------------------------------------

async def test_queue_full_then_a_cancelled_job_frees_its_slot_at_once(make_client, face,
                                                                      monkeypatch):
    client, token = await make_client(queue_size=2)
    gate = Gate(monkeypatch)  # the first job runs until it is cancelled
    first = await submit(client, token, face, QUICK)
    await gate.reached()
    second = await submit(client, token, face, QUICK)
    response, body = await post_image(client, token, face, path="/v1/jobs")
    assert response.status == 503 and body["error"]["code"] == "queue_full"
    assert int(response.headers["Retry-After"]) >= 1
    response, body = await post_image(client, token, face)
    assert response.status == 503
    response = await client.delete(f"/v1/jobs/{second['id']}", headers=auth(token))
    assert (await response.json())["status"] == "cancelled"
    third = await submit(client, token, face, QUICK)  # the slot is free at once
    for job in (first, third):
        await client.delete(f"/v1/jobs/{job['id']}", headers=auth(token))
    response = await client.get(f"/v1/jobs/{second['id']}/result", headers=auth(token))
    body = json.loads(await checked(response, "/v1/jobs/{id}/result", "GET"))
    assert response.status == 409 and body["error"]["code"] == "cancelled"


@pytest.mark.parametrize("phase", ["decode", "detect", "attack", "encode", "measure"])
async def test_cancel_in_each_phase(make_client, face, monkeypatch, phase):
    client, token = await make_client()
    gate = Gate(monkeypatch, phase)
    params = dict(QUICK, measure="true") if phase == "measure" else QUICK
    job = await submit(client, token, face, params)
    queued = await submit(client, token, face, QUICK)  # waits behind it: cancel while queued
    await gate.reached()
    state = await wait_job(client, token, job["id"], until=("running",))
    assert state["phase"] == phase and state["status"] == "running"
    assert (await wait_job(client, token, queued["id"], until=("queued",)))["phase"] == "queued"
    for each in (queued, job):
        response = await client.delete(f"/v1/jobs/{each['id']}", headers=auth(token))
        body = json.loads(await checked(response, "/v1/jobs/{id}", "DELETE"))
        assert body["status"] == "cancelled" and body["error"]["code"] == "cancelled"
    response = await client.get("/v1/status", headers=auth(token))
    status = await response.json()
    assert status["jobs"]["cancelled"] == 2 and status["queue"]["queued"] == 0
    gate.open()
    after = await post_image(client, token, face)  # the worker is free again
    assert after[0].status == 200


async def test_deadline_gives_timed_out(make_client, face, monkeypatch):
    clock = TestClock()
    client, token = await make_client(clock=clock)
    gate = Gate(monkeypatch)  # every job is held in its attack until it is stopped
    job = await submit(client, token, face, dict(QUICK, timeout="0.5"))
    await gate.reached(1)
    queue = client.app[QUEUE]
    clock.advance(0.4)
    queue.sweep()  # before the deadline: nothing happens
    assert (await job_now(client, token, job["id"]))["status"] == "running"
    clock.advance(0.2)
    queue.sweep()
    final = await job_now(client, token, job["id"])
    assert final["status"] == "timed out" and final["error"]["code"] == "timed_out"
    assert final["error"]["message"] == "the job ran past its deadline during attack"
    response = await client.get(f"/v1/jobs/{job['id']}/result", headers=auth(token))
    body = json.loads(await checked(response, "/v1/jobs/{id}/result", "GET"))
    assert response.status == 504 and body["error"]["code"] == "timed_out"
    protect = asyncio.create_task(client.post(
        "/v1/protect", data=face, params=dict(QUICK, timeout="0.3"),
        headers=auth(token, **{"Content-Type": "image/png"})))
    await gate.reached(2)
    clock.advance(0.3)
    queue.sweep()
    response = await protect
    body = json.loads(await checked(response, "/v1/protect", "POST"))
    assert response.status == 504 and body["error"]["code"] == "timed_out"
    status = await (await client.get("/v1/status", headers=auth(token))).json()
    assert status["jobs"]["timed_out"] == 2


async def test_pause_and_resume(make_client, face):
    client, token = await make_client()
    response = await client.post("/v1/pause", headers=auth(token))
    assert json.loads(await checked(response, "/v1/pause", "POST")) == {"paused": True}
    assert (await (await client.get("/v1/status", headers=auth(token))).json())["paused"]
    for path in ("/v1/protect", "/v1/jobs"):
        response, body = await post_image(client, token, face, path=path)
        assert response.status == 409 and body["error"]["code"] == "paused"
    response = await client.post("/v1/resume", headers=auth(token))
    assert json.loads(await checked(response, "/v1/resume", "POST")) == {"paused": False}
    response, _ = await post_image(client, token, face)
    assert response.status == 200


async def test_many_clients_at_once_none_lost_none_crossed(make_client, astronaut_rgb):
    client, token = await make_client()
    crops = [face_crop(astronaut_rgb, dx, dy, size)
             for dx, dy, size in ((0, 0, 256), (-20, 10, 240), (15, -10, 224), (5, 5, 208),
                                  (-10, -5, 256), (10, 0, 232))]
    photos = [encode(c[:, ::-1] if i % 2 else c) for i, c in enumerate(crops)]

    async def one(i: int, data: bytes) -> tuple[int, bytes]:
        response = await client.post("/v1/protect", data=data,
                                     params=dict(QUICK, seed=str(i)),
                                     headers=auth(token, **{"Content-Type": "image/png"}))
        return response.status, await response.read()

    answers = await asyncio.gather(*(one(i, p) for i, p in enumerate(photos)))
    assert [status for status, _ in answers] == [200] * len(photos)
    for (_, body), data in zip(answers, photos, strict=True):
        out, original = load_photo(body), load_photo(data)
        assert out.size == original.size
        assert float((out.pixels - original.pixels).abs().max()) <= 0.012  # its own photo
    status = await (await client.get("/v1/status", headers=auth(token))).json()
    assert status["jobs"]["done"] == len(photos) and status["queue"]["running"] == 0


def spy_batches(monkeypatch) -> list[list[tuple[int, str | None]]]:
    """Record each batch the workers run, as (seed, format) of its jobs (the real code runs)."""
    batches: list[list[tuple[int, str | None]]] = []
    real = lowkey_daemon.queue.protect_bytes_batch

    def recorded(jobs, pool, **kwargs):
        batches.append([(options.seed, options.format) for _, options, _ in jobs])
        return real(jobs, pool, **kwargs)

    monkeypatch.setattr(lowkey_daemon.queue, "protect_bytes_batch", recorded)
    return batches


async def test_queued_jobs_with_the_same_options_share_one_attack(make_client, face,
                                                                 astronaut_rgb, monkeypatch):
    client, token = await make_client(batch=3)
    status = await (await client.get("/v1/status", headers=auth(token))).json()
    assert status["queue"]["batch"] == 3
    batches = spy_batches(monkeypatch)
    gate = Gate(monkeypatch)
    blocker = await submit(client, token, face, dict(QUICK, seed="9"))  # holds the worker
    # until it is cancelled, so that the jobs below are queued together
    await gate.reached()
    other = encode(face_crop(astronaut_rgb, -20, 10, 240))
    noise = encode(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    submitted = [(face, QUICK), (face, dict(QUICK, seed="1")), (other, QUICK),
                 (noise, QUICK), (other, dict(QUICK, format="jpeg")), (face, QUICK)]
    jobs = [await submit(client, token, data, params) for data, params in submitted]
    await client.delete(f"/v1/jobs/{blocker['id']}", headers=auth(token))
    gate.open()
    finals = [await wait_job(client, token, job["id"]) for job in jobs]
    # the oldest job and the next two with its options; then the next oldest, and so on
    assert batches == [[(9, None)], [(0, None), (0, None), (0, None)], [(1, None)],
                       [(0, "JPEG"), (0, None)]]
    assert [f["status"] for f in finals] == ["done", "done", "done", "failed", "done", "done"]
    assert finals[3]["error"]["code"] == "no_face"
    for (data, params), job in zip(submitted, jobs, strict=True):
        if params.get("format") or data is noise:
            continue
        response = await client.get(f"/v1/jobs/{job['id']}/result", headers=auth(token))
        batched = load_photo(await response.read()).pixels
        alone = await asyncio.get_running_loop().run_in_executor(
            None, lambda d=data, p=params: load_photo(protect_bytes(
                d, ProtectOptions(preset="tiny", strength=2, seed=int(p.get("seed", 0)),
                                  measure=False), shared_pool()).output).pixels)
        difference = (batched - alone).abs()
        assert float(difference.max()) <= 3 / 255 + 1e-6  # a sign or two the other way at most
        assert float((difference > 1.5 / 255).float().mean()) < 0.01
    status = await (await client.get("/v1/status", headers=auth(token))).json()
    assert status["jobs"]["done"] == 5 and status["queue"]["running"] == 0


async def test_a_job_stopped_in_a_batch_frees_its_slot_and_the_others_go_on(make_client, face,
                                                                           astronaut_rgb,
                                                                           monkeypatch):
    client, token = await make_client(batch=2)
    batches = spy_batches(monkeypatch)
    gate = Gate(monkeypatch)  # every job is held in its attack until it is stopped or let go
    blocker = await submit(client, token, face, dict(QUICK, seed="9"))
    await gate.reached(1)
    other = encode(face_crop(astronaut_rgb, 15, -10, 224))
    medium = dict(QUICK, strength="3")
    first = await submit(client, token, face, medium)
    second = await submit(client, token, other, dict(medium, timeout="600"))
    await client.delete(f"/v1/jobs/{blocker['id']}", headers=auth(token))
    await gate.reached(2)  # the batch of both is attacking
    await wait_job(client, token, first["id"], until=("running",))
    response = await client.delete(f"/v1/jobs/{first['id']}", headers=auth(token))
    assert (await response.json())["status"] == "cancelled"
    status = await (await client.get("/v1/status", headers=auth(token))).json()
    assert status["queue"]["running"] == 1  # the slot is free while the photo is attacked on
    assert (await job_now(client, token, second["id"]))["status"] == "running"
    gate.open()
    final = await wait_job(client, token, second["id"])
    assert final["status"] == "done" and final["report"]["steps"] == 3
    assert (await wait_job(client, token, first["id"]))["status"] == "cancelled"
    assert batches == [[(9, None)], [(0, None), (0, None)]]


@pytest.mark.parametrize("failure", [
    RuntimeError("boom at /home/someone/secret.py"),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0)")])
async def test_a_crash_or_out_of_memory_in_one_job_is_that_jobs_error(make_client, face,
                                                                      monkeypatch, failure):
    client, token = await make_client()
    real = lowkey_daemon.queue.protect_bytes_batch
    calls = []

    def crash_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise failure
        return real(*args, **kwargs)

    monkeypatch.setattr(lowkey_daemon.queue, "protect_bytes_batch", crash_once)
    response, body = await post_image(client, token, face)
    expected = ("internal", 500) if isinstance(failure, RuntimeError) and not isinstance(
        failure, torch.cuda.OutOfMemoryError) else ("out_of_memory", 503)
    assert (body["error"]["code"], response.status) == expected
    assert "/home" not in body["error"]["message"] and "Traceback" not in body["error"]["message"]
    response, _ = await post_image(client, token, face)
    assert response.status == 200


async def test_results_are_deleted_after_their_time(make_client, face):
    clock = TestClock()
    client, token = await make_client(result_ttl=0.5, clock=clock)
    job = await submit(client, token, face)
    assert (await wait_job(client, token, job["id"]))["status"] == "done"
    queue = client.app[QUEUE]
    clock.advance(0.4)
    queue.sweep()  # its time has not come
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=auth(token))).status == 200
    clock.advance(0.2)
    queue.sweep()
    assert (await client.get(f"/v1/jobs/{job['id']}", headers=auth(token))).status == 404


async def test_results_beyond_the_size_limit_are_deleted_oldest_first(make_client, face):
    client, token = await make_client(result_max_bytes=len(face) * 3 // 2)
    first = await submit(client, token, face)
    await wait_job(client, token, first["id"])
    second = await submit(client, token, face)
    await wait_job(client, token, second["id"])
    assert (await client.get(f"/v1/jobs/{first['id']}", headers=auth(token))).status == 404
    assert (await client.get(f"/v1/jobs/{second['id']}", headers=auth(token))).status == 200


async def test_shutdown_route_and_graceful_close_cancel_running_jobs(make_client, face,
                                                                    monkeypatch):
    stopped = asyncio.Event()
    client, token = await make_client(on_stop=stopped.set)
    gate = Gate(monkeypatch)  # the job runs until the daemon's close cancels it
    job = await submit(client, token, face, QUICK)
    await gate.reached()
    response = await client.post("/v1/shutdown", headers=auth(token))
    assert json.loads(await checked(response, "/v1/shutdown", "POST")) == {"stopping": True}
    await asyncio.wait_for(stopped.wait(), 30)
    queue = client.app[QUEUE]
    start = time.monotonic()
    await client.close()  # the app's cleanup: what a SIGTERM does
    assert time.monotonic() - start < 20
    assert queue.get(job["id"]).status == "cancelled" and queue.state == "stopping"


async def test_models_missing_is_a_state_not_a_download(aiohttp_client, tmp_path, monkeypatch,
                                                        face):
    from lowkey.models import store

    monkeypatch.setenv("LOWKEY_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(store, "_download_url", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setattr(store, "_from_wheel", lambda *a, **k: pytest.fail("downloaded"))
    config = small_config(tmp_path)
    app = create_app(config, pools=[ModelPool("cpu")], tokens=file_tokens(config))
    client = await aiohttp_client(app)
    health = await wait_ready(client)
    assert health["status"] == "models missing" and not health["ready"]
    assert "run `lowkey models fetch sface`" in health["message"]
    token = file_tokens(config).get()
    response, body = await post_image(client, token, face)
    assert response.status == 503 and body["error"]["code"] == "models_missing"


async def test_warm_up_at_start(aiohttp_client, tmp_path):
    config = small_config(tmp_path, warm_up=True)
    app = create_app(config, pools=[shared_pool()], tokens=file_tokens(config))
    client = await aiohttp_client(app)
    first = await (await client.get("/v1/health")).json()
    assert first["status"] in ("loading", "ready")
    assert (await wait_ready(client))["status"] == "ready"
