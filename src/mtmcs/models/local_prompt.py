"""Messages → the prompt of a local model (transformers, vLLM): chat format, the model's
chat template, images as PIL, and short error causes.

No torch import: every local provider shares it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from mtmcs.protocol.messages import Message

CAUSE_CHARS = 300


def conversation(messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[str]]:
    """The HF chat "conversation" of some messages, and their image ids in order.

    Each message becomes `{"role", "content": [parts]}` with an `{"type": "image"}` part
    before or after the text part (the message's `image_order`) when it has an image;
    processors' chat templates render that part as the model's own image placeholder. The
    caller passes the images (see `load_image`) in the order of the returned ids.
    """
    turns: list[dict[str, Any]] = []
    image_ids: list[str] = []
    for message in messages:
        content: list[dict[str, Any]] = [{"type": "text", "text": message.text}]
        if message.image_id is not None:
            content.insert(0 if message.image_order == "before" else 1, {"type": "image"})
            image_ids.append(message.image_id)
        turns.append({"role": message.role, "content": content})
    return turns, image_ids


def load_image(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode image bytes to an RGB image, downscaled to at most `max_pixels` (aspect kept).

    Raises `ValueError` for bytes that are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"unreadable image: {error}") from error
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def render_prompt(
    processor: Any,
    messages: Sequence[Message],
    read_bytes: Callable[[str], bytes],
    max_pixels: int | None = None,
) -> tuple[str, tuple[Image.Image, ...]]:
    """The prompt text by the processor's chat template (ending with the generation prompt)
    and the messages' images, loaded in order (see `load_image`)."""
    turns, image_ids = conversation(messages)
    text = processor.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    return str(text), tuple(load_image(read_bytes(i), max_pixels) for i in image_ids)


def adds_special_tokens(tokenizer: Any, text: str) -> bool:
    """Whether tokenizing a rendered prompt should add special tokens: not when the chat
    template already wrote the BOS (a second one would change the prompt)."""
    bos = tokenizer.bos_token
    return not (bos and text.startswith(bos))


def short_cause(error: BaseException) -> str:
    """`Type: first line of the message`, at most `CAUSE_CHARS` long."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:CAUSE_CHARS]
