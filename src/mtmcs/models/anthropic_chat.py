"""Anthropic's Messages API via the official `anthropic` SDK."""

from __future__ import annotations

from typing import Any

import anthropic

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

THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
"""Extended-thinking budgets for `--reasoning-effort` (1,024 is the API's minimum)."""


def anthropic_content(message: Message, images: ImageEncoder) -> str | list[dict[str, Any]]:
    """A message's content: plain text, or an image block and a text block, in the
    message's `image_order`."""
    if message.image_id is None:
        return message.text
    encoded = images(message.image_id)
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": encoded.media_type, "data": encoded.data},
    }
    text = {"type": "text", "text": message.text}
    return [image, text] if message.image_order == "before" else [text, image]


class AnthropicChat:
    """Messages through the official SDK, with its bounded retries and back-off.

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
        on_rate_limit: RateLimitHook | None = None,
        connections: int = 32,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        remember_secret(api_key)  # masked in everything printed or stored
        self.name = name
        self._model = model
        self._images = images
        self._base_url = base_url or "the Anthropic API"
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
            http_client=anthropic.DefaultAsyncHttpxClient(
                **client_options(timeout, connections, on_rate_limit, max_reply_bytes)
            ),
        )

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        system = "\n\n".join(m.text for m in request.messages if m.role == "system")
        arguments: dict[str, Any] = {
            "model": self._model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": message.role, "content": anthropic_content(message, self._images)}
                for message in request.messages
                if message.role != "system"
            ],
        }
        if system:
            arguments["system"] = system
        extra: dict[str, Any] = {}
        budget = THINKING_BUDGETS.get(request.reasoning_effort or "none")
        if budget is not None:
            # Extended thinking: the visible reply keeps its own budget on top of the
            # thinking budget, and the API takes no temperature with thinking on.
            extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
            arguments["max_tokens"] = request.max_tokens + budget
        elif request.temperature is not None:
            extra["temperature"] = request.temperature
        extra.update(provider_arguments(request))
        if extra:
            # Passed as body fields: not every supported SDK release names them.
            arguments["extra_body"] = extra
        return arguments

    async def complete(self, request: ChatRequest) -> Completion:
        with sdk_errors(anthropic, self.name, self._model, self._base_url):
            response = await self._client.messages.create(
                **self._arguments(request), extra_headers={CALL_KIND_HEADER: call_kind(request)}
            )
        try:
            text = "".join(block.text for block in response.content if block.type == "text")
            usage = response.usage
        except (AttributeError, TypeError) as error:
            raise CallFailed("malformed response: no content blocks") from error
        if not text.strip():
            thought = any(block.type == "thinking" for block in response.content)
            if thought and response.stop_reason == "max_tokens":
                raise CallFailed(f"{REASONING_EXHAUSTED} (raise --max-tokens)")
            raise CallFailed(f"empty completion (stop_reason={response.stop_reason})")
        return Completion(
            text=text,
            finish_reason=response.stop_reason,
            input_tokens=getattr(usage, "input_tokens", None),
            output_tokens=getattr(usage, "output_tokens", None),
        )

    async def aclose(self) -> None:
        await self._client.close()
