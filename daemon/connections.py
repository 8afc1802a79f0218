"""The daemon's connections: how many may be open, how long one may stay silent, and malformed
HTTP answered in the JSON error envelope.

Every local client connects from 127.0.0.1, so connections cannot be counted per client; the
daemon bounds them all together, and makes sure the bound cannot be held by clients that send
nothing (:class:`ConnectionGuard`):

- at most :data:`MAX_CONNECTIONS` are open at once; when a new one comes and the table is full,
  the oldest connection that has not sent a byte is closed to make room, else the oldest with
  no request in progress, so silent or idle sockets can never lock a client out (a client
  sends its request at once: from its first byte it is no longer the first to go); only when
  every open connection has a request in progress (long requests need the token) is the
  newcomer answered 503 ``too_many_connections`` and closed;
- a new connection must send a whole request head within :data:`HEADER_TIMEOUT_S` (slow
  headers), and a connection between requests is closed after :data:`IDLE_TIMEOUT_S` of
  silence (idle keep-alive);
- request heads are capped (:data:`MAX_LINE_BYTES` a line, :data:`MAX_HEADERS` headers), and
  what aiohttp's parser refuses (no Host, two Hosts, oversized headers, garbage) is answered
  400 ``bad_request`` in the envelope with one log line, never a traceback
  (:class:`GuardedRequestHandler`).

:func:`start_site` serves an application this way; :func:`serve` runs it until a signal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_request import BaseRequest

from lowkey_daemon.errors import error_response

logger = logging.getLogger(__name__)

#: The most connections open at once (all local clients together).
MAX_CONNECTIONS = 256
#: A new connection must have sent a whole request head within this many seconds.
HEADER_TIMEOUT_S = 5.0
#: A connection with no request in progress and nothing left to send is closed after this long.
IDLE_TIMEOUT_S = 10.0
#: Connections the kernel queues before the daemon accepts them. A short queue drops SYNs
#: under a connection flood (the client retries a second later); a long one lets one wake-up
#: accept so many that they push out a client accepted in the same batch before its first
#: byte is read: kept under :data:`MAX_CONNECTIONS`.
BACKLOG = 128
#: How often the timeouts are checked.
SWEEP_S = 0.5
#: Request head limits: bytes in the request line or one header, and headers in all.
MAX_LINE_BYTES = 8190
MAX_HEADERS = 64
#: A refusal is logged at most this often (with how many there were).
REFUSAL_LOG_S = 60.0
#: A refused connection is closed at the latest this long after its answer.
REFUSAL_LINGER_S = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Connection:
    """One open connection: when it opened or its last request ended, requests in progress,
    and requests begun."""

    since: float
    busy: int = 0
    begun: int = 0


class ConnectionGuard:
    """The table of open connections, the cap and the timeouts (see the module's doc).

    Connections are any objects with ``force_close()`` and ``transport`` (aiohttp's request
    handlers); :meth:`begin` and :meth:`end` come from :func:`connection_activity` around each
    request. ``clock`` is injectable for tests."""

    def __init__(self, limit: int = MAX_CONNECTIONS, header_timeout: float = HEADER_TIMEOUT_S,
                 idle_timeout: float = IDLE_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or header_timeout <= 0 or idle_timeout <= 0:
            raise ValueError("limit and the timeouts must be positive")
        self.limit, self.header_timeout, self.idle_timeout = limit, header_timeout, idle_timeout
        self._clock = clock
        self._open: OrderedDict[object, _Connection] = OrderedDict()  # oldest first
        self._silent: OrderedDict[object, None] = OrderedDict()  # no byte received yet
        self.refused = 0
        self.closed_silent = 0
        self._refusals_logged = 0
        self._refusal_logged_at: float | None = None

    def __len__(self) -> int:
        return len(self._open)

    @property
    def busy(self) -> int:
        """How many open connections have a request in progress."""
        return sum(state.busy > 0 for state in self._open.values())

    def make_room(self) -> bool:
        """Before accepting a connection: True when there is room (the oldest connection with no
        request in progress closed if needed), False when every open one is busy."""
        if len(self._open) < self.limit:
            return True
        victim = next(iter(self._silent), None)  # O(1): what a flood of sockets holds
        if victim is None:
            victim = next((c for c, state in self._open.items() if state.busy == 0), None)
        if victim is None:
            self.refused += 1
            self._log_refusal()
            return False
        self._close(victim)
        return True

    def add(self, connection: object) -> None:
        """A connection was accepted."""
        self._open[connection] = _Connection(self._clock())
        self._silent[connection] = None

    def heard(self, connection: object) -> None:
        """Bytes came on ``connection``: it is no longer silent."""
        self._silent.pop(connection, None)

    def discard(self, connection: object) -> None:
        """A connection closed."""
        self._open.pop(connection, None)
        self._silent.pop(connection, None)

    def begin(self, connection: object) -> None:
        """A request on ``connection`` is being handled (unknown connections are ignored: an
        app served otherwise, as in tests)."""
        self._silent.pop(connection, None)
        state = self._open.get(connection)
        if state is not None:
            state.busy += 1
            state.begun += 1

    def end(self, connection: object) -> None:
        """A request on ``connection`` was handled; its idle time starts now."""
        state = self._open.get(connection)
        if state is not None:
            state.busy = max(0, state.busy - 1)
            state.since = self._clock()

    def sweep(self) -> int:
        """Close connections past their timeout; how many were closed."""
        now = self._clock()
        expired = []
        for connection, state in self._open.items():
            if state.busy:
                continue
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.get_write_buffer_size():
                state.since = now  # still sending its answer: not idle
                continue
            limit = self.idle_timeout if state.begun else self.header_timeout
            if now - state.since > limit:
                expired.append(connection)
        for connection in expired:
            self._close(connection)
        self.closed_silent += len(expired)
        return len(expired)

    def _close(self, connection: object) -> None:
        self.discard(connection)
        connection.force_close()  # type: ignore[attr-defined]

    def _log_refusal(self) -> None:
        now = self._clock()
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= REFUSAL_LOG_S:
            logger.warning("%d connection(s) refused: all %d connections have a request in "
                           "progress", self.refused - self._refusals_logged, self.limit)
            self._refusal_logged_at, self._refusals_logged = now, self.refused


@web.middleware
async def connection_activity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: tells the app's :class:`ConnectionGuard` when a request runs."""
    from lowkey_daemon.keys import CONNECTIONS

    guard = request.app[CONNECTIONS]
    guard.begin(request.protocol)
    try:
        return await handler(request)
    finally:
        guard.end(request.protocol)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's request handler, counted by a :class:`ConnectionGuard`, whose parse errors are
    answered in the daemon's JSON envelope with one log line."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: object) -> None:
        super().__init__(manager, **kwargs)  # type: ignore[arg-type]
        self._guard = guard

    def data_received(self, data: bytes) -> None:
        self._guard.heard(self)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._guard.discard(self)
        super().connection_lost(exc)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:  # not a malformed request: a bug, whose traceback belongs in the log
            logger.error("error answering a request", exc_info=exc)
            code, text = "internal", "internal error; see the daemon's log"
        else:
            reason = _reason(exc, message)
            logger.warning("malformed HTTP request refused (%s: %.120r)",
                           type(exc).__name__ if exc else status, reason)
            code, text = "bad_request", f"malformed HTTP request: {reason[:200]}"
        if request.writer.output_size > 0:  # part of an answer went out: nothing more to say
            raise ConnectionError("the answer was already started")
        response = error_response(code, text, 400 if code == "bad_request" else 500)
        response.force_close()
        return response


def _reason(exc: BaseException | None, message: str | None) -> str:
    """What was wrong with a request aiohttp's parser refused, in one short line."""
    if isinstance(exc, LineTooLong):
        return f"a request line or header is over {MAX_LINE_BYTES} bytes"
    text = str(getattr(exc, "message", None) or message or exc or "").strip()
    return text.splitlines()[0] if text else "unreadable request"


class _Refusal(asyncio.Protocol):
    """A connection over the cap: answered 503 ``too_many_connections`` at once, then closed
    (after the client's own close, or :data:`REFUSAL_LINGER_S`: closing on a request not read
    yet would reset the connection before the client reads the answer)."""

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        body = json.dumps({"error": {"code": "too_many_connections",
                                     "message": "the daemon has as many connections open as "
                                                "it takes, all busy; try again shortly"}})
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
        transport.write(head.encode("ascii") + body.encode("ascii"))
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 guard: ConnectionGuard) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self._guard = guard
        self._sweeper: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when asked for 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        if not self._guard.make_room():
            return _Refusal()
        handler = GuardedRequestHandler(
            server, self._guard, loop=asyncio.get_running_loop(), access_log=None,
            keepalive_timeout=IDLE_TIMEOUT_S, max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES, max_headers=MAX_HEADERS)
        self._guard.add(handler)
        return handler

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port,
                                                reuse_address=True, backlog=BACKLOG)
        self._sweeper = asyncio.create_task(self._sweep(), name="connection-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await super().stop()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self._guard.sweep()


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner,
                                                                           GuardedSite]:
    """Set ``app`` up and serve it on ``host:port`` through its guard (``port`` 0: any free
    one, see ``site.port``). ``await runner.cleanup()`` stops it."""
    from lowkey_daemon.keys import CONNECTIONS

    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=10.0)
    await runner.setup()
    site = GuardedSite(runner, host, port, app[CONNECTIONS])
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def serve(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT or SIGTERM (or the app raises :class:`web.GracefulExit`),
    then shut down gracefully. Raises OSError when the port cannot be listened on."""
    loop = asyncio.new_event_loop()
    runner: web.AppRunner | None = None

    def stop() -> None:
        raise web.GracefulExit()

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop)
            except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C is KeyboardInterrupt
                pass
        runner, _ = loop.run_until_complete(start_site(app, host, port))
        loop.run_forever()
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if runner is not None:
            loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


__all__ = ["HEADER_TIMEOUT_S", "IDLE_TIMEOUT_S", "MAX_CONNECTIONS", "MAX_HEADERS",
           "MAX_LINE_BYTES", "ConnectionGuard", "GuardedRequestHandler", "GuardedSite",
           "connection_activity", "serve", "start_site"]
