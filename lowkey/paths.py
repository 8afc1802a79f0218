"""Where LowKey keeps its files: the user cache (weights) and config (user-added models, pins).

Both can be moved with environment variables, which the tests and CI use:
``LOWKEY_CACHE_DIR`` and ``LOWKEY_CONFIG_DIR``.
"""

import os
from pathlib import Path

import platformdirs

APP_NAME = "lowkey"


def cache_dir() -> Path:
    """Root of the weight cache (verified sources and converted models)."""
    override = os.environ.get("LOWKEY_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))


def config_dir() -> Path:
    """Root of the user's configuration (models added by the user, pinned hashes)."""
    override = os.environ.get("LOWKEY_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def offline() -> bool:
    """True when ``LOWKEY_OFFLINE`` is set to a true value: nothing may touch the network."""
    return os.environ.get("LOWKEY_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
