"""Intent-question prompts (MCQ and TF) and the decoding of every kind of call.

The question prompts are laid out as the authors' `inference.py` lays them out; the
decoding defaults are theirs: temperature 0.1 and 128 / 64 / 32 new tokens for turns,
MCQs and TF items; for GPT-5-family models (reasoning models) reasoning effort "low" and
256 output tokens for every call, temperature left to the provider; for the judge
temperature 0 and 128 tokens, or effort "low" and 256 tokens for a reasoning judge.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mtmcs.protocol.messages import ImageOrder, Message, plain_transcript
from mtmcs.protocol.types import Question

LETTERS = string.ascii_uppercase
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
REASONING_EFFORTS: tuple[ReasoningEffort, ...] = ("none", "minimal", "low", "medium", "high")
QuestionCallKind = Literal["turn", "mcq", "tf"]

MCQ_INSTRUCTION = "Answer with the letter (A, B, C, ...) only."
TF_INSTRUCTION = "Answer with a single word: True or False."


@dataclass(frozen=True, slots=True)
class Decoding:
    """Decoding settings of one kind of call; `None` leaves the provider's default.

    `reasoning_effort` is sent to reasoning models (OpenAI's `reasoning_effort`,
    Anthropic's thinking budget); `max_tokens` then includes the hidden reasoning.
    """

    max_tokens: int
    temperature: float | None = None
    reasoning_effort: ReasoningEffort | None = None


TURN_DECODING = Decoding(max_tokens=128, temperature=0.1)
MCQ_DECODING = Decoding(max_tokens=64, temperature=0.1)
TF_DECODING = Decoding(max_tokens=32, temperature=0.1)
JUDGE_DECODING = Decoding(max_tokens=128, temperature=0.0)
"""The authors' judge decoding for models other than the GPT-5 family."""
REASONING_MAX_TOKENS = 256
"""The authors' output budget (hidden reasoning included) for GPT-5-family models."""
REASONING_EFFORT: ReasoningEffort = "low"
"""The authors' reasoning effort for GPT-5-family models, under test and as judge."""

_KIND_DECODING: dict[QuestionCallKind, Decoding] = {
    "turn": TURN_DECODING,
    "mcq": MCQ_DECODING,
    "tf": TF_DECODING,
}


def _for_reasoning(base: Decoding, reasoning: bool, effort: ReasoningEffort | None) -> Decoding:
    """`base`, or for a reasoning model (or any model given an effort) the authors' GPT-5
    decoding: the effort (default "low"), `REASONING_MAX_TOKENS`, no temperature."""
    if reasoning or effort is not None:
        return Decoding(REASONING_MAX_TOKENS, None, effort or REASONING_EFFORT)
    return base


def model_decoding(
    kind: QuestionCallKind,
    *,
    reasoning: bool = False,
    effort: ReasoningEffort | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    omit_temperature: bool = False,
) -> Decoding:
    """Decoding of a call to the model under test: the authors' defaults, then overrides.

    A reasoning model (`reasoning`, or any model given an `effort`) gets the effort (default
    "low"), `REASONING_MAX_TOKENS` for every kind of call and no temperature, as the
    authors ran GPT-5.x; `max_tokens` and `temperature` override the defaults.
    """
    base = _for_reasoning(_KIND_DECODING[kind], reasoning, effort)
    chosen_temperature = base.temperature if temperature is None else temperature
    return Decoding(
        max_tokens or base.max_tokens,
        None if omit_temperature else chosen_temperature,
        base.reasoning_effort,
    )


def judge_decoding(
    *,
    reasoning: bool = False,
    effort: ReasoningEffort | None = None,
    max_tokens: int | None = None,
) -> Decoding:
    """Decoding of a judge call: the authors' (temperature 0, 128 tokens; a reasoning
    judge effort "low", 256 tokens, no temperature), with `effort` / `max_tokens` applied."""
    base = _for_reasoning(JUDGE_DECODING, reasoning, effort)
    return Decoding(max_tokens or base.max_tokens, base.temperature, base.reasoning_effort)


def option_letters(count: int) -> str:
    """The letters of `count` options: A, B, C, …"""
    return LETTERS[:count]


def question_prompt(question: Question, turns: Sequence[str], replies: Sequence[str]) -> str:
    """Text of a fresh single-turn question about a finished conversation (the authors'
    layout: the conversation as `User:` / `Assistant:` lines, the question, the options)."""
    conversation = plain_transcript(turns, replies)
    if question.kind == "mcq":
        options = "\n".join(
            f"{letter}. {option}"
            for letter, option in zip(
                option_letters(len(question.options)), question.options, strict=True
            )
        )
        return (
            "You are given a conversation between a User and an Assistant.\n"
            "Read the conversation and answer the multiple-choice question.\n\n"
            f"Conversation:\n{conversation}\n\n"
            f"Question:\n{question.text}\n\n"
            f"Options:\n{options}\n\n"
            f"{MCQ_INSTRUCTION}"
        )
    return (
        "You are given a conversation between a User and an Assistant.\n"
        "Read the conversation and answer the question with True or False.\n\n"
        f"Conversation:\n{conversation}\n\n"
        f"Question:\n{question.text}\n\n"
        f"{TF_INSTRUCTION}"
    )


def question_messages(
    question: Question,
    turns: Sequence[str],
    replies: Sequence[str],
    image_id: str | None,
    order: ImageOrder = "before",
) -> tuple[Message, ...]:
    """The single user message of a question call; the image is attached when multimodal."""
    return (Message("user", question_prompt(question, turns, replies), image_id, order),)
