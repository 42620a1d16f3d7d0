"""OpenAI and OpenAI-compatible servers (vLLM, SGLang, Ollama, llama.cpp, …) via `openai`."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal, cast

import httpx2
import openai

from mtmcs.keys import remember_secret
from mtmcs.models.base import (
    CALL_KIND_HEADER,
    REASONING_EXHAUSTED,
    CallFailed,
    ChatRequest,
    Completion,
    call_kind,
    provider_arguments,
)
from mtmcs.models.images import ImageEncoder
from mtmcs.models.transport import (
    MAX_REPLY_BYTES,
    RateLimitHook,
    client_options,
    sdk_errors,
)
from mtmcs.protocol.messages import Message

TokenParameter = Literal["max_tokens", "max_completion_tokens"]


_IMAGE_SLOT = "mtmcs-image-slot-" + secrets.token_hex(8)


def openai_content(message: Message) -> str | list[dict[str, Any]]:
    """A message's content: plain text, or an image part (a slot) and a text part, in the
    message's `image_order`."""
    if message.image_id is None:
        return message.text
    image = {"type": "image_url", "image_url": {"url": f"{_IMAGE_SLOT}:{message.image_id}"}}
    text = {"type": "text", "text": message.text}
    return [image, text] if message.image_order == "before" else [text, image]


def empty_cause(finish_reason: str | None, reasoning_tokens: int | None, limit: int) -> str:
    """Why a completion came back empty: hidden reasoning that used up the whole budget
    (`REASONING_EXHAUSTED`), or plainly empty."""
    if finish_reason == "length" and reasoning_tokens:
        return (
            f"{REASONING_EXHAUSTED} ({reasoning_tokens} reasoning tokens of {limit}; raise "
            "--max-tokens or lower --reasoning-effort)"
        )
    return f"empty completion (finish_reason={finish_reason})"


def _field(value: object, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def completion_of(response: object, max_tokens: int) -> Completion:
    """The completion in a chat completion's JSON; `CallFailed` for one without a text
    (malformed, or empty: `empty_cause`)."""
    choices = _field(response, "choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = _field(choice, "message")
    text = _field(message, "content") if isinstance(message, dict) else None
    if not isinstance(message, dict) or not isinstance(text, str | None):
        raise CallFailed("malformed response: no choices[0].message")
    finish_reason = _field(choice, "finish_reason")
    finish_reason = finish_reason if isinstance(finish_reason, str) else None
    usage = _field(response, "usage")
    if not text or not text.strip():
        reasoning = _count(_field(_field(usage, "completion_tokens_details"), "reasoning_tokens"))
        raise CallFailed(empty_cause(finish_reason, reasoning, max_tokens))
    return Completion(
        text=text,
        finish_reason=finish_reason,
        input_tokens=_count(_field(usage, "prompt_tokens")),
        output_tokens=_count(_field(usage, "completion_tokens")),
    )


BODY_SLICE = 256 * 1024
"""A body is written in slices of at most this size: aiohttp waits for the socket to drain
between slices, so a connection never holds more than about one slice of a multi-megabyte
image in its send buffer (a whole image each, before: most of the peak memory at C = 256)."""


class RequestBody:
    """A JSON body in pieces: the JSON text, with each image's cached data URL in between.

    Serialising a multi-megabyte base64 string for every call, or even copying it into one
    body, would cost more memory and CPU than everything else a call does: the pieces are
    sent one after the other (with an explicit Content-Length), straight from the cache.
    The SDK retries only bodies it can rewind, which it recognises by `seek`/`tell`, so the
    body offers them; each iteration sends the whole body again.
    """

    def __init__(
        self, arguments: dict[str, Any], images: ImageEncoder, messages: tuple[Message, ...]
    ) -> None:
        pieces = [json.dumps(arguments, ensure_ascii=False, separators=(",", ":")).encode()]
        for image_id in dict.fromkeys(m.image_id for m in messages if m.image_id is not None):
            slot = f'{_IMAGE_SLOT}:{image_id}"'.encode()  # the closing quote ends the id
            url = images(image_id).data_url  # shared, never copied
            spliced: list[bytes] = []
            for piece in pieces:
                for index, part in enumerate(piece.split(slot)):
                    if index:
                        spliced += [url, b'"']
                    spliced.append(part)
            pieces = spliced
        self.pieces = tuple(pieces)
        self.length = sum(len(piece) for piece in pieces)

    async def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        for piece in self.pieces:
            if len(piece) <= BODY_SLICE:
                yield piece
                continue
            view = memoryview(piece)  # slices of the cached data URL, never copies
            for start in range(0, len(piece), BODY_SLICE):
                yield view[start : start + BODY_SLICE]

    def read(self, size: int = -1) -> bytes:
        """The whole body (file-like access, for completeness)."""
        return b"".join(self.pieces)

    def seekable(self) -> bool:
        """Always: every iteration starts from the beginning."""
        return True

    def tell(self) -> int:
        """Position 0: iteration always starts at the beginning."""
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        """Rewind (a no-op: iteration always starts at the beginning)."""
        return 0


class OpenAIChat:
    """Chat completions through the official SDK, with its bounded retries and back-off.

    Every request carries the header `X-Mtmcs-Call-Kind` (`CALL_KIND_HEADER`): the kind of
    call it is (`turn`, `mcq`, `tf`, `judge`, `stance`, `reward`, `selector`, … see
    `mtmcs.models.base.call_kind`). Servers ignore headers they do not know; a test server
    can route on it instead of on the prompt's wording.
    """

    def __init__(
        self,
        name: str,
        model: str,
        *,
        images: ImageEncoder,
        api_key: str,
        base_url: str | None,
        max_retries: int,
        timeout: float,
        token_parameter: TokenParameter,
        on_rate_limit: RateLimitHook | None = None,
        connections: int = 32,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        remember_secret(api_key)  # masked in everything printed or stored
        self.name = name
        self._model = model
        self._images = images
        self._base_url = base_url or "the OpenAI API"
        self._check_v1 = base_url is not None  # a 404 may then mean a URL without /v1
        self._token_parameter = token_parameter
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(
                **client_options(timeout, connections, on_rate_limit, max_reply_bytes)
            ),
        )

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": message.role, "content": openai_content(message)}
                for message in request.messages
            ],
            self._token_parameter: request.max_tokens,
        }
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.seed is not None:
            arguments["seed"] = request.seed
        if request.reasoning_effort is not None:
            arguments["reasoning_effort"] = request.reasoning_effort
        arguments.update(provider_arguments(request))
        return arguments

    async def complete(self, request: ChatRequest) -> Completion:
        with sdk_errors(openai, self.name, self._model, self._base_url, check_v1=self._check_v1):
            body = RequestBody(self._arguments(request), self._images, request.messages)
            content = await self._client.post(
                "/chat/completions",
                cast_to=httpx2.Response,  # read here: the SDK's models cost more than the JSON
                # Slices of it are memoryviews, which httpx and aiohttp send like bytes.
                content=cast("AsyncIterable[bytes]", body),
                options={
                    "headers": {
                        "Content-Length": str(body.length),
                        CALL_KIND_HEADER: call_kind(request),
                    }
                },
            )
            response = json.loads(content.content)
        return completion_of(response, request.max_tokens)

    async def aclose(self) -> None:
        await self._client.close()
