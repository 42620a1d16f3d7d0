"""Local OpenAI- and Anthropic-compatible HTTP server for tests and benchmarks.

The server is an aiohttp app bound to 127.0.0.1 (never 0.0.0.0) that runs in a background
thread with its own event loop::

    with FakeServer(ScriptedResponder(["hi", Reply(status=429)]), latency=0.0) as server:
        client = AsyncOpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        anthropic = AsyncAnthropic(api_key="test", base_url=server.anthropic_base_url)
        ...
        server.requests  # list[RecordedRequest], in arrival order

Endpoints: ``POST /v1/chat/completions`` (non-streaming), ``POST /v1/messages`` (non-streaming),
``POST /v1/images/edits`` (OpenAI's image edit: the reply text is the image's base64) and
``GET /v1/models`` (one model; Anthropic-shaped when the request carries an
``anthropic-version`` header). Anything else gets a JSON 404 naming the route, which makes a
wrong ``base_url`` obvious in the SDK's error message.

Standalone, for benchmarks (prints the OpenAI base URL as the first stdout line)::

    python tests/fakeserver.py --port 0 --latency 1.0 --reply "text"

Only aiohttp and the standard library are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import inspect
import itertools
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

__all__ = [
    "FakeServer",
    "FixedResponder",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptedResponder",
]

HOST = "127.0.0.1"
DEFAULT_MODEL = "fake-model"
# Multimodal requests carry base64 images; aiohttp's default request cap is 1 MiB.
MAX_REQUEST_BYTES = 256 * 1024**2
_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
CALL_KIND_HEADER = "x-mtmcs-call-kind"  # sent by mtmcs's providers (mtmcs.models.base)

Api = Literal["openai", "anthropic"]


@dataclass(slots=True, frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]  # header names lower-cased
    body: dict[str, Any]  # parsed JSON body; {} for a GET or an unparsable body
    api: Api
    index: int  # arrival order, 0-based (reset by FakeServer.clear())

    @property
    def call_kind(self) -> str:
        """What kind of call the client says this is ("" if it does not say): mtmcs's
        providers send it in the ``X-Mtmcs-Call-Kind`` header (turn, mcq, tf, judge, stance,
        reward, selector, categorize, guard, a build stage, …)."""
        return self.headers.get(CALL_KIND_HEADER, "")


@dataclass(slots=True)
class Reply:
    """What the server answers; a responder may also return a plain ``str`` (the text)."""

    text: str = ""
    # OpenAI finish_reason; mapped for Anthropic (stop -> end_turn, length -> max_tokens,
    # tool_calls -> tool_use, content_filter -> refusal). Anthropic values are accepted too.
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Retry-After": "1"}
    delay: float | None = None  # seconds; overrides the server latency for this request
    raw_body: str | None = None  # sent verbatim (with any status) instead of the JSON
    error_message: str = ""  # for non-200 statuses; default: the HTTP reason phrase
    # Usage overrides; default: whitespace-separated word counts of the prompt / text.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # Transport faults: "reset" aborts the connection (TCP RST) instead of answering;
    # "drip" sends the normal body one byte every `drip_interval` seconds.
    fault: Literal["reset", "drip"] | None = None
    drip_interval: float = 0.05


Responder = Callable[[RecordedRequest], str | Reply | Awaitable[str | Reply]]
"""Decides the reply. Called on the server's event loop thread, so it should not block; it
may be a coroutine function. If it raises, the server answers 500 with the exception text."""


class ScriptedResponder:
    """Answers with ``replies`` in order; raises (-> HTTP 500) once they are used up."""

    def __init__(self, replies: Sequence[str | Reply]) -> None:
        self.replies: list[str | Reply] = list(replies)
        self.calls = 0

    def __call__(self, request: RecordedRequest) -> str | Reply:
        if self.calls >= len(self.replies):
            raise RuntimeError(
                f"ScriptedResponder exhausted: {len(self.replies)} scripted replies, "
                f"got request #{self.calls + 1} ({request.path})"
            )
        reply = self.replies[self.calls]
        self.calls += 1
        return reply

    @property
    def remaining(self) -> int:
        return len(self.replies) - self.calls


class FixedResponder:
    """Always answers with the same text (or ``Reply``)."""

    def __init__(self, reply: str | Reply) -> None:
        self.reply = reply

    def __call__(self, request: RecordedRequest) -> str | Reply:
        return self.reply


_TO_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_TO_OPENAI_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _count_words(value: Any) -> int:
    """Whitespace-separated words in message text (image parts and other fields ignored)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(item) for item in value)
    if isinstance(value, dict):
        return _count_words(value.get("text")) + _count_words(value.get("content"))
    return 0


