"""Writing files safely: complete or absent, never half-written, never clobbered by accident."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(dest: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``dest``, then move it into place in one step.

    With ``overwrite=False`` an existing ``dest`` is never replaced, even one that appears while
    writing (the file is hard-linked into place): :class:`FileExistsError` is raised instead.
    The folder is created if needed; the umask applies to the new file as to any other.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, dest)
            return
        try:
            os.link(tmp, dest)  # fails if dest exists: never replaces a file
        except FileExistsError:
            raise FileExistsError(f"{dest} already exists") from None
        except OSError:  # a file system without hard links
            if dest.exists():
                raise FileExistsError(f"{dest} already exists") from None
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
