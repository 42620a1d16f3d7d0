"""What the SDK-based providers share: deadlines, rate-limit signals, connection failures."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

from mtmcs.models.base import CallFailed

RateLimitHook = Callable[[float | None], None]
"""Told about every 429 response (retried ones included), with the attempt's start time."""

MAX_BACKOFF_S = 8.0  # the SDKs' longest back-off between attempts


def call_deadline(timeout: float, max_retries: int) -> float:
    """Wall-clock bound of one call with all its attempts and back-offs.

    The SDKs' timeouts bound each read, not a whole response, so a server that drips bytes
    would otherwise hold a call forever.
    """
    return (timeout + MAX_BACKOFF_S) * (max_retries + 1)


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
