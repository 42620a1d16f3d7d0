"""One call to a model as every runner makes it: the completion, or why there is none."""

from __future__ import annotations

from mtmcs.errors import ProviderError, redact
from mtmcs.models.base import CallFailed, ChatModel, ChatRequest, Completion


async def attempt(
    model: ChatModel, request: ChatRequest, *, answered_before: bool
) -> Completion | str:
    """The model's completion, or the cause of its failure (secrets redacted).

    A model unreachable before any of its calls was answered raises `ProviderError`: the
    caller stops instead of recording every call as failed. Any other exception of a
    provider (a bug, an SDK surprise) is a failed call, so the run keeps going.
    """
    try:
        return await model.complete(request)
    except CallFailed as failure:
        if failure.unreachable and not answered_before:
            raise ProviderError(f"{model.name}: {failure.cause}") from failure
        return redact(failure.cause)
    except ProviderError:
        raise
    except Exception as error:
        return redact(f"unexpected {type(error).__name__}: {error}")
