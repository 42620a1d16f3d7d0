"""The judge interface, apart from the chat-model interface.

A judge is given what it judges (`JudgedDialogue`: split, modality, intent, turns,
replies, caption, rubric) together with the prompt an LLM judge is sent (`JudgeRequest`),
and returns the raw verdict text as a `Completion`, which the caller stores and parses.
The prompt is also what the call is stored under, so every judge of a name shares its
store keys. `LLMJudge` sends the prompt to a `ChatModel`; the keyword heuristic
(`mtmcs.models.baseline.KeywordJudge`) reads the replies directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mtmcs.models.base import ChatModel, ChatRequest, Completion
from mtmcs.protocol.judge import judge_messages
from mtmcs.protocol.prompts import Decoding
from mtmcs.protocol.rubrics import Rubric
from mtmcs.protocol.types import Dialogue


@dataclass(frozen=True, slots=True)
class JudgedDialogue:
    """What a judge judges: a dialogue's cell, its user turns and the assistant replies;
    `caption` (multimodal dialogues, for a text-only judge) and `rubric` for verdicts."""

    split: str
    modality: str
    intent: str
    turns: tuple[str, ...]
    replies: tuple[str, ...]
    caption: str | None = None
    rubric: Rubric | None = None


def judged_dialogue(
    dialogue: Dialogue,
    replies: tuple[str, ...],
    captions: Mapping[int, str] | None,
    rubric: Rubric,
) -> JudgedDialogue:
    """`dialogue` with its `replies` as a judge reads it, under `rubric`: a multimodal
    dialogue's image as its row's caption (when `captions` are given)."""
    caption = None
    if dialogue.modality == "multimodal" and captions is not None:
        caption = captions[dialogue.row_id]
    return JudgedDialogue(
        dialogue.split,
        dialogue.modality,
        dialogue.intent,
        tuple(dialogue.turns),
        replies,
        caption,
        rubric,
    )


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One question to a judge: the prompt an LLM judge is sent (its `kind` says what is
    asked: `judge` for a verdict or a reward, `stance` for turn stances) and, when the
    question is about a dialogue, that dialogue."""

    prompt: ChatRequest
    dialogue: JudgedDialogue | None = None

    @property
    def replies(self) -> tuple[str, ...]:
        """The assistant replies under judgement (none for a free question)."""
        return () if self.dialogue is None else self.dialogue.replies


def verdict_request(dialogue: JudgedDialogue, decoding: Decoding) -> JudgeRequest:
    """The benchmark's judge question for `dialogue` (which must carry its rubric): the
    rubric as system message, the fenced caption and transcript as user message."""
    if dialogue.rubric is None:
        raise ValueError("a verdict needs the dialogue's rubric")
    messages = judge_messages(dialogue.rubric, dialogue.turns, dialogue.replies, dialogue.caption)
    prompt = ChatRequest(
        messages,
        decoding.max_tokens,
        decoding.temperature,
        reasoning_effort=decoding.reasoning_effort,
        kind="judge",
    )
    return JudgeRequest(prompt, dialogue)


@runtime_checkable
class Judge(Protocol):
    """Judges dialogues: the LLM judge, the keyword heuristic, a future classifier."""

    name: str

    async def judge(self, request: JudgeRequest) -> Completion:
        """The raw verdict text, or raise `CallFailed` (or `ProviderError` to stop)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LLMJudge:
    """A chat model as judge: sends each question's prompt; named as the model, so its
    calls are stored under the same keys as the model's."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.name = model.name

    async def judge(self, request: JudgeRequest) -> Completion:
        return await self.model.complete(request.prompt)

    async def aclose(self) -> None:
        await self.model.aclose()


def as_judge(model: ChatModel | Judge) -> Judge:
    """`model` as a judge: a `Judge` as it is, a chat model as an `LLMJudge`."""
    return model if isinstance(model, Judge) else LLMJudge(model)
