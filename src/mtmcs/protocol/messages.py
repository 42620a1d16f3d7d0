"""Chat messages of a dialogue and the plain-text transcript used by questions and judge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mtmcs.protocol.types import Dialogue

Role = Literal["system", "user", "assistant"]
ImagePlacement = Literal["first", "newest"]
ImageOrder = Literal["before", "after"]
IMAGE_PLACEMENTS: tuple[ImagePlacement, ...] = ("newest", "first")
IMAGE_ORDERS: tuple[ImageOrder, ...] = ("before", "after")


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; `image_id` attaches an image, placed before the text or after it."""

    role: Role
    text: str
    image_id: str | None = None
    image_order: ImageOrder = "before"


def turn_messages(
    dialogue: Dialogue,
    replies: Sequence[str],
    placement: ImagePlacement = "newest",
    order: ImageOrder = "before",
) -> tuple[Message, ...]:
    """Messages sent for the next turn: user turns so far with the model's own replies.

    `replies` holds the assistant replies to the earlier turns; the next turn is turn
    `len(replies)`. The image goes on the newest user turn (`newest`, the default, as the
    authors' wrappers do) or stays on the first one (`first`).
    """
    turn = len(replies)
    if turn >= len(dialogue.turns):
        raise ValueError(f"{dialogue.id}: all {len(dialogue.turns)} turns are answered")
    image_turn = 0 if placement == "first" else turn
    messages: list[Message] = []
    for index in range(turn + 1):
        image = dialogue.image_id if index == image_turn else None
        messages.append(Message("user", dialogue.turns[index], image, order))
        if index < turn:
            messages.append(Message("assistant", replies[index]))
    return tuple(messages)


def _labelled(label: str, text: str) -> str:
    # Continuation lines are indented, so only real labels start a line: a reply cannot
    # forge a `User R3:` turn of its own.
    return f"{label}: " + "\n".join(text.splitlines() or [""]).replace("\n", "\n    ")


def transcript_text(turns: Sequence[str], replies: Sequence[str], separator: str = "\n\n") -> str:
    """The conversation as plain text: `User R1: …`, `Assistant A1: …`, … `Assistant A3: …`.

    Each turn starts on a new line with its label; its further lines are indented. Turns
    are joined by `separator` (a blank line by default; the judge uses a single newline,
    as the authors' judge prompt does).
    """
    lines: list[str] = []
    for index, turn in enumerate(turns):
        lines.append(_labelled(f"User R{index + 1}", turn))
        if index < len(replies):
            lines.append(_labelled(f"Assistant A{index + 1}", replies[index]))
    return separator.join(lines)


def plain_transcript(turns: Sequence[str], replies: Sequence[str]) -> str:
    """The conversation as the authors' question prompts show it: `User: …` and
    `Assistant: …`, one message after the other, each on a new line."""
    lines: list[str] = []
    for index, turn in enumerate(turns):
        lines.append(f"User: {turn}")
        if index < len(replies):
            lines.append(f"Assistant: {replies[index]}")
    return "\n".join(lines)
