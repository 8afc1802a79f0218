"""The daemon's HTTP API under ``/v1`` (described by ``daemon/openapi.json``).

:func:`create_app` builds the application; :mod:`lowkey_daemon.cli` runs it. Handlers only parse,
check and answer: the work is the core's, in the job queue's device threads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from lowkey import __version__
from lowkey.jobs import ProtectOptions
from lowkey.json_safe import json_safe
from lowkey.pool import ModelPool, shared_pool
from lowkey.service import TokenStore
from lowkey_daemon.budget import decode_cost
from lowkey_daemon.config import DaemonConfig
from lowkey_daemon.connections import (
    HEADER_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    ConnectionGuard,
)
from lowkey_daemon.errors import CODES, ApiError
from lowkey_daemon.images import ACCEPTED_TYPES, check_image
from lowkey_daemon.keys import CONFIG, CONNECTIONS, LIMITER, OPENAPI, QUEUE, STOP, TOKENS
from lowkey_daemon.queue import Job, JobQueue
from lowkey_daemon.ratelimit import RateLimiter
from lowkey_daemon.security import MIDDLEWARES

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
#: The report goes in this header (compact JSON) unless ``?report=body``.
REPORT_HEADER = "X-LowKey-Report"
#: Reports longer than this lose their per-face details in the header (``faces_omitted``).
MAX_REPORT_HEADER = 6000
SSE_KEEPALIVE_S = 15.0
#: The whole body of an upload must arrive within this many seconds.
BODY_TIMEOUT_S = 60.0
#: What integer parameters may be: ASCII digits only (``int()`` would also take "５", "1_0",
#: " 7" and "+7").
_DIGITS = re.compile(r"[0-9]{1,10}")
#: And a number of seconds: ASCII digits with an optional fraction (no "inf", "nan", "1e3").
_SECONDS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")

routes = web.RouteTableDef()


# -- parameters -------------------------------------------------------------------------------

def _int(query: dict, name: str, default: int | None) -> int | None:
    """An integer parameter as written (its range is :class:`ProtectOptions`'s to check)."""
    text = query.get(name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text):
        raise ApiError("bad_request", f"{name} must be an integer written in ASCII digits (0-9)")
    return int(text)


def _choice(query: dict, name: str, default: str | None, choices: tuple[str, ...]) -> str | None:
    value = query.get(name, default)
    if value is not None and value not in choices:
        raise ApiError("bad_request", f"{name} must be one of {', '.join(choices)}")
    return value


def _bool(query: dict, name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ApiError("bad_request", f"{name} must be true or false")


#: The query parameters of each kind of request; any other is refused (400).
JOB_PARAMETERS = frozenset({"preset", "strength", "seed", "faces", "format", "quality",
                            "keep_location", "measure", "timeout"})
PROTECT_PARAMETERS = JOB_PARAMETERS | {"report"}
RESULT_PARAMETERS = frozenset({"report"})


def only(request: web.Request, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse query parameters this route does not know (a typo must not pass silently)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise ApiError("bad_request", f"unknown query parameter(s): {', '.join(unknown)}"
                       + (f"; this route takes {', '.join(sorted(allowed))}" if allowed else ""))


def protect_options(request: web.Request,
                    allowed: frozenset[str] = PROTECT_PARAMETERS
                    ) -> tuple[ProtectOptions, float | None]:
    """The job's options and timeout from the query string (:class:`ProtectOptions` checks
    them; the API names output formats in lower case, without aliases)."""
    from lowkey.image_formats import DEFAULT_QUALITY, FORMATS

    only(request, allowed)
    config, q = request.app[CONFIG], request.query
    fmt = _choice(q, "format", None, tuple(f.lower() for f in FORMATS))
    timeout = q.get("timeout")
    if timeout is not None:
        if not _SECONDS.fullmatch(timeout):
            raise ApiError("bad_request", "timeout must be a number of seconds written in ASCII "
                                          "digits (e.g. 30 or 2.5)")
        seconds = float(timeout)
        if not 0 < seconds <= config.job_timeout:
            raise ApiError("bad_request", f"timeout must be in (0, {config.job_timeout:g}]")
    try:
        options = ProtectOptions(
            preset=q.get("preset", config.preset),
            strength=_int(q, "strength", None),
            seed=_int(q, "seed", 0),
            faces=q.get("faces", "all"),
            format=fmt,
            quality=_int(q, "quality", DEFAULT_QUALITY),
            keep_location=_bool(q, "keep_location", False),
            measure=_bool(q, "measure", True),
            models=config.models)
    except ValueError as exc:
        raise ApiError("bad_request", str(exc)) from None
    _choice(q, "report", "header", ("header", "body"))
    return options, None if timeout is None else float(timeout)


async def _image_body(request: web.Request) -> tuple[bytes, int]:
    """The uploaded image and its decode cost (:func:`lowkey_daemon.budget.decode_cost`),
    checked from its header: type, pixels, and the decode budget."""
    config = request.app[CONFIG]
    if request.content_type not in ACCEPTED_TYPES:
        raise ApiError("unsupported_media_type", "Content-Type must be the image's type: "
                       "image/jpeg, image/png, image/webp or image/heic")
    if request.content_length is not None and request.content_length > config.max_body_bytes:
        raise ApiError("body_too_large", f"the body is over the daemon's limit of "
                                         f"{config.max_body_bytes} bytes")
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            data = await request.read()
    except TimeoutError:
        raise ApiError("bad_request", f"the body did not arrive within {BODY_TIMEOUT_S:g} s"
                       ) from None
    header = await asyncio.get_running_loop().run_in_executor(None, check_image, data,
                                                              config.max_pixels)
    cost = decode_cost(header.width, header.height, header.channels)
    request.app[QUEUE].budget.check(cost, header.width, header.height)
    return data, cost


# -- answers ----------------------------------------------------------------------------------

def _report_header(report: dict) -> str:
    text = json.dumps(report, separators=(",", ":"), allow_nan=False, default=str)
    if len(text) > MAX_REPORT_HEADER:
        short = {k: v for k, v in report.items() if k != "faces"}
        short["faces_omitted"] = len(report.get("faces", []))
        text = json.dumps(short, separators=(",", ":"), allow_nan=False, default=str)
    return text


def job_json(job: Job) -> dict:
    return json_safe(job.to_json(), infinity="null")


def result_response(job: Job, request: web.Request) -> web.Response:
    """A finished job's result: the image (report in a header) or, ``?report=body``, JSON."""
    if job.active:
        raise ApiError("job_not_finished", f"the job is {job.status}: its result is not ready",
                       {"Retry-After": "1"})
    if job.status in ("cancelled", "timed out"):
        code = "cancelled" if job.status == "cancelled" else "timed_out"
        raise ApiError(code, job.error.message if job.error else job.status)
    if job.status == "failed" or job.outcome is None or job.outcome.output is None:
        error = job.error
        code = error.code if error is not None and error.code in CODES else "internal"
        raise ApiError(code, error.message if error else "the job failed")
    outcome = job.outcome
    report = json_safe(outcome.report.to_json(), infinity="null")
    if request.query.get("report") == "body":
        return web.json_response({"job": job.id, "media_type": outcome.media_type,
                                  "image": base64.b64encode(outcome.output).decode("ascii"),
                                  "measured": outcome.measured, "report": report})
    return web.Response(body=outcome.output, content_type=outcome.media_type,
                        headers={REPORT_HEADER: _report_header(report), "X-LowKey-Job": job.id,
                                 "X-LowKey-Measured": str(outcome.measured).lower()})


# -- routes -----------------------------------------------------------------------------------

@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    only(request)
    queue = request.app[QUEUE]
    return web.json_response({"status": queue.state, "ready": queue.state == "ready",
                              "message": queue.state_message, "version": __version__})


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    only(request)
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    only(request)
    from lowkey.presets import PRESETS

    queue, config = request.app[QUEUE], request.app[CONFIG]
    info = queue.describe
    preset = PRESETS[config.preset]
    return web.json_response({
        "version": __version__, "state": queue.state,
        "devices": [str(p.device) for p in queue.pools],
        "preset": config.preset,
        "ensemble": info.get("models") or list(config.models or preset.models),
        "penalty": info.get("penalty") or preset.penalty,
        "judge": info.get("judge"),
        "judges": info.get("judges", []),
        "presets": list(PRESETS),
        "paused": queue.paused,
        "queue": {"queued": queue.queued_count, "running": queue.running_count,
                  "capacity": config.queue_size,
                  "batch": max(queue.batch_size(p) for p in queue.pools)},
        "jobs": {"submitted": queue.counts["submitted"], "done": queue.counts["done"],
                 "failed": queue.counts["failed"], "cancelled": queue.counts["cancelled"],
                 "timed_out": queue.counts["timed out"]},
        "limits": {"max_body_bytes": config.max_body_bytes, "max_pixels": config.max_pixels,
                   "decode_budget_bytes": config.decode_budget_bytes,
                   "job_timeout_s": config.job_timeout, "result_ttl_s": config.result_ttl,
                   "rate_per_s": config.rate, "burst": config.burst,
                   "max_connections": MAX_CONNECTIONS, "header_timeout_s": HEADER_TIMEOUT_S,
                   "idle_timeout_s": IDLE_TIMEOUT_S},
    })


@routes.post("/v1/protect")
async def protect(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    queue.check_accepting()
    options, timeout = protect_options(request)
    data, cost = await _image_body(request)
    job = queue.submit(data, options, timeout, cost)
    try:
        await job.finished.wait()
    except asyncio.CancelledError:  # the client went away
        queue.cancel(job, "the client disconnected")
        raise
    try:
        return result_response(job, request)
    finally:
        queue.forget(job)


@routes.post("/v1/jobs")
async def create_job(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    queue.check_accepting()
    options, timeout = protect_options(request, JOB_PARAMETERS)
    data, cost = await _image_body(request)
    job = queue.submit(data, options, timeout, cost)
    return web.json_response(job_json(job), status=202,
                             headers={"Location": f"/v1/jobs/{job.id}"})


@routes.get("/v1/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    only(request)
    return web.json_response(job_json(request.app[QUEUE].get(request.match_info["id"])))


@routes.get("/v1/jobs/{id}/result")
async def get_result(request: web.Request) -> web.Response:
    only(request, RESULT_PARAMETERS)
    _choice(request.query, "report", "header", ("header", "body"))
    return result_response(request.app[QUEUE].get(request.match_info["id"]), request)


@routes.delete("/v1/jobs/{id}")
async def delete_job(request: web.Request) -> web.Response:
    only(request)
    queue = request.app[QUEUE]
    job = queue.get(request.match_info["id"])
    if job.active:
        queue.cancel(job)
    else:
        queue.forget(job)
    return web.json_response(job_json(job))


@routes.get("/v1/jobs/{id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    only(request)
    job = request.app[QUEUE].get(request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    seen = -1
    while True:
        if job.version != seen:
            seen = job.version
            event = "progress" if job.active else "end"
            payload = json.dumps(job_json(job), separators=(",", ":"))
            await response.write(f"event: {event}\ndata: {payload}\n\n".encode())
            if not job.active:
                break
        else:
            await response.write(b": keep-alive\n\n")
        await job.wait_change(SSE_KEEPALIVE_S)
    await response.write_eof()
    return response


@routes.post("/v1/pause")
async def pause(request: web.Request) -> web.Response:
    only(request)
    request.app[QUEUE].pause()
    logger.info("paused")
    return web.json_response({"paused": True})


@routes.post("/v1/resume")
async def resume(request: web.Request) -> web.Response:
    only(request)
    request.app[QUEUE].resume()
    logger.info("resumed")
    return web.json_response({"paused": False})


@routes.post("/v1/shutdown")
async def shutdown(request: web.Request) -> web.Response:
    only(request)
    logger.info("shutdown requested over HTTP")
    asyncio.get_running_loop().call_later(0.1, request.app[STOP])
    return web.json_response({"stopping": True}, status=202)


def _raise_graceful_exit() -> None:
    raise web.GracefulExit()


def create_app(config: DaemonConfig | None = None, *, pools: list[ModelPool] | None = None,
               tokens: TokenStore | None = None,
               on_stop: Callable[[], None] | None = None) -> web.Application:
    """The daemon's application.

    ``pools``: one per device (default: the process-wide pool of each of ``config.devices``);
    ``tokens``: where the bearer token lives (default: keyring, else a 0600 file in
    ``config.config_dir``); ``on_stop``: what ``POST /v1/shutdown`` calls (default: stop the
    running server gracefully). Models load and warm up in the background once the app starts;
    ``GET /v1/health`` says when it is ready.
    """
    config = config or DaemonConfig()
    tokens = tokens or TokenStore(config.config_dir)
    tokens.get()  # generated on first start
    if pools is None:
        pools = [shared_pool(d) for d in (config.devices or (None,))]
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[TOKENS] = tokens
    app[LIMITER] = RateLimiter(config.rate, config.burst)
    app[CONNECTIONS] = ConnectionGuard()
    app[OPENAPI] = OPENAPI_PATH.read_bytes()
    app[STOP] = on_stop or _raise_graceful_exit

    queue = app[QUEUE] = JobQueue(config, pools)

    async def job_queue(app: web.Application) -> AsyncIterator[None]:
        await queue.start()
        yield
        await queue.close()

    app.cleanup_ctx.append(job_queue)
    app.add_routes(routes)
    return app


__all__ = ["create_app", "protect_options"]
