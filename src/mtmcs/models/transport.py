"""What the SDK-based providers share: deadlines, rate-limit signals, connection failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx2
from httpx_aiohttp.httpx2 import AiohttpTransport

from mtmcs.errors import ProviderError
from mtmcs.models.base import CallFailed

RateLimitHook = Callable[[float | None], None]
"""Told about every 429 response (retried ones included), with the attempt's start time."""

MAX_REPLY_BYTES = 1_000_000
"""Default cap on a response body (1 MB): generous for 128-token turns, small enough that
many concurrent oversized replies cannot exhaust memory."""


class ReplyTooLarge(Exception):
    """A response body grew past the cap while it was read; the rest is never read."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"reply larger than {size_text(cap)} cap; raise --max-reply-bytes")
        self.cap = cap


def size_text(size: int) -> str:
    """`1_000_000` → `1 MB`, `1536` → `1.5 kB`, `10` → `10 bytes`."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


class CappedStream(httpx2.AsyncByteStream):
    """A response body that raises `ReplyTooLarge` as soon as it has yielded more than
    `cap` bytes (as received, before any content decoding), so an endless or huge reply is
    never held in memory."""

    def __init__(self, stream: httpx2.AsyncByteStream, cap: int) -> None:
        self._stream = stream
        self._cap = cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._stream:
            size += len(chunk)
            if size > self._cap:
                raise ReplyTooLarge(self._cap)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class DeadlineTransport(httpx2.AsyncBaseTransport):
    """Sends the SDKs' requests over aiohttp, and bounds each attempt's whole response in
    time and size.

    aiohttp (the SDKs' own optional transport, `httpx_aiohttp`) costs about a third of
    httpx's CPU per call at high concurrency (docs/performance.md). The SDKs' timeouts apply
    per read, so a server that drips bytes would hold a call for ever; past the deadline the
    attempt ends as a read timeout, which the SDK retries like any other timeout. A body
    longer than `max_reply_bytes` ends the attempt with `ReplyTooLarge` while it is read
    (the connection is closed, the rest never read). aiohttp's failures reach the SDK as the
    httpx errors they are (`httpx_error`).
    """

    def __init__(
        self,
        seconds: float,
        connections: int = 32,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self.seconds = seconds
        self.max_reply_bytes = max_reply_bytes
        self._inner = AiohttpTransport(limits=httpx2.Limits(max_connections=connections))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            async with asyncio.timeout(self.seconds):
                response = await self._inner.handle_async_request(request)
                if isinstance(response.stream, httpx2.AsyncByteStream):  # always, here
                    response.stream = CappedStream(response.stream, self.max_reply_bytes)
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
        except TimeoutError as error:
            raise httpx2.ReadTimeout(
                f"no complete response within {self.seconds:g} s", request=request
            ) from error
        except (httpx2.TransportError, aiohttp.ClientError) as error:
            mapped = httpx_error(error, request)
            if mapped is error:
                raise  # as it came, with its own cause
            raise mapped from error
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def httpx_error(error: Exception, request: httpx2.Request) -> Exception:
    """The httpx error an aiohttp failure is: a refused connection a `ConnectError`, a
    server that hung up or broke HTTP a `RemoteProtocolError`, a timeout a timeout
    (`httpx_aiohttp` maps any failed connection to a connect timeout, and lets HTTP
    errors through)."""
    cause = error.__cause__ if isinstance(error, httpx2.TransportError) else error
    if not isinstance(cause, aiohttp.ClientError) or isinstance(cause, TimeoutError):
        return error
    message = str(cause) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(message, request=request)
    if isinstance(cause, aiohttp.ClientPayloadError):
        return httpx2.ReadError(message, request=request)
    if isinstance(cause, aiohttp.ClientConnectionError | aiohttp.ClientResponseError):
        return httpx2.RemoteProtocolError(message, request=request)
    return error


def client_options(
    timeout: float,
    connections: int,
    on_rate_limit: RateLimitHook | None,
    max_reply_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:
    """Keyword arguments for the SDKs' default httpx client: transport and 429 hooks."""
    return {
        "transport": DeadlineTransport(timeout, connections, max_reply_bytes),
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


def lacks_v1(url: str) -> bool:
    """Whether a base URL's path does not end in `/v1`, where OpenAI-compatible servers
    (vLLM, SGLang, Ollama, llama.cpp, TGI, OpenRouter, …) serve their API."""
    return not urlsplit(url).path.rstrip("/").endswith("/v1")


def not_found(name: str, model: str, where: str, *, check_v1: bool = False) -> str:
    """Why a call got HTTP 404 from `where`: an unknown model, or, for an OpenAI-style base
    URL without `/v1` (`check_v1`), more likely a URL missing its `/v1`."""
    if check_v1 and lacks_v1(where):
        return (
            f"{name}: HTTP 404 from {where}: the base URL may be missing /v1 (try "
            f"{where.rstrip('/')}/v1), or the server does not serve the model {model!r}"
        )
    return f"{name}: model {model!r} not found at {where}"


@contextmanager
def sdk_errors(
    sdk: Any, name: str, model: str, where: str, *, check_v1: bool = False
) -> Iterator[None]:
    """Map an SDK's exceptions (`openai` and `anthropic` share their names) to ours.

    Rejected credentials and unknown models stop the run (`ProviderError`); everything else
    is a failed call with its cause (`CallFailed`). With `check_v1` (an OpenAI-style base
    URL in `where`), a 404 says when the URL may be missing `/v1` (`not_found`).
    """
    try:
        yield
    except ReplyTooLarge as error:  # raised by our transport; the SDKs let it through
        raise CallFailed(str(error)) from error
    except sdk.APITimeoutError as error:
        raise CallFailed(f"timed out: {error}") from error
    except sdk.APIConnectionError as error:
        if isinstance(error.__cause__, ReplyTooLarge):  # an SDK that wraps it
            raise CallFailed(str(error.__cause__)) from error
        raise connection_failure(error, where) from error
    except (sdk.AuthenticationError, sdk.PermissionDeniedError) as error:
        raise ProviderError(
            f"{name}: {where} refused the credentials (HTTP {error.status_code}); check the API key"
        ) from error
    except sdk.NotFoundError as error:
        raise ProviderError(not_found(name, model, where, check_v1=check_v1)) from error
    except sdk.APIStatusError as error:
        raise CallFailed(f"HTTP {error.status_code}: {error.message}") from error
    except sdk.APIError as error:
        raise CallFailed(f"{type(error).__name__}: {error}") from error
    except ValueError as error:  # the SDKs raise JSONDecodeError on a malformed body
        raise CallFailed(f"malformed response body ({type(error).__name__})") from error
