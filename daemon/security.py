"""The middlewares between a request and a handler, outermost first:

1. :func:`error_envelope`: every error leaves as ``{"error": {"code", "message"}}``; an
   unexpected exception is logged and answered ``internal``, never with a traceback or a path.
2. :func:`host_guard`: the Host header must be a loopback name with the port the daemon is
   listening on (DNS rebinding: a page on evil.example that resolves to 127.0.0.1).
3. :func:`browser_guard`: a request carrying ``Origin`` or ``Sec-Fetch-Site`` came from a
   browser: refused (web pages must never drive the daemon; the extension goes through the
   native host, which sends neither). There is no CORS, so no preflight ever succeeds.
4. :func:`rate_limit`: a token bucket per client (address and ``X-LowKey-Client``; health is
   not counted).
5. :func:`authenticate`: ``Authorization: Bearer <token>`` on every route but
   :data:`PUBLIC_ROUTES`, compared in constant time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from daemon.errors import HTTP_STATUS_CODES, ApiError, error_response
from daemon.keys import BUCKETS, CONFIG, TOKENS

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes answered without a token (liveness and readiness, nothing secret).
PUBLIC_ROUTES = frozenset({("GET", "/v1/health"), ("HEAD", "/v1/health")})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: Header a local client may send to name itself, for its own rate-limit bucket.
CLIENT_HEADER = "X-LowKey-Client"


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.code, exc.message, exc.status, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_STATUS_CODES.get(exc.status, "bad_request" if exc.status < 500
                                     else "internal")
        message = {"not_found": "no such route", "method_not_allowed": "method not allowed "
                   "on this route", "body_too_large": "the body is over the daemon's limit of "
                   f"{request.app[CONFIG].max_body_bytes} bytes"}.get(code, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(code, message, exc.status, headers)
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response("internal", "internal error; see the daemon's log")


def _listening_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if sockname else None


@web.middleware
async def host_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    host = request.headers.get("Host", "")
    port = _listening_port(request)
    allowed = {f"{name}:{port}" for name in LOOPBACK_NAMES}
    if host.lower() not in allowed:
        raise ApiError("forbidden_host", "the Host header must be a loopback name with the "
                                         "daemon's port (127.0.0.1, localhost or [::1])")
    return await handler(request)


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if "Origin" in request.headers or "Sec-Fetch-Site" in request.headers:
        raise ApiError("origin_refused", "requests from web pages are refused; the browser "
                                         "extension talks to the daemon through its native host")
    return await handler(request)


class TokenBuckets:
    """``rate`` requests per second per client, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 when the client may go now, else the seconds until it may."""
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget idle clients
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return 0.0


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method, request.path) in PUBLIC_ROUTES:  # cheap, and polled for readiness
        return await handler(request)
    # every local client comes from 127.0.0.1: a client may name itself (X-LowKey-Client) to
    # get its own bucket; the limit is against runaway clients, not an authorisation
    client = f"{request.remote or '?'}/{request.headers.get(CLIENT_HEADER, '')[:64]}"
    wait = request.app[BUCKETS].take(client)
    if wait:
        raise ApiError("rate_limited", "too many requests; slow down",
                       {"Retry-After": str(max(1, round(wait + 0.5)))})
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method, request.path) not in PUBLIC_ROUTES:
        header = request.headers.get("Authorization", "")
        scheme, _, offered = header.partition(" ")
        if scheme.lower() != "bearer" or not offered.strip():
            raise ApiError("unauthorized", "this route needs Authorization: Bearer <token> "
                                           "(`lowkey daemon token` prints it)",
                           {"WWW-Authenticate": 'Bearer realm="lowkey"'})
        if not request.app[TOKENS].check(offered.strip()):
            raise ApiError("unauthorized", "wrong token (it may have been rotated: "
                                           "`lowkey daemon token`)",
                           {"WWW-Authenticate": 'Bearer realm="lowkey", error="invalid_token"'})
    return await handler(request)


MIDDLEWARES = [error_envelope, host_guard, browser_guard, rate_limit, authenticate]
