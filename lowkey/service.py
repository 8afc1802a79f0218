"""What the local daemon and its clients share: where it listens, its settings file, its folders,
the header a client names itself with, and the token store.

The daemon (``lowkey_daemon``) and its clients (the native host, ``lowkey daemon status``,
benchmarks) find each other only through this module, so neither imports the other. It imports
nothing heavy (no torch, no models): the native host starts in a blink.

- Port: ``explicit`` (``--port``), else ``LOWKEY_DAEMON_PORT``, else ``port`` in ``daemon.toml``,
  else :data:`DEFAULT_PORT`; the address is always loopback (:data:`DEFAULT_HOST`).
- ``daemon.toml`` (:func:`load_settings`) in LowKey's config folder (:func:`lowkey.paths.
  config_dir`, ``LOWKEY_CONFIG_DIR``): how a daemon started with no options runs. Example::

      # ~/.config/lowkey/daemon.toml  (LOWKEY_CONFIG_DIR/daemon.toml when that is set)
      preset = "default"         # what a request that names no preset gets: "default"
                                 # protects (measured, docs/results.md); "subtle" looks
                                 # unchanged and does NOT protect
      devices = ["cuda:0"]       # one worker each; default: cuda when present, else cpu
      models = ["sface"]         # attack these under every preset instead of its own ensemble
      port = 7787                # LOWKEY_DAEMON_PORT wins over this
      queue_size = 8
      job_timeout = 900
      warm_up = true
      batch = 8                  # jobs attacked together; default: 8 on a GPU, 1 on a CPU

  Unknown keys and values of the wrong type are errors that name the file and the key: a typo
  must not be ignored silently.
- Folders: config (the token file when no keyring backend exists) in LowKey's config folder;
  state (logs) in the platform's state folder, or ``LOWKEY_CACHE_DIR/daemon`` when that is set.
- The bearer token (:class:`TokenStore`): generated on first start, kept with ``keyring``, or in
  a 0600 file in the config folder where no keyring backend exists (headless Linux). Every read
  goes to the store (the file's modification time, or the keyring at most every
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
import tomllib
from pathlib import Path

import platformdirs

from lowkey.paths import APP_NAME, config_dir

logger = logging.getLogger(__name__)

DEFAULT_PORT = 7787
DEFAULT_HOST = "127.0.0.1"
PORT_ENV = "LOWKEY_DAEMON_PORT"

#: The header a local client may send to say what it is.
CLIENT_HEADER = "X-LowKey-Client"
#: The client kinds the daemon gives a rate limit of their own; every other client shares one.
NATIVE_HOST_CLIENT = "native-host"
CLI_CLIENT = "cli"
CLIENT_KINDS = frozenset({NATIVE_HOST_CLIENT, CLI_CLIENT})

SETTINGS_FILE = "daemon.toml"
#: Each key the settings file may hold, and the type its value must have.
SETTINGS_TYPES: dict[str, type] = {"port": int, "preset": str, "devices": list, "models": list,
                                   "queue_size": int, "job_timeout": float, "warm_up": bool,
                                   "batch": int}

KEYRING_SERVICE = "lowkey-daemon"
KEYRING_USER = "token"
TOKEN_FILE = "daemon-token"
KEYRING_RECHECK_S = 2.0


def daemon_config_dir() -> Path:
    """Where the daemon's configuration lives (``daemon.toml``; the token file, when there is no
    keyring)."""
    return config_dir()


def daemon_state_dir() -> Path:
    """Where the daemon's and the native host's state lives (their logs)."""
    override = os.environ.get("LOWKEY_CACHE_DIR")
    if override:
        return Path(override) / "daemon"
    return Path(platformdirs.user_state_dir(APP_NAME))


def settings_path(folder: Path) -> Path:
    """Where the settings file lives in ``folder``."""
    return Path(folder) / SETTINGS_FILE


def load_settings(folder: Path) -> dict[str, object]:
    """The settings in ``folder/daemon.toml`` ({} when there is no file).

    Raises ValueError naming the file for a file that is not TOML, an unknown key or a value of
    the wrong type. ``devices`` and ``models`` are lists of strings; ``job_timeout`` may be
    written as an integer.
    """
    path = settings_path(folder)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    settings: dict[str, object] = {}
    for key, value in raw.items():
        kind = SETTINGS_TYPES.get(key)
        if kind is None:
            raise ValueError(f"{path}: unknown setting {key!r}; the settings are "
                             f"{', '.join(SETTINGS_TYPES)}")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if ok and kind is list:
            ok = bool(value) and all(isinstance(v, str) and v.strip() for v in value)
        if not ok:
            what = "a non-empty list of strings" if kind is list else kind.__name__
            raise ValueError(f"{path}: {key} must be {what}, not {value!r}")
        settings[key] = value
    return settings


def port_from_env(explicit: int | None = None) -> int:
    """``explicit`` when given, else ``LOWKEY_DAEMON_PORT``, else the settings file's ``port``,
    else 7787. The daemon, its CLI and the native host all find the daemon this way."""
    if explicit is not None:
        port = explicit
    else:
        text = os.environ.get(PORT_ENV, "").strip()
        try:
            port = int(text) if text else int(load_settings(daemon_config_dir()).get(
                "port", DEFAULT_PORT))
        except ValueError as exc:
            if not text:
                raise
            raise ValueError(f"{PORT_ENV}={text!r} is not a port number") from exc
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not in 1..65535")
    return port


def new_token() -> str:
    """32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


class TokenStore:
    """Where the daemon's token lives: ``keyring`` when ``use_keyring`` and a real backend
    exists, else ``folder/daemon-token`` (mode 0600)."""

    def __init__(self, folder: Path, use_keyring: bool = True) -> None:
        self.path = Path(folder) / TOKEN_FILE
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
