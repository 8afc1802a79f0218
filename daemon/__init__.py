"""The LowKey daemon: a warm, authenticated protection service on localhost (aiohttp).

``lowkey daemon`` runs it in the foreground; :func:`lowkey_daemon.app.create_app` builds the
application over the core's API (:mod:`lowkey.pool`, :mod:`lowkey.jobs`, :mod:`lowkey.protect`).
The core never imports this package.
"""

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from lowkey_daemon.app import create_app

        return create_app
    raise AttributeError(name)
