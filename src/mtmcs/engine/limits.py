"""Adaptive concurrency: back off on rate limits, grow again while calls succeed (AIMD)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque


class AdaptiveLimiter:
    """A concurrency limit between 1 and `maximum` that halves on a rate limit.

    A 429 halves the limit, at most once per round trip: a 429 on a call that started before
    the last decrease does not decrease it again. Each success adds 1/limit, so the limit grows
    by about one per round of calls. Waiters are served first in, first out, one wake-up each.
    A cancelled waiter leaves the queue without raising and without taking or losing a slot,
    whichever happens first: its cancellation, or a release that hands it a slot.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.lowest = float(maximum)
        self.throttles = 0
        self._in_use = 0
        self._last_decrease = float("-inf")
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"AdaptiveLimiter(limit={self.limit:.1f}, maximum={self.maximum})"

    async def acquire(self) -> None:
        """Wait for a free slot."""
        if self._in_use < int(self.limit) and not self._waiters:
            self._in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just before the cancellation
            else:
                # A release may already have dropped the cancelled waiter from the queue
                # (it skips waiters that are done), so it may no longer be there.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._wake()  # a slot this waiter was first in line for goes to the next
            raise

    def release(self) -> None:
        """Give a slot back and hand free slots to the longest waiters."""
        self._in_use -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    def succeeded(self) -> None:
        """A call got an answer: grow the limit additively."""
        self.limit = min(float(self.maximum), self.limit + 1 / self.limit)
        self._wake()

    def throttled(self, started: float | None = None) -> None:
        """The server answered 429 to a call started at `started` (monotonic): halve the limit."""
        self.throttles += 1
        if started is not None and started < self._last_decrease:
            return
        self._last_decrease = time.monotonic()
        self.limit = max(1.0, self.limit / 2)
        self.lowest = min(self.lowest, self.limit)
