"""The extension ids, read from their one home: ``native_host/extension_ids.json``.

The installer writes them into the native-messaging manifests; the extension build reads the same
file. Nothing else may spell them out.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class ExtensionIds:
    """The native host's name and the ids of the extension in each browser family."""

    native_host_name: str
    chromium_id: str
    chromium_key: str
    firefox_id: str

    @property
    def chromium_origin(self) -> str:
        """The origin Chromium-family browsers check against ``allowed_origins``."""
        return f"chrome-extension://{self.chromium_id}/"


def chromium_id_from_key(key_b64: str) -> str:
    """Chromium's extension id for a manifest ``key``: sha256 of the DER key, first 32 hex
    digits, each mapped 0-f -> a-p."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def load_extension_ids() -> ExtensionIds:
    """Read ``native_host/extension_ids.json``; refuse it if the Chromium id and key disagree."""
    text = resources.files("lowkey_native_host").joinpath("extension_ids.json").read_text("utf-8")
    data = json.loads(text)
    ids = ExtensionIds(
        native_host_name=data["native_host_name"],
        chromium_id=data["chromium"]["id"],
        chromium_key=data["chromium"]["key"],
        firefox_id=data["firefox"]["id"],
    )
    derived = chromium_id_from_key(ids.chromium_key)
    if derived != ids.chromium_id:
        raise ValueError(
            f"native_host/extension_ids.json: chromium.id {ids.chromium_id} is not the id of "
            f"chromium.key ({derived})"
        )
    return ids
