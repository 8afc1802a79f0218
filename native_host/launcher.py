"""Starting the daemon when the browser needs it and it is not running.

The host runs ``python -m lowkey.cli daemon`` (the ``lowkey daemon`` command: the host never
imports or names the daemon's package) with the same interpreter, detached: its own session
(POSIX) or a detached process group without a console (Windows), with stdin, stdout and stderr
closed, so it outlives the browser and can never write into the protocol pipe. The daemon takes
its options from ``daemon.toml`` (:func:`lowkey.service.load_settings`) and its port from the
environment the browser passed on. ``LOWKEY_NO_AUTOSTART=1`` turns this off.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

logger = logging.getLogger(__name__)

NO_AUTOSTART_ENV = "LOWKEY_NO_AUTOSTART"


def autostart_allowed() -> bool:
    """False when ``LOWKEY_NO_AUTOSTART`` is set to a true value."""
    return os.environ.get(NO_AUTOSTART_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


class Launcher:
    """Starts the daemon at most once per :data:`RETRY_S` and remembers that it did."""

    RETRY_S = 60.0

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.started_at: float | None = None

    @property
    def starting(self) -> bool:
        """True when this host started a daemon that is still alive (it may still be loading)."""
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        """The exit code of a daemon this host started that has already stopped (else None)."""
        return None if self.process is None else self.process.poll()

    def start(self) -> bool:
        """Start ``python -m lowkey.cli daemon`` detached unless one was started recently or
        autostart is off. True when a daemon process is (now) starting."""
        if not autostart_allowed():
            return False
        if self.starting:
            return True
        now = time.monotonic()
        if self.started_at is not None and now - self.started_at < self.RETRY_S:
            return False  # it started and died: do not start it again in a loop
        command = [sys.executable, "-m", "lowkey.cli", "daemon"]
        kwargs: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                        "stderr": subprocess.DEVNULL, "close_fds": True}
        if sys.platform == "win32":
            kwargs["creationflags"] = (subprocess.DETACHED_PROCESS
                                       | subprocess.CREATE_NEW_PROCESS_GROUP
                                       | subprocess.CREATE_NO_WINDOW)
        else:
            kwargs["start_new_session"] = True
        logger.info("the daemon is not running: starting %s", " ".join(command))
        try:
            self.process = subprocess.Popen(command, **kwargs)
        except OSError as exc:
            logger.error("could not start the daemon: %s", exc)
            return False
        self.started_at = now
        return True
