"""The chat-model interface every provider implements."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from mtmcs.protocol.messages import Message

CallKind = Literal["turn", "mcq", "tf", "judge", "stance"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One call: messages plus decoding settings.

    `kind` and `option_count` tell reference policies what is asked (what a judge judges
    travels apart, in `mtmcs.models.judges.JudgeRequest`). Providers that talk to a real
    model send only `messages` and the decoding settings (and the HTTP providers the call's
    kind in a header, see `call_kind`); `reasoning_effort` goes to reasoning models
    (`max_tokens` then includes the reasoning). `extra_body` holds provider arguments the
    user gave (`mtmcs run -M key=value`: each value as JSON text), which the API providers
    add to the request body.
    """

    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    kind: CallKind = "turn"
    option_count: int = 0
    extra_body: tuple[tuple[str, str], ...] = ()


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


CALL_KIND_HEADER = "X-Mtmcs-Call-Kind"
"""The HTTP header in which the SDK providers send each request's `call_kind` (servers
ignore headers they do not know; test servers route on it rather than on prompt wording)."""

_call_kind: ContextVar[str | None] = ContextVar("mtmcs_call_kind", default=None)


def provider_arguments(request: ChatRequest) -> dict[str, Any]:
    """The provider arguments of `request` (`extra_body`), decoded: what an API provider
    adds to the request body."""
    return {key: json.loads(value) for key, value in request.extra_body}


def call_kind(request: ChatRequest) -> str:
    """What kind of call `request` is: the kind the enclosing `calling_as` names (the kind
    under which the call is stored: `reward`, `selector`, `categorize`, a build stage, …),
    else the request's own `kind` (`turn`, `mcq`, `tf`, `judge`, `stance`).

    Calls a defence makes inside a call (a draft's self-check, Immune's candidates) are of
    the kind of the call they answer.
    """
    return _call_kind.get() or request.kind


@contextmanager
def calling_as(kind: str) -> Iterator[None]:
    """Every request made in this block (in this task) is of kind `kind` (see `call_kind`)."""
    token = _call_kind.set(kind)
    try:
        yield
    finally:
        _call_kind.reset(token)


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
