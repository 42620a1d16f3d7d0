"""What every defence shares: the `Defence` class, the registry of defences by name, the
judge's interface for a defence, and helpers over a request's messages."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from mtmcs.data.defence_texts import DefenceText, TextChoice
from mtmcs.models.base import CallKind, ChatModel, ChatRequest, Completion
from mtmcs.models.judges import JudgeRequest
from mtmcs.protocol.messages import Message, transcript_text
from mtmcs.protocol.prompts import Decoding

DefenceName = Literal["dpp", "adashield-s", "adashield-a", "self-reflection", "cot", "immune"]
Scope = Literal["all", "turns"]
DefenceRole = Literal["model", "reward", "selector"]
"""Who a defended call calls: the model under test, Immune's reward model, AdaShield-A's
selector (each counted apart in a run's summary and plan)."""

UNFINISHED = "unfinished"
"""The finish reason of a defended answer the model did not finish (CoT: the reasoning cut
off, or nothing after it): its text is kept as the model wrote it and stored, but never
read as an answer (a question is unparseable) and the run counts it (`unfinished`)."""


@dataclass(frozen=True, slots=True)
class AnswerCalls:
    """What one defended answer costs: calls by role, and how many of them run one after
    another (the answer's share of the critical path)."""

    by_role: dict[DefenceRole, int] = field(default_factory=lambda: {"model": 1})
    in_sequence: int = 1


class AskJudge(Protocol):
    """Asks the run's judge for `item` (stored under it as `kind`): the answer's text, or
    `CallFailed` with the cause (which fails the defended call)."""

    async def __call__(self, item: str, request: JudgeRequest, *, kind: str | None = None) -> str:
        """The judge's answer to `request`."""
        ...


class Defence:
    """One defence: how a defended call is answered. Subclasses set `name` and implement
    `answer`; `DEFENCE_CLASSES` maps each name to its class.

    `inner` is the model under test; `text` is the defence's prompt (DPP, AdaShield-S) and
    where it comes from (None: ours); `judge` asks the run's judge, `judge_selects` makes
    AdaShield-A ask it, with `judge_decoding` (the run's judge decoding) as its base.
    """

    name: ClassVar[DefenceName]

    def __init__(
        self,
        inner: ChatModel,
        *,
        text: DefenceText | None = None,
        judge: AskJudge | None = None,
        judge_selects: bool = False,
        judge_decoding: Decoding | None = None,
    ) -> None:
        self.inner = inner
        self.text = text
        self.judge = judge
        self.judge_selects = judge_selects
        self.judge_decoding = judge_decoding

    @classmethod
    def needs_judge(cls, judge_selects: bool) -> bool:
        """Whether this defence asks the run's judge (so needs one)."""
        return False

    @classmethod
    def text_for(cls, choice: TextChoice, source: Path | None) -> DefenceText | None:
        """The text this defence adds for `--defense-text` (`original`: its authors', read
        from `source` or fetched; `ours`; a file's), or None when it adds none."""
        return None

    @classmethod
    def calls_per_answer(cls, kind: CallKind, *, judge_selects: bool) -> AnswerCalls:
        """The calls one defended call of `kind` makes (the plan counts them; the run
        counts the calls actually made): by default one call of the model."""
        return AnswerCalls()

    async def answer(self, item: str, request: ChatRequest) -> Completion:
        """The defended answer to `request`; the judge's calls are stored under `item/…`;
        intermediate steps go in the completion's `trace`."""
        raise NotImplementedError


DEFENCE_CLASSES: dict[DefenceName, type[Defence]] = {}
"""Every defence by name (`--defense`)."""


def register(cls: type[Defence]) -> type[Defence]:
    """Class decorator: make `cls` the defence of its `name`."""
    DEFENCE_CLASSES[cls.name] = cls
    return cls


def with_user_text(messages: tuple[Message, ...], index: int, text: str) -> tuple[Message, ...]:
    """`messages` with the text of message `index` replaced."""
    updated = list(messages)
    updated[index] = replace(messages[index], text=text)
    return tuple(updated)


def last_user(messages: tuple[Message, ...]) -> int:
    """The index of the newest user message."""
    return max(i for i, m in enumerate(messages) if m.role == "user")


def conversation_text(messages: tuple[Message, ...]) -> str:
    """The request's conversation as the plain-text transcript questions use."""
    turns = [m.text for m in messages if m.role == "user"]
    replies = [m.text for m in messages if m.role == "assistant"]
    return transcript_text(turns, replies)


def first_image(messages: tuple[Message, ...]) -> str | None:
    """The id of the first image in the request, if any."""
    return next((m.image_id for m in messages if m.image_id is not None), None)
