"""The user's daemon settings: ``daemon.toml`` in LowKey's config folder.

A daemon started by the native host, by systemd or launchd at login, or by hand runs
``lowkey daemon`` with no options; this file is where the user chooses how it runs. Options on
the command line win over the file, the file over the built-in defaults. Example::

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

Unknown keys and values of the wrong type are errors that name the file and the key: a typo must
not be ignored silently.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

SETTINGS_FILE = "daemon.toml"

#: Each key the file may hold, and the type its value must have.
SETTINGS_TYPES: dict[str, type] = {"port": int, "preset": str, "devices": list, "models": list,
                                   "queue_size": int, "job_timeout": float, "warm_up": bool,
                                   "batch": int}


def settings_path(config_dir: Path) -> Path:
    """Where the settings file lives in ``config_dir``."""
    return Path(config_dir) / SETTINGS_FILE


def load_settings(config_dir: Path) -> dict[str, object]:
    """The settings in ``config_dir/daemon.toml`` ({} when there is no file).

    Raises ValueError naming the file for a file that is not TOML, an unknown key or a value of
    the wrong type. ``devices`` and ``models`` are lists of strings; ``job_timeout`` may be
    written as an integer.
    """
    path = settings_path(config_dir)
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