def _error_body(api: Api, status: int, message: str) -> dict[str, Any]:
    if api == "anthropic":
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(payload).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _reset(request: web.Request) -> web.Response:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing proxy would."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=500)


async def _drip(
    request: web.Request, payload: Any, reply: Reply, headers: dict[str, str]
) -> web.StreamResponse:
    """Send a valid body one byte at a time, slowly, so that no single read times out."""
    body = json.dumps(payload).encode()
    response = web.StreamResponse(status=reply.status, headers=headers)
    response.content_type = "application/json"
    response.content_length = len(body)
    await response.prepare(request)
    for index in range(len(body)):
        await response.write(body[index : index + 1])
        await asyncio.sleep(reply.drip_interval)
    await response.write_eof()
    return response


class FakeServer:
    """OpenAI/Anthropic-compatible server on 127.0.0.1, in a background thread.

    ``responder`` is a callable ``(RecordedRequest) -> str | Reply`` (or a ``str`` / ``Reply``,
    shorthand for ``FixedResponder``). ``latency`` (seconds; may be changed while running) is
    awaited before each chat/messages answer unless the ``Reply`` sets ``delay``. Set
    ``record=False`` for long benchmarks that do not need ``requests``.
    """

    def __init__(
        self,
        responder: Responder | str | Reply,
        latency: float = 0.0,
        *,
        port: int = 0,
        model: str = DEFAULT_MODEL,
        record: bool = True,
        shutdown_timeout: float = 0.5,
    ) -> None:
        self.responder: Responder = (
            FixedResponder(responder) if isinstance(responder, str | Reply) else responder
        )
        self.latency = latency
        self.model = model
        self.record = record
        self._requested_port = port
        self._shutdown_timeout = shutdown_timeout
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._counter = itertools.count()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.host = HOST
        self.port = 0

    # -- public API -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """For ``openai.AsyncOpenAI(base_url=...)``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For ``anthropic.AsyncAnthropic(base_url=...)`` (the SDK appends ``/v1/messages``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def clear(self) -> None:
        """Forget the recorded requests; indexes start again at 0."""
        with self._lock:
            self._requests.clear()
            self._counter = itertools.count()

    def start(self) -> FakeServer:
        if self._thread is not None:
            raise RuntimeError("FakeServer already started")
        self._ready.clear()
        self._startup_error = None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted sockets inherit it on Linux; aiohttp also sets it per connection.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((HOST, self._requested_port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._serve, name=f"FakeServer:{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("FakeServer failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread. Requests still in flight are given about
        ``shutdown_timeout`` seconds (aiohttp may wait twice that), then cancelled."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- event loop thread ------------------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        runner: web.AppRunner | None = None
        try:
            try:
                runner = loop.run_until_complete(self._setup())
            except BaseException as exc:
                self._startup_error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            try:
                if runner is not None:
                    loop.run_until_complete(runner.cleanup())
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                if self._sock is not None:
                    self._sock.close()

    async def _setup(self) -> web.AppRunner:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/images/edits", self._handle_image_edit)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        assert self._sock is not None
        await web.SockSite(runner, self._sock, backlog=_BACKLOG).start()
        return runner

    def _record(self, request: web.Request, body: dict[str, Any], api: Api) -> RecordedRequest:
        headers = {key.lower(): value for key, value in request.headers.items()}
        with self._lock:
            recorded = RecordedRequest(request.path, headers, body, api, next(self._counter))
            if self.record:
                self._requests.append(recorded)
        return recorded

    async def _read_json(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return {}, f"fakeserver: request body is not valid JSON: {exc}"
        if not isinstance(body, dict):
            return {}, "fakeserver: request body must be a JSON object"
        return body, None

    async def _reply_for(self, recorded: RecordedRequest) -> Reply:
        result = self.responder(recorded)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, str):
            return Reply(text=result)
        if isinstance(result, Reply):
            return result
        raise TypeError(f"responder returned {type(result).__name__}, expected str or Reply")

    async def _handle_api(self, request: web.Request, api: Api) -> web.StreamResponse:
        body, problem = await self._read_json(request)
        recorded = self._record(request, body, api)
        if problem is not None:
            return _json_response(_error_body(api, 400, problem), status=400)
        try:
            reply = await self._reply_for(recorded)
        except Exception as exc:
            message = f"fakeserver responder raised {type(exc).__name__}: {exc}"
            return _json_response(_error_body(api, 500, message), status=500)
        delay = self.latency if reply.delay is None else reply.delay
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.fault == "reset":
            return _reset(request)
        headers = dict(reply.headers)
        headers.setdefault("x-request-id", f"req_fake_{recorded.index}")
        if api == "anthropic":
            headers.setdefault("request-id", f"req_fake_{recorded.index}")
        if reply.raw_body is not None:
            if not any(key.lower() == "content-type" for key in headers):
                headers["Content-Type"] = "application/json"
            return web.Response(text=reply.raw_body, status=reply.status, headers=headers)
        if reply.status >= 300:
            message = reply.error_message or web.Response(status=reply.status).reason
            return _json_response(_error_body(api, reply.status, message), reply.status, headers)
        build = _anthropic_message if api == "anthropic" else _openai_completion
        if reply.fault == "drip":
            return await _drip(request, build(recorded, reply, self.model), reply, headers)
        return _json_response(build(recorded, reply, self.model), reply.status, headers)

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_api(request, "openai")

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._handle_api(request, "anthropic")

    async def _handle_image_edit(self, request: web.Request) -> web.Response:
        """OpenAI's image edit (multipart): the responder sees the form fields, the image as
        base64 under "image", and answers the edited image's base64 as the reply text."""
        form = await request.post()
        body: dict[str, Any] = {}
        for name, value in form.items():
            if isinstance(value, web.FileField):
                body[name] = base64.b64encode(value.file.read()).decode("ascii")
            else:
                body[name] = str(value)
        recorded = self._record(request, body, "openai")
        try:
            reply = await self._reply_for(recorded)
        except Exception as exc:
            message = f"fakeserver responder raised {type(exc).__name__}: {exc}"
            return _json_response(_error_body("openai", 500, message), status=500)
        if reply.status >= 300:
            message = reply.error_message or web.Response(status=reply.status).reason
            return _json_response(_error_body("openai", reply.status, message), reply.status)
        return _json_response({"created": int(time.time()), "data": [{"b64_json": reply.text}]})

    async def _handle_models(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        self._record(request, {}, api)
        name = self.model
        if api == "anthropic":
            info = {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "2024-01-01T00:00:00Z",
            }
            return _json_response(
                {"data": [info], "has_more": False, "first_id": name, "last_id": name}
            )
        entry = {"id": name, "object": "model", "created": 0, "owned_by": "fakeserver"}
        return _json_response({"object": "list", "data": [entry]})

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        api: Api = "anthropic" if "anthropic-version" in request.headers else "openai"
        message = f"fakeserver: no route for {request.method} {request.path}"
        return _json_response(_error_body(api, 404, message), status=404)


def _usage(recorded: RecordedRequest, reply: Reply) -> tuple[int, int]:
    body = recorded.body
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = _count_words(body.get("messages")) + _count_words(body.get("system"))
    completion = reply.completion_tokens
    if completion is None:
        completion = len(reply.text.split())
    return prompt, completion


def _openai_completion(recorded: RecordedRequest, reply: Reply, model: str) -> dict[str, Any]:
    prompt, completion = _usage(recorded, reply)
    return {
        "id": f"chatcmpl-fake{recorded.index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": recorded.body.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
                "finish_reason": _TO_OPENAI_FINISH.get(reply.finish_reason, reply.finish_reason),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "system_fingerprint": "fakeserver",
    }


def _anthropic_message(recorded: RecordedRequest, reply: Reply, model: str) -> dict[str, Any]:
    prompt, completion = _usage(recorded, reply)
    return {
        "id": f"msg_fake{recorded.index}",
        "type": "message",
        "role": "assistant",
        "model": recorded.body.get("model") or model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _TO_ANTHROPIC_STOP.get(reply.finish_reason, reply.finish_reason),
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--reply", default="ok", help="text of every reply")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id for /v1/models")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    responder = FixedResponder(args.reply)
    with FakeServer(
        responder, args.latency, port=args.port, model=args.model, record=False
    ) as server:
        print(server.base_url, flush=True)
        print(f"anthropic base URL: {server.anthropic_base_url}", file=sys.stderr, flush=True)
        while not stop.wait(3600):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
