"""The native-messaging host: how the browser extension reaches the daemon.

``lowkey-native-host`` (:mod:`lowkey_native_host.host`) is started by the browser and speaks
native messaging (:mod:`lowkey_native_host.protocol`; every message is defined in
``messages.schema.json``) on stdin/stdout, and HTTP to the daemon
(:mod:`lowkey_native_host.daemon_client`), which it starts when it is not running
(:mod:`lowkey_native_host.launcher`). ``extension_ids.json`` is the one place the extension's ids
live.
"""

from importlib import resources
from pathlib import Path


def data_file(name: str) -> Path:
    """A file shipped with this package: ``messages.schema.json`` or ``extension_ids.json``."""
    return Path(str(resources.files(__name__) / name))
