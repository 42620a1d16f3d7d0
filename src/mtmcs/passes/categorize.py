"""The LLM method of `mtmcs categorize`: one call per unsafe intent the mapping lacks.

Calls go through a store (the command keeps it beside the mapping file), so a rerun makes
no call but those that failed. The mapping file, the taxonomy, the prompt and the parser
are in `mtmcs.scoring`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from mtmcs.engine.calls import Answer, Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.errors import ConfigError
from mtmcs.models.base import ChatRequest
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_model, split_name
from mtmcs.protocol.judge import DEFAULT_JUDGE
from mtmcs.scoring.categories import (
    CATEGORIZE_DECODING,
    CategoryMap,
    CategoryParseError,
    categorize_prompt,
    parse_category,
)
from mtmcs.scoring.categorize import pending_intents


def categorize_item(intent: str) -> str:
    """The store item of an intent's categorize call."""
    return f"categorize/{intent}"


def _read(text: str) -> dict[str, str]:
    """The category of an answer, or why it is refused (stored as it is)."""
    try:
        return {"category": parse_category(text)}
    except CategoryParseError as error:
        return {"unparseable": str(error)}


async def categorize_with_model(
    intents: Iterable[str], caller: Caller, previous: CategoryMap
) -> CategoryMap:
    """`previous` extended by one LLM call per intent it lacks, through `caller`.

    A failed call or an unparseable reply is recorded under `errors`, never as a category;
    the failed call is made again next time, the unparseable reply is read again from the
    store (delete the store to ask again).
    """
    pending = pending_intents(intents, previous)

    async def ask(intent: str) -> Answer | str:
        request = ChatRequest(
            categorize_prompt(intent),
            CATEGORIZE_DECODING.max_tokens,
            CATEGORIZE_DECODING.temperature,
        )
        return await caller(categorize_item(intent), request, parse=_read, kind="categorize")

    answers = await asyncio.gather(*(ask(intent) for intent in pending))
    assignments = dict(previous.assignments)
    retried = set(pending)
    errors = {k: v for k, v in previous.errors.items() if k not in retried}
    for intent, answer in zip(pending, answers, strict=True):
        if isinstance(answer, str):
            errors[intent] = f"call failed: {answer}"
        elif "category" in answer.parsed:
            assignments[intent] = answer.parsed["category"]
        else:
            errors[intent] = f"unparseable reply: {answer.parsed['unparseable']}"
    return previous.model_copy(update={"assignments": assignments, "errors": errors})


def categorize_with_llm(
    intents: Iterable[str],
    previous: CategoryMap,
    name: str,
    options: ProviderOptions,
    store_path: Path,
) -> CategoryMap:
    """`categorize_with_model` with the LLM `name` (text only, `options.connections` calls
    in flight), its calls kept in the store at `store_path`."""
    if split_name(name)[0] == "baseline":
        raise ConfigError(f"{name} cannot categorize: choose an LLM, e.g. {DEFAULT_JUDGE}")
    limiter = AdaptiveLimiter(options.connections)
    options = replace(options, on_rate_limit=limiter.throttled)
    model = create_model(name, ImageEncoder(lambda image_id: b""), options)  # text only
    store = Store(store_path)

    async def categorize() -> CategoryMap:
        try:
            return await categorize_with_model(intents, Caller(model, store, limiter), previous)
        finally:
            await model.aclose()

    try:
        return asyncio.run(categorize())
    finally:
        store.close()
