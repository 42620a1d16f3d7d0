"""What the SDK-based providers share: deadlines, rate-limit signals, connection failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from mtmcs.models.base import CallFailed

RateLimitHook = Callable[[float | None], None]
"""Told about every 429 response (retried ones included), with the attempt's start time."""

CONNECTION_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)


class DeadlineTransport(httpx2.AsyncBaseTransport):
    """Bounds each attempt's whole response, not just each read.

    The SDKs' timeouts apply per read, so a server that drips bytes would hold a call for
    ever. Past the deadline the attempt ends as a read timeout, which the SDK retries like any
    other timeout.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._inner = httpx2.AsyncHTTPTransport(limits=CONNECTION_LIMITS)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            async with asyncio.timeout(self.seconds):
                response = await self._inner.handle_async_request(request)
                await response.aread()
        except TimeoutError as error:
            raise httpx2.ReadTimeout(
                f"no complete response within {self.seconds:g} s", request=request
            ) from error
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def client_options(timeout: float, on_rate_limit: RateLimitHook | None) -> dict[str, Any]:
    """Keyword arguments for the SDKs' default httpx client: deadline and 429 hooks."""
    return {"transport": DeadlineTransport(timeout), "event_hooks": event_hooks(on_rate_limit)}


def event_hooks(
    on_rate_limit: RateLimitHook | None,
) -> dict[str, list[Callable[..., Awaitable[None]]]]:
    """httpx event hooks that report 429 responses to `on_rate_limit`."""
    if on_rate_limit is None:
        return {}

    async def stamp(request: httpx2.Request) -> None:
        request.extensions["mtmcs_started"] = time.monotonic()

    async def check(response: httpx2.Response) -> None:
        if response.status_code == 429:
            on_rate_limit(response.request.extensions.get("mtmcs_started"))

    return {"request": [stamp], "response": [check]}


def connection_failure(error: BaseException, where: str) -> CallFailed:
    """A failed connection; refused connections mark the server as unreachable."""
    cause: Any = error.__cause__ or error.__context__
    refused = isinstance(cause, httpx2.ConnectError)
    reason = "connection refused" if refused else f"{type(cause or error).__name__}: {error}"
    return CallFailed(
        f"cannot reach {where} ({reason})"
        if refused
        else f"connection to {where} failed ({reason})",
        unreachable=refused,
    )
