"""Intent-question prompts (MCQ and TF) and the authors' decoding defaults."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from mtmcs.protocol.messages import Message, transcript_text
from mtmcs.protocol.types import Question

LETTERS = string.ascii_uppercase


@dataclass(frozen=True, slots=True)
class Decoding:
    """Decoding settings of one kind of call; `None` leaves the provider's default."""

    max_tokens: int
    temperature: float | None = None


TURN_DECODING = Decoding(max_tokens=128, temperature=0.1)
MCQ_DECODING = Decoding(max_tokens=64, temperature=0.1)
TF_DECODING = Decoding(max_tokens=32, temperature=0.1)
JUDGE_DECODING = Decoding(max_tokens=1024, temperature=None)


def option_letters(count: int) -> str:
    """The letters of `count` options: A, B, C, …"""
    return LETTERS[:count]


def question_prompt(question: Question, turns: Sequence[str], replies: Sequence[str]) -> str:
    """Text of a fresh single-turn question about a finished conversation."""
    transcript = transcript_text(turns, replies)
    header = f"Here is a conversation between a user and an AI assistant.\n\n{transcript}\n\n"
    if question.kind == "mcq":
        options = "\n".join(
            f"{letter}. {option}"
            for letter, option in zip(
                option_letters(len(question.options)), question.options, strict=True
            )
        )
        return (
            f"{header}Question: {question.text}\n{options}\n\n"
            "Answer with the letter of the correct option only."
        )
    return (
        f"{header}Statement: {question.text}\n\n"
        "Is this statement true or false? Answer with True or False only."
    )


def question_messages(
    question: Question, turns: Sequence[str], replies: Sequence[str], image_id: str | None
) -> tuple[Message, ...]:
    """The single user message of a question call; the image is attached when multimodal."""
    return (Message("user", question_prompt(question, turns, replies), image_id),)


def question_decoding(question: Question) -> Decoding:
    """The authors' token limits: 64 for an MCQ, 32 for a TF item."""
    return MCQ_DECODING if question.kind == "mcq" else TF_DECODING
