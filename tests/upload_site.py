"""A local site that behaves like upload sites do (no tests here): it serves the pages of
``tests/browser/pages/`` and records every file posted to ``/upload/<page>``, whatever way the page
sent it (multipart form or fetch/XHR ``FormData``, or JSON with a data URL).

It answers on two origins: ``origin`` (127.0.0.1, the test build's enabled site) and
``other_origin`` (127.0.0.2, the same port: another origin, on no list of LowKey's), which serves
the upload frame a page of the first one embeds (``frame.html``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

PAGES = Path(__file__).resolve().parent / "browser" / "pages"
#: where the site listens: the enabled site, then another origin (all of 127/8 is loopback)
HOSTS = ("127.0.0.1", "127.0.0.2")


def _port_free_on_all(hosts: tuple[str, ...]) -> int:
    """A port free on the first host and, as far as can be told, on the others."""
    for _ in range(20):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            try:
                for host in hosts[1:]:
                    with socket.socket() as other:
                        other.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no port free on all of {hosts}")


@dataclass(frozen=True)
class Upload:
    """One file as the site received it."""

    page: str
    name: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class UploadSite:
    """The site in a thread of its own on 127.0.0.1 (use as a context manager)."""

    port: int = 0
    uploads: list[Upload] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        if not self.port:
            self.port = _port_free_on_all(HOSTS)

    @property
    def origin(self) -> str:
        return f"http://{HOSTS[0]}:{self.port}"

    @property
    def other_origin(self) -> str:
        """Another origin of the same site (an upload widget's own domain, for LowKey)."""
        return f"http://{HOSTS[1]}:{self.port}"

    def received(self, page: str | None = None) -> list[Upload]:
        with self._lock:
            return [u for u in self.uploads if page is None or u.page == page]

    def clear(self) -> None:
        with self._lock:
            self.uploads.clear()

    async def _upload(self, request: web.Request) -> web.Response:
        page = request.match_info["page"]
        got: list[Upload] = []
        if request.content_type == "application/json":
            body = await request.json()
            header, _, payload = body["data"].partition(",")
            content_type = header.removeprefix("data:").split(";")[0]
            got.append(Upload(page, body["name"], content_type, base64.b64decode(payload)))
        else:
            form = await request.post()
            for value in form.values():
                if isinstance(value, web.FileField):
                    got.append(Upload(page, value.filename, value.content_type,
                                      value.file.read()))
        with self._lock:
            self.uploads.extend(got)
        return web.Response(text=f"received {len(got)}")

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/upload/{page}", self._upload)
        app.router.add_static("/", PAGES)
        return app

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self._app(), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        for host in HOSTS:
            self._loop.run_until_complete(web.TCPSite(self._runner, host, self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> UploadSite:
        self._thread = threading.Thread(target=self._serve, daemon=True, name="upload-site")
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the upload site did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
