"""The chat-model interface every provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from mtmcs.protocol.messages import Message

CallKind = Literal["turn", "mcq", "tf", "judge", "stance"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One call: messages plus decoding settings.

    `kind` and `option_count` tell reference policies what is asked; `judged_replies`
    carries the assistant replies under judgement for the heuristic judge. Providers that
    talk to a real model send only `messages` and the decoding settings;
    `reasoning_effort` goes to reasoning models (`max_tokens` then includes the reasoning).
    """

    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    kind: CallKind = "turn"
    option_count: int = 0
    judged_replies: tuple[str, ...] = ()
    judged_split: str = ""
    judged_intent: str = ""


@dataclass(frozen=True, slots=True)
class Completion:
    """What a model answered.

    `trace` keeps the intermediate steps of a defended call (step name, text), e.g. a
    draft and its self-check, or reasoning hidden from the visible reply; it is stored.
    """

    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    trace: tuple[tuple[str, str], ...] = ()


REASONING_EXHAUSTED = "empty completion: hidden reasoning spent the whole token budget"
"""The cause of a reasoning model's empty reply cut off at its token limit."""


class CallFailed(Exception):
    """A call that produced no answer (after the SDK's own retries).

    `unreachable` marks connection failures: when no call of a model ever succeeded, the
    engine stops the run instead of recording every call as failed.
    """

    def __init__(self, cause: str, *, unreachable: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        self.unreachable = unreachable


class ChatModel(Protocol):
    """A model that answers chat requests."""

    name: str

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request or raise `CallFailed` (or `ProviderError` to stop the run)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class ItemAwareModel(ChatModel, Protocol):
    """A model whose answer makes further recorded calls of its own (a defence asking the
    judge): the engine calls `complete_item` with the item being answered, so that those
    calls are stored under items of their own (`<item>/reward/1`, ...)."""

    async def complete_item(self, item: str, request: ChatRequest) -> Completion:
        """Answer one request for `item` or raise `CallFailed` (or `ProviderError`)."""
        ...
