"""Anthropic's Messages API via the official `anthropic` SDK."""

from __future__ import annotations

from typing import Any

import anthropic

from mtmcs.errors import ProviderError
from mtmcs.models.base import CallFailed, ChatRequest, Completion
from mtmcs.models.images import ImageEncoder
from mtmcs.protocol.messages import Message


def anthropic_content(message: Message, images: ImageEncoder) -> str | list[dict[str, Any]]:
    """A message's content: plain text, or an image block followed by a text block."""
    if message.image_id is None:
        return message.text
    image = images(message.image_id)
    return [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": image.media_type, "data": image.data},
        },
        {"type": "text", "text": message.text},
    ]


class AnthropicChat:
    """Messages through the official SDK, with its bounded retries and back-off."""

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
    ) -> None:
        self.name = name
        self._model = model
        self._images = images
        self._base_url = base_url or "the Anthropic API"
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    async def complete(self, request: ChatRequest) -> Completion:
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
        if request.temperature is not None:
            # This SDK release has no `temperature` parameter; the API still takes it.
            arguments["extra_body"] = {"temperature": request.temperature}
        try:
            response = await self._client.messages.create(**arguments)
        except anthropic.APIConnectionError as error:
            raise CallFailed(f"cannot reach {self._base_url}: {error}", unreachable=True) from error
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as error:
            raise ProviderError(
                f"{self.name}: {self._base_url} refused the credentials (HTTP "
                f"{error.status_code}); check ANTHROPIC_API_KEY"
            ) from error
        except anthropic.NotFoundError as error:
            raise ProviderError(f"{self.name}: model {self._model!r} not found") from error
        except anthropic.APIStatusError as error:
            raise CallFailed(f"HTTP {error.status_code}: {error.message}") from error
        except anthropic.APIError as error:
            raise CallFailed(f"{type(error).__name__}: {error}") from error
        text = "".join(block.text for block in response.content if block.type == "text")
        if not text.strip():
            raise CallFailed(f"empty completion (stop_reason={response.stop_reason})")
        return Completion(
            text=text,
            finish_reason=response.stop_reason,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
        )

    async def aclose(self) -> None:
        await self._client.close()
