"""One call to a model as every runner makes it: the completion, or why there is none."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from mtmcs.errors import ProviderError
from mtmcs.keys import redact
from mtmcs.models.base import CallFailed, ChatModel, ChatRequest, Completion, ItemAwareModel
from mtmcs.models.judges import Judge, JudgeRequest
from mtmcs.protocol.text import normalised

_item_aware: dict[type, bool] = {}  # per model class: a protocol check costs ~20 µs a call


async def attempt(
    model: ChatModel | Judge,
    request: ChatRequest | JudgeRequest,
    *,
    answered_before: bool,
    item: str = "",
) -> Completion | str:
    """The model's completion, or the cause of its failure; secrets redacted from both.

    A `JudgeRequest` goes to `model` as a `Judge`; a `ChatRequest` to it as a chat model.
    A model that makes recorded calls of its own (`ItemAwareModel`) is told the `item`.
    A model unreachable before any of its calls was answered raises `ProviderError`: the
    caller stops instead of recording every call as failed. Any other exception of a
    provider (a bug, an SDK surprise) is a failed call, so the run keeps going.
    """
    try:
        if isinstance(request, JudgeRequest):
            completion = await cast(Judge, model).judge(request)
        elif _is_item_aware(model):
            completion = await cast(ItemAwareModel, model).complete_item(item, request)
        else:
            completion = await cast(ChatModel, model).complete(request)
    except CallFailed as failure:
        if failure.unreachable and not answered_before:
            raise ProviderError(f"{model.name}: {failure.cause}") from failure
        return redact(failure.cause)
    except ProviderError:
        raise
    except Exception as error:
        return redact(f"unexpected {type(error).__name__}: {error}")
    return redacted(completion)


def _is_item_aware(model: ChatModel | Judge) -> bool:
    aware = _item_aware.get(type(model))
    if aware is None:
        aware = _item_aware[type(model)] = isinstance(model, ItemAwareModel)
    return aware


def redacted(completion: Completion) -> Completion:
    """`completion` with any API key removed from its text and its trace (a server may echo
    the credentials it was sent)."""
    text = redact(completion.text)
    trace = tuple((step, redact(value)) for step, value in completion.trace)
    if text == completion.text and trace == completion.trace:
        return completion
    return replace(completion, text=text, trace=trace)


def normalise(result: Completion | str) -> tuple[Completion | str, int]:
    """`result` (a completion, or a failure's cause) with invalid code points (lone UTF-16
    surrogates, which a server can send as JSON escapes) replaced by U+FFFD, and how many
    were replaced: such text can be neither stored nor printed."""
    if isinstance(result, str):
        return normalised(result)
    text, replaced = normalised(result.text)
    trace = []
    for step, value in result.trace:
        value, count = normalised(value)
        trace.append((step, value))
        replaced += count
    if not replaced:
        return result, 0
    return replace(result, text=text, trace=tuple(trace)), replaced
