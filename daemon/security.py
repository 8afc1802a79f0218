"""The middlewares between a request and a handler, outermost first:

0. :func:`lowkey_daemon.connections.connection_activity`: tells the connection guard a request runs
   (a connection with a request in progress is never closed to make room).
1. :func:`error_envelope`: every error leaves as ``{"error": {"code", "message"}}``; an
   unexpected exception is logged and answered ``internal``, never with a traceback or a path.
2. :func:`host_guard`: the Host header must be a loopback name with the port the daemon is
   listening on (DNS rebinding: a page on evil.example that resolves to 127.0.0.1).
3. :func:`browser_guard`: a request carrying ``Origin`` or ``Sec-Fetch-Site`` came from a
   browser: refused (web pages must never drive the daemon; the extension goes through the
   native host, which sends neither). There is no CORS, so no preflight ever succeeds.
4. :func:`authenticate`: ``Authorization: Bearer <token>`` on every route but
   :data:`PUBLIC_ROUTES`, compared in constant time. A request without the token is refused
   here, before it reaches any state it shares with other clients: it costs an authenticated
   client nothing but the event loop's time for one cheap answer.
5. :func:`rate_limit`: a token bucket per authenticated client kind (:mod:`lowkey_daemon.ratelimit`;
   health is not counted).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from lowkey.service import CLIENT_HEADER
from lowkey_daemon.connections import connection_activity
from lowkey_daemon.errors import HTTP_STATUS_CODES, ApiError, error_response
from lowkey_daemon.keys import CONFIG, LIMITER, TOKENS
from lowkey_daemon.ratelimit import client_kind

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Routes answered without a token (liveness and readiness, nothing secret).
PUBLIC_ROUTES = frozenset({("GET", "/v1/health"), ("HEAD", "/v1/health")})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


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


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Only authenticated requests get here: a bucket per client kind (never per address or
    per free header value; see :mod:`lowkey_daemon.ratelimit`)."""
    if (request.method, request.path) in PUBLIC_ROUTES:  # cheap, and polled for readiness
        return await handler(request)
    wait = request.app[LIMITER].take(client_kind(request.headers.get(CLIENT_HEADER)))
    if wait:
        raise ApiError("rate_limited", "too many requests; slow down",
                       {"Retry-After": str(max(1, round(wait + 0.5)))})
    return await handler(request)


MIDDLEWARES = [connection_activity, error_envelope, host_guard, browser_guard, authenticate,
               rate_limit]
