"""Several endpoints serving one model (data-parallel replicas), least outstanding first."""

from __future__ import annotations

import time
from collections.abc import Sequence

from mtmcs.models.base import CallFailed, ChatModel, ChatRequest, Completion

COOLDOWN_S = 30.0


class EndpointPool:
    """Sends each request to the endpoint with the fewest requests in flight.

    An endpoint that refuses connections is skipped for `cooldown` seconds and the request
    goes to another one; the pool reports the server unreachable only when all refuse.
    """

    def __init__(
        self, name: str, endpoints: Sequence[ChatModel], cooldown: float = COOLDOWN_S
    ) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.name = name
        self.endpoints = tuple(endpoints)
        self.outstanding = [0] * len(self.endpoints)
        self.served = [0] * len(self.endpoints)
        self._down_until = [0.0] * len(self.endpoints)
        self._cooldown = cooldown

    def _pick(self, tried: set[int]) -> int | None:
        now = time.monotonic()
        candidates = [i for i in range(len(self.endpoints)) if i not in tried]
        healthy = [i for i in candidates if self._down_until[i] <= now]
        pool = healthy or candidates
        return min(pool, key=lambda i: self.outstanding[i]) if pool else None

    async def complete(self, request: ChatRequest) -> Completion:
        tried: set[int] = set()
        while (index := self._pick(tried)) is not None:
            tried.add(index)
            self.outstanding[index] += 1
            try:
                completion = await self.endpoints[index].complete(request)
            except CallFailed as failure:
                if not failure.unreachable or len(tried) == len(self.endpoints):
                    raise
                self._down_until[index] = time.monotonic() + self._cooldown
                continue
            finally:
                self.outstanding[index] -= 1
            self.served[index] += 1
            return completion
        raise CallFailed("no endpoint left to try", unreachable=True)

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            await endpoint.aclose()
