"""The OpenAI moderation endpoint as a chat model, so that a moderation guard is called,
stored and resumed like every other model.

The request's user messages are sent as one text part (their texts joined by blank lines),
then the image of the first message that has one; the answer's text is the moderation
response as JSON (read by `mtmcs.guardrails.guards.parse_moderation`).
"""

from __future__ import annotations

import json
from typing import Any

import openai

from mtmcs.keys import remember_secret
from mtmcs.models.base import ChatRequest, Completion
from mtmcs.models.images import ImageEncoder
from mtmcs.models.transport import sdk_errors


class ModerationModel:
    """`omni-moderation-latest` (or another moderation model) of the OpenAI API (the key
    chosen by `mtmcs.models.registry.api_key`); the base URL may be overridden."""

    def __init__(
        self,
        name: str,
        model: str,
        images: ImageEncoder,
        *,
        api_key: str,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float = 120.0,
    ) -> None:
        remember_secret(api_key)  # masked in everything printed or stored
        self.name = name
        self._model = model
        self._images = images
        self._where = base_url or "api.openai.com"
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    def _input(self, request: ChatRequest) -> list[dict[str, Any]]:
        users = [m for m in request.messages if m.role == "user"]
        parts: list[dict[str, Any]] = [{"type": "text", "text": "\n\n".join(m.text for m in users)}]
        image = next((m.image_id for m in users if m.image_id is not None), None)
        if image is not None:
            url = self._images(image).data_url.decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return parts

    async def complete(self, request: ChatRequest) -> Completion:
        with sdk_errors(openai, self.name, self._model, self._where):
            response = await self._client.moderations.create(
                model=self._model,
                input=self._input(request),  # type: ignore[arg-type]
            )
        data = response.model_dump()
        return Completion(json.dumps(data, ensure_ascii=False, sort_keys=True))

    async def aclose(self) -> None:
        await self._client.close()
