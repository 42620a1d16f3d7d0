"""OpenAI and OpenAI-compatible servers (vLLM, SGLang, Ollama, llama.cpp, …) via `openai`."""

from __future__ import annotations

from typing import Any, Literal

import openai

from mtmcs.errors import ProviderError
from mtmcs.models.base import CallFailed, ChatRequest, Completion
from mtmcs.models.images import ImageEncoder
from mtmcs.protocol.messages import Message

TokenParameter = Literal["max_tokens", "max_completion_tokens"]


def openai_content(message: Message, images: ImageEncoder) -> str | list[dict[str, Any]]:
    """A message's content: plain text, or an image part followed by a text part."""
    if message.image_id is None:
        return message.text
    image = images(message.image_id)
    return [
        {"type": "image_url", "image_url": {"url": image.data_url}},
        {"type": "text", "text": message.text},
    ]


class OpenAIChat:
    """Chat completions through the official SDK, with its bounded retries and back-off."""

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
    ) -> None:
        self.name = name
        self._model = model
        self._images = images
        self._base_url = base_url or "the OpenAI API"
        self._token_parameter = token_parameter
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    async def complete(self, request: ChatRequest) -> Completion:
        arguments: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": message.role, "content": openai_content(message, self._images)}
                for message in request.messages
            ],
            self._token_parameter: request.max_tokens,
        }
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.seed is not None:
            arguments["seed"] = request.seed
        try:
            response = await self._client.chat.completions.create(**arguments)
        except openai.APIConnectionError as error:
            raise CallFailed(f"cannot reach {self._base_url}: {error}", unreachable=True) from error
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise ProviderError(
                f"{self.name}: the server at {self._base_url} refused the credentials "
                f"(HTTP {error.status_code}); check the API key"
            ) from error
        except openai.NotFoundError as error:
            raise ProviderError(
                f"{self.name}: model {self._model!r} not found at {self._base_url}"
            ) from error
        except openai.APIStatusError as error:
            raise CallFailed(f"HTTP {error.status_code}: {error.message}") from error
        except openai.APIError as error:
            raise CallFailed(f"{type(error).__name__}: {error}") from error
        if not response.choices:
            raise CallFailed("the response has no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        if not text.strip():
            raise CallFailed(f"empty completion (finish_reason={choice.finish_reason})")
        usage = response.usage
        return Completion(
            text=text,
            finish_reason=choice.finish_reason,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
        )

    async def aclose(self) -> None:
        await self._client.close()
