"""The host's side of the daemon's HTTP API (``daemon/openapi.json``): an ordinary local client.

The address and the token are found exactly as the daemon keeps them (:func:`lowkey.service.
port_from_env`, :class:`lowkey.service.TokenStore`: the host never imports the daemon), read again
for every call so a rotated token or a restarted daemon is picked up. Daemon errors become
:class:`HostError` with the host's stable codes (:data:`DAEMON_CODES`). Nothing here imports
torch or the models.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from lowkey.service import (
    CLIENT_HEADER,
    DEFAULT_HOST,
    NATIVE_HOST_CLIENT,
    TokenStore,
    daemon_config_dir,
    port_from_env,
)

logger = logging.getLogger(__name__)

#: What the host tells the daemon it is (``X-LowKey-Client``): its rate limit is its own.
CLIENT_KIND = NATIVE_HOST_CLIENT

#: The types the daemon accepts as Content-Type; anything else goes as octet-stream (the daemon
#: reads the real type from the bytes).
DAEMON_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"})

#: The daemon's error codes -> the host's (native_host/messages.schema.json).
DAEMON_CODES: dict[str, str] = {
    "bad_image": "bad-image", "unsupported_media_type": "bad-image",
    "no_face": "no-face",
    "body_too_large": "too-large", "too_many_pixels": "too-large", "out_of_memory": "too-large",
    "timed_out": "timeout", "cancelled": "cancelled", "paused": "paused",
    "loading": "starting", "models_missing": "daemon-down", "weights": "daemon-down",
    "shutting_down": "daemon-down", "queue_full": "busy", "rate_limited": "busy",
    "too_many_connections": "busy",
    "bad_request": "bad-message",
}


class HostError(Exception):
    """A request's failure as the extension sees it: a stable ``code`` and a ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DaemonDown(HostError):
    """Nothing answers on the daemon's port."""

    def __init__(self, message: str = "the LowKey daemon is not running") -> None:
        super().__init__("daemon-down", message)


@dataclass(frozen=True)
class Result:
    """A finished job's protected file, its type and the daemon's report."""

    data: bytes
    media_type: str
    report: dict
    measured: bool


class DaemonClient:
    """One session of HTTP calls to the daemon on 127.0.0.1 (use as an async context manager)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port_from_env(port)
        self.base = f"http://{DEFAULT_HOST}:{self.port}"
        self._tokens = TokenStore(daemon_config_dir())
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DaemonClient:
        # No cookies, no proxies from the environment (a proxy must never see the token). A
        # fresh loopback connection per request (cheap): none sits idle in a pool, where the
        # daemon may close it (idle timeout, or room made for a newcomer) as a request goes out.
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            connector=aiohttp.TCPConnector(force_close=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        """The token, and the client kind the daemon keys this host's rate limit on."""
        token = self._tokens.get(create=False)
        headers = {CLIENT_HEADER: CLIENT_KIND}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(self, method: str, path: str, *, timeout: float = 30.0,
                       **kwargs: object) -> aiohttp.ClientResponse:
        assert self._session is not None, "use DaemonClient as an async context manager"
        headers = self._headers() | dict(kwargs.pop("headers", {}))
        try:
            response = await self._session.request(
                method, self.base + path, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout), **kwargs)
        except (aiohttp.ClientConnectionError, OSError) as exc:
            logger.debug("%s %s: %r", method, path, exc)
            raise DaemonDown(f"the LowKey daemon is not running (nothing answers on "
                             f"{DEFAULT_HOST}:{self.port})") from None
        if response.status >= 400:
            async with response:
                raise await _error(response)
        return response

    async def _json(self, method: str, path: str, **kwargs: object) -> dict:
        async with await self._request(method, path, **kwargs) as response:
            return await response.json()

    async def health(self) -> dict:
        """``GET /v1/health``: status (loading, ready, ...), ready, message, version."""
        return await self._json("GET", "/v1/health", timeout=5.0)

    async def status(self) -> dict:
        """``GET /v1/status``."""
        return await self._json("GET", "/v1/status", timeout=10.0)

    async def pause(self) -> dict:
        return await self._json("POST", "/v1/pause", timeout=10.0)

    async def resume(self) -> dict:
        return await self._json("POST", "/v1/resume", timeout=10.0)

    async def submit(self, data: bytes, mime: str, preset: str | None = None,
                     strength: int | None = None) -> dict:
        """``POST /v1/jobs``: the job as queued (``id``, ``status``, ``phase``, ``percent``)."""
        params = {k: str(v) for k, v in (("preset", preset), ("strength", strength))
                  if v is not None}
        content_type = mime if mime in DAEMON_TYPES else "application/octet-stream"
        return await self._json("POST", "/v1/jobs", params=params, data=data, timeout=120.0,
                                headers={"Content-Type": content_type})

    async def events(self, job_id: str) -> AsyncIterator[tuple[str, dict | None]]:
        """The job's server-sent events, ``(event, job)``, until its ``end`` event; the
        daemon's keep-alive comments as ``("keep-alive", None)``."""
        async with await self._request("GET", f"/v1/jobs/{job_id}/events",
                                       timeout=24 * 3600.0) as response:
            event, data = "message", []
            async for raw in response.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data))
                        if event == "end":
                            return
                    event, data = "message", []
                elif line.startswith(":"):
                    yield "keep-alive", None
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        raise HostError("internal", "the daemon closed the progress stream early")

    async def result(self, job_id: str) -> Result:
        """``GET /v1/jobs/{id}/result?report=body``: the protected file and its report."""
        body = await self._json("GET", f"/v1/jobs/{job_id}/result",
                                params={"report": "body"}, timeout=120.0)
        return Result(base64.b64decode(body["image"]), body["media_type"], body["report"],
                      bool(body.get("measured")))

    async def cancel(self, job_id: str) -> None:
        """``DELETE /v1/jobs/{id}``: cancel it, or delete a finished job's result."""
        try:
            await self._json("DELETE", f"/v1/jobs/{job_id}", timeout=10.0)
        except HostError as exc:
            logger.info("cancelling job %s: %s", job_id, exc.message)


async def _error(response: aiohttp.ClientResponse) -> HostError:
    """The host's error for a daemon error answer."""
    try:
        error = (await response.json())["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        return HostError("internal", f"the daemon answered HTTP {response.status}")
    if code == "unauthorized":
        return HostError("internal", "the daemon refused the host's token (run the host as the "
                                     "user the daemon runs as)")
    return HostError(DAEMON_CODES.get(code, "internal"), message)
