"""The memory budget for decoding photos, shared by every worker of the daemon.

A small file can declare a big photo (a 105 KB PNG of 6000 x 6000 flat pixels decodes to
432 MB of float32 pixels), so what a job will take is judged from the size and channels its
header declares (:func:`decode_cost`, read before anything is decoded), not from its bytes:

- a photo whose cost alone is over the budget is refused at once (413 ``too_many_pixels``,
  saying how much it needs and what the budget is);
- a worker reserves its jobs' cost before it decodes them and holds it until they end; while the
  reservation does not fit beside those of the other workers, it waits (first come, first
  served), so the photos being worked on together never take more than the budget.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lowkey_daemon.errors import ApiError

#: Bytes a job holds per pixel and channel of its photo: the float32 pixels and their protected
#: copy (measured: a 36-megapixel RGB PNG took about 1 GB while it was decoded and attacked).
BYTES_PER_VALUE = 8
MB = 1024 * 1024


def decode_cost(width: int, height: int, channels: int) -> int:
    """The bytes a job working on a ``width`` x ``height`` photo of ``channels`` channels is
    expected to hold (a photo is worked on in colour: at least 3 channels)."""
    return width * height * max(3, channels) * BYTES_PER_VALUE


class DecodeBudget:
    """``total`` bytes shared by the jobs being decoded and protected at once."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("the decode budget must be positive")
        self.total = total
        self.used = 0
        self._changed = asyncio.Condition()
        self._waiting: deque[object] = deque()

    def check(self, cost: int, width: int, height: int) -> None:
        """Refuse (:class:`ApiError` ``too_many_pixels``) a photo that could never fit."""
        if cost > self.total:
            raise ApiError("too_many_pixels",
                           f"a {width}x{height} photo needs about {cost // MB} MB to decode and "
                           f"protect, over the daemon's decoding budget of {self.total // MB} MB")

    @asynccontextmanager
    async def reserve(self, cost: int) -> AsyncIterator[None]:
        """Hold ``cost`` bytes of the budget for the block, waiting (in turn) for room."""
        cost = min(cost, self.total)  # what check() let in always fits alone
        turn = object()
        async with self._changed:
            self._waiting.append(turn)
            try:
                await self._changed.wait_for(
                    lambda: self._waiting[0] is turn and self.used + cost <= self.total)
            finally:
                self._waiting.remove(turn)
                self._changed.notify_all()
            self.used += cost
        try:
            yield
        finally:
            async with self._changed:
                self.used -= cost
                self._changed.notify_all()


__all__ = ["BYTES_PER_VALUE", "DecodeBudget", "decode_cost"]
