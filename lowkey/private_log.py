"""Log files only their owner can read: 0600 files in a 0700 folder, like the token.

A log says when photos were protected and what failed; another local user has no business
reading it. :class:`PrivateRotatingFileHandler` creates the file (and each file it rotates to)
0600, and tightens an existing one; :func:`private_log_handler` also makes the folder 0700.
Used by the daemon and the native host (both write to :func:`lowkey.service.daemon_state_dir`).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
FOLDER_MODE = 0o700


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A :class:`~logging.handlers.RotatingFileHandler` whose files are 0600, whatever the
    umask."""

    def _open(self) -> IO[str]:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            os.chmod(self.baseFilename, FILE_MODE)  # a file made before, by an older version
        except OSError:
            pass
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def private_folder(folder: Path) -> Path:
    """Make ``folder`` (and its parents) and restrict it to its owner (0700)."""
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    os.chmod(folder, FOLDER_MODE)
    return folder


def private_log_handler(path: Path, max_bytes: int, backups: int) -> PrivateRotatingFileHandler:
    """A rotating log at ``path`` (0600, in a 0700 folder), ``backups`` old files of
    ``max_bytes`` kept."""
    private_folder(path.parent)
    return PrivateRotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                      encoding="utf-8")


__all__ = ["PrivateRotatingFileHandler", "private_folder", "private_log_handler"]
