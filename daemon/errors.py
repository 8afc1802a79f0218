"""The daemon's errors: every one is JSON ``{"error": {"code": ..., "message": ...}}`` with a
stable code (:data:`CODES`), never a traceback or a path."""

from __future__ import annotations

import json

from aiohttp import web

#: Every error code the API answers with, and its HTTP status.
CODES: dict[str, int] = {
    "bad_request": 400,         # a query parameter or body that makes no sense
    "unauthorized": 401,        # missing or wrong bearer token
    "forbidden_host": 403,      # Host is not a loopback name with the daemon's port
    "origin_refused": 403,      # the request came from a browser (Origin / Sec-Fetch-Site)
    "not_found": 404,           # no such route
    "job_not_found": 404,       # unknown job id, or its result was deleted
    "method_not_allowed": 405,
    "paused": 409,              # protection is paused machine-wide (POST /v1/resume)
    "job_not_finished": 409,    # the result of a job that is still queued or running
    "cancelled": 409,           # the result of a cancelled job
    "timed_out": 504,           # the job ran past its deadline
    "body_too_large": 413,
    "too_many_pixels": 413,     # decompression bomb guard
    "unsupported_media_type": 415,
    "bad_image": 422,           # not an image LowKey reads (corrupt, truncated, animated...)
    "no_face": 422,             # no face found: nothing was protected
    "rate_limited": 429,
    "internal": 500,            # a bug; the log has the rest
    "loading": 503,             # models are still loading
    "models_missing": 503,      # run `lowkey models fetch`
    "weights": 503,             # weights failed their check
    "out_of_memory": 503,       # the device ran out of memory for this photo
    "queue_full": 503,
    "too_many_connections": 503,  # every open connection has a request in progress
    "shutting_down": 503,
}


class ApiError(Exception):
    """An error answer: ``code`` (a key of :data:`CODES`), a message, extra headers."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or CODES[code]
        self.headers = headers or {}


def error_response(code: str, message: str, status: int | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The JSON error envelope as a response."""
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status or CODES[code], text=body,
                        content_type="application/json", headers=headers)


#: aiohttp's own HTTP errors (routing, body size) -> our codes.
HTTP_STATUS_CODES: dict[int, str] = {400: "bad_request", 404: "not_found",
                                     405: "method_not_allowed", 413: "body_too_large",
                                     415: "unsupported_media_type"}
