"""The daemon against a hostile local client (issue 22): unauthenticated traffic costs an
authenticated client nothing, the limiter's table is bounded, a full queue's Retry-After is an
honest estimate, integer parameters are ASCII digits, decoding has a memory budget, a cancel
stops the attack within one model call, connections are bounded and time out, malformed HTTP
is answered in the envelope, and logs are private.

HTTP tests run ``create_app(...)`` with the real core and SFace alone (as test_daemon.py);
connection tests serve it on a real loopback socket through :func:`daemon.connections.
start_site`, as ``lowkey daemon`` does."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time

import pytest
from test_daemon import QUICK, auth, png_header, shared_pool, submit, wait_job
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

from lowkey_daemon.app import create_app
from lowkey_daemon.budget import DecodeBudget, decode_cost
from lowkey_daemon.connections import ConnectionGuard, start_site
from lowkey_daemon.keys import CONNECTIONS, LIMITER, QUEUE
from lowkey_daemon.queue import MAX_RETRY_AFTER_S, RunTimes
from lowkey_daemon.ratelimit import RateLimiter, client_kind

pytestmark = pytest.mark.weights


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    install_tiny_preset(monkeypatch)


@pytest.fixture
def make_client(aiohttp_client, tmp_path):
    """``await make_client(**config changes)`` -> (client, token), the app loaded and ready."""

    async def make(clock=None, **changes):
        config = small_config(tmp_path, **changes)
        tokens = file_tokens(config)
        app = create_app(config, pools=[shared_pool()], tokens=tokens)
        client = await aiohttp_client(app)
        assert (await wait_ready(client))["status"] == "ready"
        if clock is not None:  # run times on the test's time
            client.app[QUEUE].clock = clock
        return client, tokens.get()

    return make


@pytest.fixture(scope="module")
def face(astronaut_rgb):
    return encode(face_crop(astronaut_rgb))


# -- authentication before any shared state; the limiter ----------------------------------------

async def test_unauthenticated_requests_never_cost_an_authenticated_client(make_client):
    client, token = await make_client(rate=0.5, burst=3)
    for i in range(50):  # with and without a client name of their choosing
        headers = {"X-LowKey-Client": f"spoof-{i}"} if i % 2 else {}
        if i % 3 == 0:
            headers["Authorization"] = "Bearer wrong"
        response = await client.get("/v1/status", headers=headers)
        body = json.loads(await checked(response, "/v1/status", "GET"))
        assert response.status == 401 and body["error"]["code"] == "unauthorized"
    assert len(client.app[LIMITER]) == 0  # they never reached it
    codes = [(await client.get("/v1/status", headers=auth(token))).status for _ in range(3)]
    assert codes == [200, 200, 200]  # the whole burst is still there


async def test_limits_are_keyed_on_client_kind_not_on_a_free_header(make_client):
    client, token = await make_client(rate=0.5, burst=3)
    codes = [(await client.get("/v1/status", headers=auth(
        token, **{"X-LowKey-Client": f"fresh-name-{i}"}))).status for i in range(4)]
    assert codes == [200, 200, 200, 429]  # a new name is no new bucket
    host = auth(token, **{"X-LowKey-Client": "native-host"})
    assert (await client.get("/v1/status", headers=host)).status == 200  # its own bucket
    assert len(client.app[LIMITER]) == 2


def test_the_limiters_table_is_bounded_and_o1():
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, max_clients=100, clock=lambda: now[0])
    for i in range(10_000):
        assert limiter.take(f"client-{i}") == 0.0
        assert len(limiter) <= 100
    # the least recently used are forgotten, the recent ones kept
    assert limiter.take("client-9999") == 0.0 and limiter.take("client-9999") == 1.0
    now[0] += 1.0  # refills at the rate
    assert limiter.take("client-9999") == 0.0


def test_client_kinds_are_a_fixed_set():
    assert client_kind("native-host") == "native-host" and client_kind(" CLI ") == "cli"
    assert {client_kind(v) for v in (None, "", "x" * 10_000, "native-host2")} == {"other"}


async def test_the_native_host_names_itself_and_keeps_no_idle_connection(tmp_path,
                                                                         monkeypatch):
    from lowkey_native_host.daemon_client import DaemonClient

    monkeypatch.setenv("LOWKEY_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    async with DaemonClient() as client:
        assert client._headers()["X-LowKey-Client"] == "native-host"
        assert client._session.connector.force_close


# -- Retry-After of a full queue ----------------------------------------------------------------

def test_retry_after_is_the_median_run_time_over_the_workers_bounded():
    times = RunTimes()
    assert times.retry_after(1) == 5  # no history yet
    for seconds in [0.4] * 19 + [900.0]:  # one outlier does not move a median
        times.add(seconds)
    assert times.retry_after(1) == 1
    for _ in range(20):
        times.add(30.0)
    assert times.retry_after(1) == 30 and times.retry_after(2) == 15
    for _ in range(20):
        times.add(10_000.0)
    assert times.retry_after(1) == MAX_RETRY_AFTER_S


async def test_only_done_jobs_inform_retry_after(make_client, face, monkeypatch):
    import numpy as np

    clock = TestClock()
    client, token = await make_client(queue_size=1, clock=clock)
    queue = client.app[QUEUE]
    done = await submit(client, token, face)
    assert (await wait_job(client, token, done["id"]))["status"] == "done"
    gate = Gate(monkeypatch)  # every job from here on runs until it is cancelled
    slow = await submit(client, token, face)  # cancelled after it ran a while
    await gate.reached(1)
    clock.advance(50.0)
    await client.delete(f"/v1/jobs/{slow['id']}", headers=auth(token))
    gate.open()  # the job without a face fails before its attack
    noise = encode(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    failed = await submit(client, token, noise)  # no face: failed
    assert (await wait_job(client, token, failed["id"]))["status"] == "failed"
    assert len(queue.run_times) == 1
    gate = Gate(monkeypatch)
    blocker = await submit(client, token, face)
    await gate.reached(1)
    response = await client.post("/v1/jobs", data=face, params=QUICK,
                                 headers=auth(token, **{"Content-Type": "image/png"}))
    body = json.loads(await checked(response, "/v1/jobs", "POST"))
    assert response.status == 503 and body["error"]["code"] == "queue_full"
    # the estimate of the one done job (its run, not its queueing nor the cancelled one's 50 s)
    assert int(response.headers["Retry-After"]) == queue.run_times.retry_after(1) == 1
    await client.delete(f"/v1/jobs/{blocker['id']}", headers=auth(token))


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{"strength": "\uff15"}, {"strength": "1_0"},
                                   {"strength": " 7"}, {"strength": "+7"},
                                   {"seed": "\u0663"}, {"quality": "9\u0660"},
                                   {"timeout": "inf"}, {"timeout": "1e2"},
                                   {"timeout": "\uff15"}, {"timeout": "1_0"}])
async def test_numbers_are_ascii_digits_only(make_client, face, params):
    client, token = await make_client()
    response = await client.post("/v1/jobs", data=face, params=params,
                                 headers=auth(token, **{"Content-Type": "image/png"}))
    body = json.loads(await checked(response, "/v1/jobs", "POST"))
    assert response.status == 400 and body["error"]["code"] == "bad_request"
    assert "ASCII digits" in body["error"]["message"]


# -- the decode budget --------------------------------------------------------------------------

async def test_a_photo_over_the_decode_budget_is_refused_before_decoding(make_client):
    # a few hundred bytes declaring 6000 x 6000: within the pixel limit, over the budget
    client, token = await make_client(max_pixels=40_000_000, decode_budget_bytes=100 * 2**20)
    response = await client.post("/v1/jobs", data=png_header(6000, 6000), params=QUICK,
                                 headers=auth(token, **{"Content-Type": "image/png"}))
    body = json.loads(await checked(response, "/v1/jobs", "POST"))
    assert response.status == 413 and body["error"]["code"] == "too_many_pixels"
    assert "6000x6000" in body["error"]["message"] and "budget" in body["error"]["message"]
    status = await (await client.get("/v1/status", headers=auth(token))).json()
    assert status["jobs"]["submitted"] == 0 and status["limits"]["decode_budget_bytes"] > 0


async def test_the_decode_budget_makes_jobs_wait_in_turn():
    budget = DecodeBudget(100)
    order: list[str] = []

    async def job(name: str, cost: int, hold: asyncio.Event) -> None:
        async with budget.reserve(cost):
            order.append(name)
            assert budget.used <= budget.total
            await hold.wait()

    holds = {name: asyncio.Event() for name in "abc"}
    a = asyncio.create_task(job("a", 60, holds["a"]))
    await asyncio.sleep(0.01)
    b = asyncio.create_task(job("b", 60, holds["b"]))  # does not fit beside a: waits
    await asyncio.sleep(0.01)
    c = asyncio.create_task(job("c", 10, holds["c"]))  # would fit, but b came first
    await asyncio.sleep(0.01)
    assert order == ["a"] and budget.used == 60
    holds["a"].set()
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c"] and budget.used == 70
    holds["b"].set()
    holds["c"].set()
    await asyncio.gather(a, b, c)
    assert budget.used == 0
    assert decode_cost(6000, 6000, 3) == 6000 * 6000 * 3 * 8 == decode_cost(6000, 6000, 1)


# -- cancelling within one model call -----------------------------------------------------------

def test_a_cancel_stops_the_attack_within_one_model_call(astronaut_rgb):
    from lowkey.jobs import JobCancelled, JobControl, ProtectOptions
    from lowkey.protect import Protector, protect_bytes

    pool = shared_pool()
    options = ProtectOptions(preset="tiny", strength=50, measure=False)
    model = Protector.for_options(options, pool).attack.objective.models[0]
    control = JobControl()
    forward: list[bool] = []  # whether the job was cancelled, at each model call
    backward: list[bool] = []  # and at each backward pass through it

    def watch(module, inputs, output) -> None:
        forward.append(control.cancelled)
        if output.requires_grad:
            output.register_hook(lambda grad: backward.append(control.cancelled))
        if len(forward) == 3:  # the original embeddings, step 1, then during step 2's call
            control.cancel()

    hook = model.register_forward_hook(watch)
    try:
        with pytest.raises(JobCancelled):
            protect_bytes(encode(face_crop(astronaut_rgb)), options, pool, control)
    finally:
        hook.remove()
    # nothing ran after the cancel: not the rest of step 2 (its backward), nor a step 3
    assert forward == [False, False, False] and backward == [False]


# -- connections --------------------------------------------------------------------------------

@pytest.fixture
async def served(tmp_path):
    """``await served(**guard settings)`` -> (port, token, app): the app on a real loopback
    socket through its connection guard, loaded and ready."""
    runners = []

    async def serve(**guard):
        config = small_config(tmp_path)
        tokens = file_tokens(config)
        app = create_app(config, pools=[shared_pool()], tokens=tokens)
        app[CONNECTIONS] = ConnectionGuard(**guard)
        runner, site = await start_site(app, "127.0.0.1", 0)
        runners.append(runner)
        while app[QUEUE].state == "loading":
            await asyncio.sleep(0.05)
        return site.port, tokens.get(), app

    yield serve
    for runner in runners:
        await runner.cleanup()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """How long until the server closed the connection (reading whatever it sent)."""
    start = time.monotonic()
    await asyncio.wait_for(reader.read(), seconds)
    return time.monotonic() - start


async def http(port: int, request: bytes) -> tuple[int, dict]:
    """Send a raw request; the status and the JSON body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def get(port: int, path: str, token: str | None = None, close: bool = True) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_silent_slow_and_idle_connections_are_closed(served):
    port, token, _ = await served(header_timeout=0.5, idle_timeout=1.0)
    silent, _ = await asyncio.open_connection("127.0.0.1", port)
    slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)

    async def drip() -> None:  # slow headers: a byte every 0.1 s, never finished
        for byte in get(port, "/v1/health"):
            slow.write(bytes([byte]))
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(drip())
    assert await closed_within(silent, 5) < 2
    assert await closed_within(slow_reader, 5) < 2
    dripping.cancel()
    idle_reader, idle = await asyncio.open_connection("127.0.0.1", port)
    idle.write(get(port, "/v1/status", token, close=False))  # a whole request, kept alive
    await idle.drain()
    first = await idle_reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200")
    assert 0.5 < await closed_within(idle_reader, 5) < 3  # idle after its answer


