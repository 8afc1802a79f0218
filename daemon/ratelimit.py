"""Per-client rate limits for authenticated requests: a token bucket per client kind.

Every local client connects from 127.0.0.1, so the address says nothing; and a header a client
writes itself is no identity either: a bucket per header value lets a client make itself a fresh
bucket per request, and grows a table without end. So limits are keyed on what only an
authenticated client can reach: the request has shown the daemon's token (checked before any
of this, :mod:`lowkey_daemon.security`), and its ``X-LowKey-Client`` names one of the few
known :data:`lowkey.service.CLIENT_KINDS`; any other value, or none, is ``other``. The table is
bounded anyway (:class:`RateLimiter` forgets the least recently used bucket past ``max_clients``), and each
request costs O(1).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from lowkey.service import CLIENT_KINDS

#: The bucket every client shares whose kind is not one of :data:`CLIENT_KINDS`.
OTHER = "other"


def client_kind(header: str | None) -> str:
    """The bucket of an authenticated request whose ``X-LowKey-Client`` is ``header``."""
    value = (header or "").strip().lower()
    return value if value in CLIENT_KINDS else OTHER


class RateLimiter:
    """``rate`` requests per second per key, in bursts of up to ``burst``; at most
    ``max_clients`` keys are remembered (the least recently used is forgotten first: it would
    have refilled anyway). O(1) time per :meth:`take`; ``clock`` is injectable for tests."""

    def __init__(self, rate: float, burst: int, max_clients: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate, burst and max_clients must be positive")
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._clock = clock
        #: key -> (tokens left, when they were counted); oldest use first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Spend one token of ``key``'s bucket: 0 when the request may go now, else the seconds
        until it may (nothing is spent then)."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens < 1.0:
            wait = (1.0 - tokens) / self.rate
        else:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # now the most recently used
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


__all__ = ["OTHER", "RateLimiter", "client_kind"]
