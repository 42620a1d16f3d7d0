"""Our chat messages (`mtmcs.protocol.messages.Message`) as inspect_ai's, the image where ours is.

A message with an image becomes an image part and a text part in the message's
`image_order`, as `mtmcs.models.openai_chat` sends it; the image is the data URL our
`ImageEncoder` makes (the same bytes `mtmcs run` sends).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    Content,
    ContentImage,
    ContentText,
    GenerateConfig,
)

from mtmcs.protocol.messages import Message
from mtmcs.protocol.prompts import Decoding

ImageUrl = Callable[[str], str]
"""An image id → its `data:` URL."""


def inspect_content(message: Message, image_url: ImageUrl | None) -> str | list[Content]:
    """A message's content: its text, or its image and text parts in its `image_order`."""
    if message.image_id is None:
        return message.text
    if image_url is None:
        raise ValueError(f"message with image {message.image_id} but no image source")
    image = ContentImage(image=image_url(message.image_id))
    text = ContentText(text=message.text)
    return [image, text] if message.image_order == "before" else [text, image]


def inspect_messages(
    messages: Sequence[Message], image_url: ImageUrl | None = None
) -> list[ChatMessage]:
    """`messages` as inspect chat messages (system, user with images, assistant)."""
    converted: list[ChatMessage] = []
    for message in messages:
        if message.role == "system":
            converted.append(ChatMessageSystem(content=message.text))
        elif message.role == "assistant":
            converted.append(ChatMessageAssistant(content=message.text))
        else:
            converted.append(ChatMessageUser(content=inspect_content(message, image_url)))
    return converted


def generate_config(decoding: Decoding) -> GenerateConfig:
    """Our decoding of a kind of call as inspect's generate settings (unset ones left out)."""
    return GenerateConfig(
        max_tokens=decoding.max_tokens,
        temperature=decoding.temperature,
        reasoning_effort=decoding.reasoning_effort,
    )