class Connection:
    """What the guard needs of a connection (aiohttp's request handler)."""

    transport = None

    def __init__(self) -> None:
        self.closed = False

    def force_close(self) -> None:
        self.closed = True


def test_room_is_made_from_silent_connections_first_then_idle_ones_never_busy_ones():
    now = [0.0]
    guard = ConnectionGuard(limit=3, header_timeout=5, idle_timeout=10, clock=lambda: now[0])
    idle, silent, busy = Connection(), Connection(), Connection()
    for connection in (idle, silent, busy):
        assert guard.make_room()
        guard.add(connection)
    for connection in (idle, busy):
        guard.heard(connection)
        guard.begin(connection)
    guard.end(idle)  # between two requests
    assert guard.make_room() and silent.closed and not idle.closed  # silent first, though newer
    guard.add(newcomer := Connection())
    guard.heard(newcomer)
    guard.begin(newcomer)
    assert guard.make_room() and idle.closed  # then the oldest with no request in progress
    guard.add(last := Connection())
    guard.begin(last)
    assert not guard.make_room() and guard.refused == 1  # every one busy: refused
    assert not busy.closed and len(guard) == 3
    now[0] = 100.0
    assert guard.sweep() == 0  # busy connections never time out


async def test_silent_connections_never_lock_a_client_out(served):
    port, token, app = await served(limit=4)
    sockets = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
    status, body = await http(port, get(port, "/v1/status", token))
    assert status == 200 and body["state"] == "ready"
    assert len(app[CONNECTIONS]) <= 4
    for _, writer in sockets:
        writer.close()


