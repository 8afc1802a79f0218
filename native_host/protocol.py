"""The browser's native-messaging framing: a 4-byte length in the machine's byte order, then that
many bytes of UTF-8 JSON (one object).

Chromium and Firefox send the host messages of up to 64 MiB and accept at most 1 MB back; the
host refuses a longer incoming message *before* reading it (:class:`MessageTooLarge`) and skips
its bytes, so the stream stays in step, and never writes one over :data:`MAX_OUTGOING`.
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO

HEADER = struct.Struct("=I")  # native byte order, as the browsers write it
#: The most the host reads in one message: the browsers' own limit (64 MiB), which holds a
#: photo of about 48 MB once base64-encoded (the daemon takes 50 MB at most).
MAX_INCOMING = 64 * 1024 * 1024
#: The most the browser accepts from a host in one message (Chromium: 1 MB).
MAX_OUTGOING = 1024 * 1024
_SKIP_BLOCK = 1024 * 1024


class StreamClosed(Exception):
    """The browser closed the pipe; ``partial`` when it did so in the middle of a message."""

    def __init__(self, partial: bool = False) -> None:
        super().__init__("the browser closed the pipe" + (" mid-message" if partial else ""))
        self.partial = partial


class MessageTooLarge(Exception):
    """An incoming message declared ``length`` bytes, over the host's cap; nothing of it was
    read yet (call :func:`skip` to stay in step)."""

    def __init__(self, length: int, cap: int) -> None:
        super().__init__(f"the message is {length} bytes, over the host's limit of {cap}")
        self.length = length
        self.cap = cap


class BadMessage(Exception):
    """A whole message was read but it is not a UTF-8 JSON object."""


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes; the stream ending first is :class:`StreamClosed` (partial: we are inside a
    message)."""
    parts, left = [], n
    while left:
        part = stream.read(left)
        if not part:
            raise StreamClosed(partial=True)
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_header(stream: BinaryIO, cap: int = MAX_INCOMING) -> int:
    """The next message's length. Raises :class:`StreamClosed` at the end of the stream (partial
    when it ends inside the header) and :class:`MessageTooLarge` over ``cap``."""
    header = stream.read(HEADER.size)
    if not header:
        raise StreamClosed()
    if len(header) < HEADER.size:
        header += _read_exactly(stream, HEADER.size - len(header))
    (length,) = HEADER.unpack(header)
    if length > cap:
        raise MessageTooLarge(length, cap)
    return length


def read_body(stream: BinaryIO, length: int) -> dict:
    """The message body of ``length`` bytes as a JSON object. Raises :class:`StreamClosed`
    (partial) when the stream ends first and :class:`BadMessage` when it is not a JSON object
    (see :func:`parse_body`)."""
    return parse_body(_read_exactly(stream, length) if length else b"")


def parse_body(body: bytes) -> dict:
    """A whole message's bytes as a JSON object; :class:`BadMessage` for anything else: not
    UTF-8, not JSON, nested too deeply for the parser (``RecursionError``), not an object.
    Whatever the parser raises on hostile input is a bad message, never the reader's end."""
    try:
        message = json.loads(body.decode("utf-8"))
    except RecursionError:  # e.g. a thousand nested arrays: the parser gives up
        raise BadMessage("the message is nested too deeply") from None
    except Exception as exc:  # UnicodeDecodeError, JSONDecodeError, ...
        raise BadMessage(f"the message is not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise BadMessage("the message is not a JSON object")
    return message


def read_message(stream: BinaryIO, cap: int = MAX_INCOMING) -> dict:
    """One whole message (see :func:`read_header` and :func:`read_body` for what it raises)."""
    return read_body(stream, read_header(stream, cap))


def skip(stream: BinaryIO, length: int) -> None:
    """Read and drop ``length`` bytes, a block at a time (never held in memory)."""
    left = length
    while left:
        part = stream.read(min(left, _SKIP_BLOCK))
        if not part:
            raise StreamClosed(partial=True)
        left -= len(part)


def encode_message(message: dict) -> bytes:
    """``message`` framed for the browser. Raises ValueError over :data:`MAX_OUTGOING` (the
    browser would drop the connection): callers split big payloads into chunks."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    if len(body) > MAX_OUTGOING:
        raise ValueError(f"a {message.get('type')} message of {len(body)} bytes is over the "
                         f"browser's limit of {MAX_OUTGOING}")
    return HEADER.pack(len(body)) + body


def write_message(stream: BinaryIO, message: dict) -> None:
    """Frame ``message`` and write it whole, then flush."""
    stream.write(encode_message(message))
    stream.flush()
