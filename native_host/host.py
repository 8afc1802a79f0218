"""``lowkey-native-host``: the program the browser starts for the extension.

It speaks native messaging on stdin/stdout (:mod:`lowkey_native_host.protocol`, messages defined in
``native_host/messages.schema.json``) and is an ordinary HTTP client of the daemon
(:mod:`lowkey_native_host.daemon_client`): it never imports torch or the models, so it starts in a
fraction of a second. The daemon's token stays here; the extension never sees it.

- A thread reads messages from stdin; each request is handled in its own task, so several photos
  may be in flight and their replies interleave (every reply and event carries the request's id).
- ``protect``: the photo goes to ``POST /v1/jobs``; the job's events become ``progress``
  messages; the protected file comes back as ``chunk`` messages under 1 MB each, then
  ``result`` with its size and sha256; the daemon's copy is deleted at once.
- When the daemon is down, ``hello``, ``status`` and ``protect`` start it (:mod:`lowkey_native_host.
  launcher`) and protect waits for it (``progress`` phase ``starting``).
- When the browser closes the pipe, every running job is cancelled in the daemon and the host
  exits (status 0).

Logs go to ``native-host.log`` in the daemon's state folder, never to stdout.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import BinaryIO

from lowkey import __version__
from lowkey.private_log import private_log_handler
from lowkey.service import daemon_state_dir
from lowkey_native_host.daemon_client import DAEMON_CODES, DaemonClient, DaemonDown, HostError
from lowkey_native_host.launcher import Launcher
from lowkey_native_host.protocol import (
    BadMessage,
    MessageTooLarge,
    StreamClosed,
    read_body,
    read_header,
    skip,
    write_message,
)

logger = logging.getLogger("lowkey_native_host")

PROTOCOL = 1
LOG_FILE = "native-host.log"
#: Bytes of the protected file per ``chunk`` message (base64 makes it ~683 KiB: under 1 MB).
CHUNK_BYTES = 512 * 1024
#: How long ``protect`` waits for a daemon that is loading its models.
START_TIMEOUT_S = 300.0
#: How long ``protect`` retries while the daemon's queue is full.
BUSY_RETRY_S = 30.0
#: Reports longer than this lose their per-face details (the result message must stay < 1 MB).
MAX_REPORT_BYTES = 256 * 1024
#: A job that does not move is still reported this often (seconds; the daemon's keep-alives
#: come every 15 s).
HEARTBEAT_S = 30.0
#: How long cancelling the running jobs may take when the browser goes away.
CLOSE_TIMEOUT_S = 10.0

REQUEST_TYPES = ("hello", "status", "protect", "cancel", "pause", "resume")


class Host:
    """Answers the extension's requests over one daemon client; ``out`` is the browser's pipe."""

    def __init__(self, out: BinaryIO, client: DaemonClient, launcher: Launcher | None = None
                 ) -> None:
        self.out = out
        self.client = client
        self.launcher = launcher or Launcher()
        self.protecting: dict[str, asyncio.Task] = {}
        self.closing = False
        self._tasks: set[asyncio.Task] = set()

    # -- output -------------------------------------------------------------------------------

    def send(self, message: dict) -> None:
        """Write one message to the browser (nothing once the pipe is closed)."""
        if self.closing:
            return
        try:
            write_message(self.out, message)
        except ValueError as exc:  # over 1 MB: a bug, never a half-written message
            logger.error("%s", exc)
            write_message(self.out, _error(message.get("id"), "internal",
                                           "the host's answer was too large"))
        except OSError as exc:
            logger.info("the browser's pipe is closed (%s)", exc)
            self.closing = True

    # -- dispatch -----------------------------------------------------------------------------

    def dispatch(self, message: dict) -> None:
        """Start handling one request (a task each; replies may interleave)."""
        rid = message.get("id")
        if not isinstance(rid, str) or not 1 <= len(rid) <= 128:
            self.send(_error(None, "bad-message", "every request needs an id: a string of "
                                                  "1 to 128 characters"))
            return
        kind = message.get("type")
        if kind not in REQUEST_TYPES:
            self.send(_error(rid, "bad-message", f"unknown message type {kind!r}; the host "
                                                 f"takes {', '.join(REQUEST_TYPES)}"))
            return
        if kind == "protect" and rid in self.protecting:
            self.send(_error(rid, "bad-message", f"a protect request with id {rid!r} is "
                                                 "already in flight"))
            return
        task = asyncio.ensure_future(self._handle(kind, rid, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if kind == "protect":
            self.protecting[rid] = task
            task.add_done_callback(lambda _t, rid=rid: self.protecting.pop(rid, None))

    async def _handle(self, kind: str, rid: str, message: dict) -> None:
        try:
            await getattr(self, f"on_{kind}")(rid, message)
        except HostError as exc:
            logger.info("%s %s: %s (%s)", kind, rid, exc.code, exc.message)
            self.send(_error(rid, exc.code, exc.message))
        except asyncio.CancelledError:
            if not self.closing:
                self.send(_error(rid, "cancelled", "cancelled"))
            raise
        except Exception:
            logger.exception("%s %s failed", kind, rid)
            self.send(_error(rid, "internal", "the native host failed; its log has the details"))

    # -- the daemon's state -------------------------------------------------------------------

    async def daemon_state(self, start: bool) -> dict:
        """The schema's ``daemon_state``; starts the daemon when it is down and ``start``."""
        try:
            health = await self.client.health()
        except DaemonDown as exc:
            if self.launcher.starting or (start and self.launcher.start()):
                return {"state": "starting", "ready": False, "version": None, "paused": None,
                        "message": "starting the LowKey daemon"}
            return {"state": "down", "ready": False, "version": None, "paused": None,
                    "message": self._down_message(exc)}
        paused = None
        if health.get("ready"):
            try:
                paused = bool((await self.client.status())["paused"])
            except HostError as exc:
                logger.info("status: %s", exc.message)
        return {"state": str(health.get("status")), "ready": bool(health.get("ready")),
                "message": str(health.get("message") or ""), "version": health.get("version"),
                "paused": paused}

    def _down_message(self, exc: HostError) -> str:
        code = self.launcher.exit_code()
        if code is not None:
            return (f"the LowKey daemon stopped as it started (exit code {code}); its log is in "
                    f"{daemon_state_dir()}")
        return exc.message

    async def ensure_ready(self, rid: str | None = None) -> None:
        """Wait until the daemon is ready, starting it when it is down; ``progress`` phase
        ``starting`` for ``rid`` while it loads. Raises HostError (daemon-down, starting)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        announced = False
        while True:
            try:
                health = await self.client.health()
            except DaemonDown as exc:
                if not (self.launcher.starting or self.launcher.start()):
                    raise DaemonDown(self._down_message(exc)) from None
                health = None
            if health is not None:
                if health.get("ready"):
                    return
                if health.get("status") != "loading":
                    raise HostError("daemon-down", f"the LowKey daemon cannot protect photos: "
                                                   f"{health.get('message')}")
            if time.monotonic() > deadline:
                raise HostError("starting", "the LowKey daemon is still starting; try again "
                                            "in a moment")
            if rid is not None and not announced:
                self.send({"id": rid, "type": "progress", "phase": "starting", "percent": 0})
                announced = True
            await asyncio.sleep(0.25)

    # -- requests -----------------------------------------------------------------------------

    async def on_hello(self, rid: str, message: dict) -> None:
        logger.info("hello from %s", message.get("extension"))
        self.send({"id": rid, "type": "hello", "version": __version__, "protocol": PROTOCOL,
                   "daemon": await self.daemon_state(start=True)})

    async def on_status(self, rid: str, message: dict) -> None:
        state = await self.daemon_state(start=True)
        status = None
        if state["state"] not in ("down", "starting"):
            try:
                status = await self.client.status()
            except HostError as exc:
                logger.info("status: %s", exc.message)
        self.send({"id": rid, "type": "status", "daemon": state, "status": status})

    async def on_pause(self, rid: str, message: dict) -> None:
        await self.client.pause()
        self.send({"id": rid, "type": "pause", "paused": True})

    async def on_resume(self, rid: str, message: dict) -> None:
        await self.client.resume()
        self.send({"id": rid, "type": "resume", "paused": False})

    async def on_cancel(self, rid: str, message: dict) -> None:
        target = message.get("target")
        task = self.protecting.get(target) if isinstance(target, str) else None
        if not isinstance(target, str):
            raise HostError("bad-message", "cancel needs target: the id of a protect request")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.send({"id": rid, "type": "cancel", "target": target, "cancelled": task is not None})

    async def on_protect(self, rid: str, message: dict) -> None:
        name, mime, data = _protect_fields(message)
        await self.ensure_ready(rid)
        job = await self._submit(data, mime, message.get("preset"), message.get("strength"))
        job_id = str(job["id"])
        logger.info("protect %s: %s (%d bytes) is daemon job %s", rid, mime, len(data), job_id)
        try:
            final = await self._follow(rid, job_id)
            if final["status"] != "done":
                error = final.get("error") or {}
                code = {"cancelled": "cancelled", "timed out": "timeout"}.get(final["status"])
                raise HostError(code or _daemon_code(error.get("code")),
                                str(error.get("message") or final["status"]))
            result = await self.client.result(job_id)
        finally:
            # Whatever happened (done, failed, cancelled, the stream broke): cancel the job if it
            # still runs, delete its result if it finished. Nothing stays in the daemon.
            await asyncio.shield(self.client.cancel(job_id))
        self._send_file(rid, name, result.media_type, result.data, result.report,
                        result.measured)

    async def _submit(self, data: bytes, mime: str, preset: object, strength: object) -> dict:
        """``POST /v1/jobs``, retried while the daemon is busy. A cancel while a POST is in
        flight waits for it and cancels the job it made."""
        if preset is not None and not isinstance(preset, str):
            raise HostError("bad-message", "preset must be a string")
        if strength is not None and (isinstance(strength, bool) or not isinstance(strength, int)):
            raise HostError("bad-message", "strength must be an integer")
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            post = asyncio.ensure_future(self.client.submit(data, mime, preset, strength))
            try:
                return await asyncio.shield(post)
            except asyncio.CancelledError:  # the job may exist already: cancel it too
                done, _ = await asyncio.wait([post], timeout=CLOSE_TIMEOUT_S)
                if post in done and not post.cancelled() and post.exception() is None:
                    await self.client.cancel(str(post.result()["id"]))
                raise
            except HostError as exc:
                if exc.code != "busy" or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(1.0)

    async def _follow(self, rid: str, job_id: str) -> dict:
        """Relay the job's progress until it ends; its final state. A job that does not move
        (queued behind others) is still reported every :data:`HEARTBEAT_S` (on the daemon's
        keep-alives), so the extension can tell a slow queue from a dead host."""
        latest, last_sent, sent_at = None, None, time.monotonic()
        async for event, job in self.client.events(job_id):
            if event == "end":
                return job
            latest = job if job is not None else latest
            if latest is None:
                continue
            update = (latest.get("phase") or "queued",
                      round(float(latest.get("percent") or 0.0), 1))
            if update == last_sent and time.monotonic() - sent_at < HEARTBEAT_S:
                continue
            last_sent, sent_at = update, time.monotonic()
            self.send({"id": rid, "type": "progress", "phase": update[0], "percent": update[1],
                       "step": latest.get("step"), "steps": latest.get("steps")})
        raise HostError("internal", "the daemon's progress stream ended without the job's end")

    def _send_file(self, rid: str, name: str, mime: str, data: bytes, report: dict,
                   measured: bool) -> None:
        count = max(1, -(-len(data) // CHUNK_BYTES))
        for index in range(count):
            part = data[index * CHUNK_BYTES:(index + 1) * CHUNK_BYTES]
            self.send({"id": rid, "type": "chunk", "index": index, "count": count,
                       "data": base64.b64encode(part).decode("ascii")})
        if len(json.dumps(report)) > MAX_REPORT_BYTES:
            report = {k: v for k, v in report.items() if k != "faces"} | {
                "faces_omitted": len(report.get("faces", []))}
        self.send({"id": rid, "type": "result", "name": name, "mime": mime, "size": len(data),
                   "sha256": hashlib.sha256(data).hexdigest(), "chunks": count,
                   "measured": measured, "report": report})

    # -- closing ------------------------------------------------------------------------------

    async def close(self) -> None:
        """The browser is gone: cancel every request (and its daemon job), quietly."""
        self.closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)


def _protect_fields(message: dict) -> tuple[str, str, bytes]:
    name, mime, data = message.get("name"), message.get("mime"), message.get("data")
    if not isinstance(name, str) or not name or not isinstance(mime, str) \
            or not isinstance(data, str):
        raise HostError("bad-message", "protect needs name, mime and data (base64) as strings")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HostError("bad-message", "data is not base64") from None
    if not raw:
        raise HostError("bad-image", f"{name} is empty")
    return name, mime, raw


def _daemon_code(code: object) -> str:
    return DAEMON_CODES.get(str(code), "internal")


def _error(rid: object, code: str, message: str) -> dict:
    return {"id": rid if isinstance(rid, str) and 1 <= len(rid) <= 128 else None,
            "type": "error", "code": code, "message": message}


# -- the program --------------------------------------------------------------------------------

def _reader(stdin: BinaryIO, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue) -> None:
    """Read messages from the browser into ``inbox`` until the pipe closes (a thread).

    A frame's content never ends the reader: whatever one body holds is a message or a
    ``bad`` item (:func:`~lowkey_native_host.protocol.parse_body`). Whatever ends the reader (the
    pipe closing, a read error, a bug), its last item is ``closed``, so :func:`serve` ends."""

    def put(item: tuple) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    ending: BaseException | None = None
    try:
        while True:
            try:
                length = read_header(stdin)
            except MessageTooLarge as exc:
                put(("too-large", str(exc)))
                skip(stdin, exc.length)
                continue
            try:
                put(("message", read_body(stdin, length)))
            except BadMessage as exc:
                put(("bad", str(exc)))
    except (StreamClosed, OSError) as exc:
        ending = exc
    except BaseException as exc:  # a bug: log it, and still let the host end
        logger.exception("the message reader failed")
        ending = exc
    finally:
        put(("closed", ending or StreamClosed()))


async def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Answer the browser until it closes the pipe; the exit status."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    threading.Thread(target=_reader, args=(stdin, loop, inbox), daemon=True,
                     name="native-messaging-reader").start()
    async with DaemonClient() as client:
        host = Host(stdout, client)
        while True:
            kind, value = await inbox.get()
            if kind == "message":
                host.dispatch(value)
            elif kind == "too-large":
                host.send(_error(None, "too-large", value))
            elif kind == "bad":
                host.send(_error(None, "bad-message", value))
            else:
                if getattr(value, "partial", False):
                    logger.warning("%s", value)
                else:
                    logger.info("the browser closed the pipe")
                break
        await host.close()
    return 0


def _setup_logging() -> None:
    folder = daemon_state_dir()
    handlers: list[logging.Handler]
    try:  # 0600 in a 0700 folder, like the daemon's
        handlers = [private_log_handler(folder / LOG_FILE, 1 << 20, 2)]
    except OSError:
        handlers = [logging.NullHandler()]  # never stdout: it is the protocol
    handlers[0].setFormatter(logging.Formatter(
        f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(logging.WARNING)
    logging.getLogger("lowkey_native_host").setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lowkey-native-host`` (the browser passes the caller's origin or the
    manifest path and extension id as arguments: logged, not needed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if sys.platform == "win32":  # the pipes must not translate newlines
        import msvcrt

        msvcrt.setmode(sys.stdin.fileno(), os.O_BINARY)
        msvcrt.setmode(sys.stdout.fileno(), os.O_BINARY)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must never corrupt the protocol
    _setup_logging()
    logger.info("lowkey-native-host %s started by %s", __version__, " ".join(argv) or "?")
    try:
        return asyncio.run(serve(stdin, stdout))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