async def test_when_every_connection_is_busy_a_newcomer_gets_503(served):
    port, token, app = await served(limit=2)
    uploads = []
    for _ in range(2):  # authenticated uploads whose bodies never finish: busy
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Type: image/png\r\n"
                      "Content-Length: 100000\r\n\r\n").encode() + b"\x89PNG")
        await writer.drain()
        uploads.append(writer)
    guard = app[CONNECTIONS]
    for _ in range(1000):  # until the daemon has read both requests' heads (no fixed sleep)
        if guard.busy == 2:
            break
        await asyncio.sleep(0.01)
    status, body = await http(port, get(port, "/v1/health"))
    assert status == 503 and body["error"]["code"] == "too_many_connections"
    for writer in uploads:
        writer.close()


@pytest.mark.parametrize("request_head", [
    b"GET /v1/health HTTP/1.1\r\n\r\n",  # no Host
    b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n",  # two
    b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",  # too many headers
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS to a plain port
], ids=["no-host", "two-hosts", "big-header", "many-headers", "garbage"])
async def test_malformed_http_is_answered_in_the_envelope_with_one_log_line(served, caplog,
                                                                            request_head):
    port, _, _ = await served()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        status, body = await http(port, request_head)
    assert status == 400 and set(body) == {"error"}
    assert body["error"]["code"] == "bad_request"
    assert body["error"]["message"].startswith("malformed HTTP request")
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) == 1 and noisy[0].exc_info is None
    assert "\n" not in noisy[0].getMessage()


# -- private logs -------------------------------------------------------------------------------

def test_the_daemons_log_is_0600_in_a_0700_folder_and_stays_so_when_rotated(tmp_path):
    from lowkey_daemon.cli import _setup_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    umask = os.umask(0o022)  # the usual umask, which would make files 0644
    try:
        path = _setup_logging(tmp_path / "state", verbose=False)
        logging.getLogger("lowkey_daemon").info("hello")
        root.handlers[0].doRollover()
        logging.getLogger("lowkey_daemon").info("again")
    finally:
        os.umask(umask)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    for log in (path, path.with_name(path.name + ".1")):
        assert stat.S_IMODE(os.stat(log).st_mode) == 0o600, log
