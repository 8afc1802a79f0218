"""The daemon's bearer token: generated on first start, kept with ``keyring``, or in a 0600 file
in the config folder where no keyring backend exists (headless Linux).

Every read goes to the store (the file's modification time, or the keyring at most every
:data:`KEYRING_RECHECK_S` seconds), so ``lowkey daemon token --rotate`` takes effect in a
running daemon without a restart. Tokens are compared with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

KEYRING_SERVICE = "lowkey-daemon"
KEYRING_USER = "token"
TOKEN_FILE = "daemon-token"
KEYRING_RECHECK_S = 2.0


def new_token() -> str:
    """32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


class TokenStore:
    """Where the token lives: ``keyring`` when ``use_keyring`` and a real backend exists, else
    ``config_dir/daemon-token`` (mode 0600)."""

    def __init__(self, config_dir: Path, use_keyring: bool = True) -> None:
        self.path = Path(config_dir) / TOKEN_FILE
        self._keyring = _keyring() if use_keyring else None
        self._lock = threading.Lock()
        self._cached: str | None = None
        self._stamp: object = None

    @property
    def where(self) -> str:
        """Where the token is kept, for people (never the token itself)."""
        return "the system keyring" if self._keyring is not None else str(self.path)

    def get(self, create: bool = True) -> str | None:
        """The current token (generated and stored now if there is none and ``create``)."""
        with self._lock:
            token = self._read()
            if token is None and create:
                token = new_token()
                self._write(token)
                logger.info("generated the daemon's token (kept in %s)", self.where)
            return token

    def rotate(self) -> str:
        """Replace the token with a new one and return it."""
        with self._lock:
            token = new_token()
            self._write(token)
            logger.info("rotated the daemon's token (kept in %s)", self.where)
            return token

    def check(self, offered: str) -> bool:
        """True when ``offered`` is the current token (constant-time comparison)."""
        current = self.get(create=False)
        if not current:
            return False
        return hmac.compare_digest(offered.encode("utf-8", "replace"), current.encode())

    def _read(self) -> str | None:
        if self._keyring is not None:
            now = time.monotonic()
            if self._stamp is None or now - float(self._stamp) > KEYRING_RECHECK_S:
                self._cached = self._keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or None
                self._stamp = now
            return self._cached
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._cached = self._stamp = None
            return None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            if stat.st_mode & 0o077:
                logger.warning("%s is readable by others: tightening it to 0600", self.path)
                os.chmod(self.path, 0o600)
            self._cached = self.path.read_text().strip() or None
            self._stamp = stamp
        return self._cached

    def _write(self, token: str) -> None:
        if self._keyring is not None:
            self._keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token)
            self._cached, self._stamp = token, time.monotonic()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._stamp = None


def _keyring() -> object | None:
    """The keyring backend when a usable one exists, else None."""
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
            return None
        backend.get_password(KEYRING_SERVICE, KEYRING_USER)  # may raise when locked/unusable
        return backend
    except Exception as exc:  # no backend, D-Bus absent, locked, ...
        logger.info("no usable keyring (%s): the token is kept in a 0600 file", exc)
        return None
