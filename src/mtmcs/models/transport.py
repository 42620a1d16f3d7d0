"""What the SDK-based providers share: deadlines, rate-limit signals, connection failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from mtmcs.errors import ProviderError
from mtmcs.models.base import CallFailed

RateLimitHook = Callable[[float | None], None]
"""Told about every 429 response (retried ones included), with the attempt's start time."""

POOL_SIZE = 32
"""Connections per httpx pool: httpx scans its whole pool on every request, so many
connections are split over several small pools rather than kept in one big one."""


class DeadlineTransport(httpx2.AsyncBaseTransport):
    """Bounds each attempt's whole response, and spreads requests over small pools.

    The SDKs' timeouts apply per read, so a server that drips bytes would hold a call for
    ever; past the deadline the attempt ends as a read timeout, which the SDK retries like
    any other timeout. Each request goes to the pool with the fewest requests in flight.
    """

    def __init__(self, seconds: float, connections: int = POOL_SIZE) -> None:
        self.seconds = seconds
        count = max(1, -(-connections // POOL_SIZE))
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=POOL_SIZE)
        self._pools = [httpx2.AsyncHTTPTransport(limits=limits) for _ in range(count)]
        self._in_flight = [0] * count

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        index = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        self._in_flight[index] += 1
        try:
            async with asyncio.timeout(self.seconds):
                response = await self._pools[index].handle_async_request(request)
                await response.aread()
        except TimeoutError as error:
            raise httpx2.ReadTimeout(
                f"no complete response within {self.seconds:g} s", request=request
            ) from error
        finally:
            self._in_flight[index] -= 1
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def client_options(
    timeout: float, connections: int, on_rate_limit: RateLimitHook | None
) -> dict[str, Any]:
    """Keyword arguments for the SDKs' default httpx client: transport and 429 hooks."""
    return {
        "transport": DeadlineTransport(timeout, connections),
        "event_hooks": event_hooks(on_rate_limit),
    }


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


@contextmanager
def sdk_errors(sdk: Any, name: str, model: str, where: str) -> Iterator[None]:
    """Map an SDK's exceptions (`openai` and `anthropic` share their names) to ours.

    Rejected credentials and unknown models stop the run (`ProviderError`); everything else
    is a failed call with its cause (`CallFailed`).
    """
    try:
        yield
    except sdk.APITimeoutError as error:
        raise CallFailed(f"timed out: {error}") from error
    except sdk.APIConnectionError as error:
        raise connection_failure(error, where) from error
    except (sdk.AuthenticationError, sdk.PermissionDeniedError) as error:
        raise ProviderError(
            f"{name}: {where} refused the credentials (HTTP {error.status_code}); check the API key"
        ) from error
    except sdk.NotFoundError as error:
        raise ProviderError(f"{name}: model {model!r} not found at {where}") from error
    except sdk.APIStatusError as error:
        raise CallFailed(f"HTTP {error.status_code}: {error.message}") from error
    except sdk.APIError as error:
        raise CallFailed(f"{type(error).__name__}: {error}") from error
    except ValueError as error:  # the SDKs raise JSONDecodeError on a malformed body
        raise CallFailed(f"malformed response body ({type(error).__name__})") from error
