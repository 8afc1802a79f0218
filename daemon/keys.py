"""Typed application state (``web.AppKey``) shared by the app, its middlewares and handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    pass

CONFIG = web.AppKey("config", "DaemonConfig")
QUEUE = web.AppKey("queue", "JobQueue")
TOKENS = web.AppKey("tokens", "TokenStore")
LIMITER = web.AppKey("limiter", "RateLimiter")
CONNECTIONS = web.AppKey("connections", "ConnectionGuard")
OPENAPI = web.AppKey("openapi", bytes)
STOP = web.AppKey("stop", Callable[[], None])
