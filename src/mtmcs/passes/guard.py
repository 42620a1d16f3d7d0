"""`mtmcs guard` as a pass: a guard classifies each dialogue after R1, R1–R2 and R1–R3.

Every call goes through a `Caller` (the command keeps its store in the output directory),
so a rerun makes no call but those that failed. A prefix is one call, or one per policy
for ShieldGemma (`Guard.parts`); `planned_calls` counts them before the run. Records and
scores are in `mtmcs.guardrails.guard_eval`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtmcs.engine.calls import Answer, CallCounts, Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.errors import ConfigError
from mtmcs.files import write_json, write_jsonl
from mtmcs.guardrails.guard_eval import PREFIXES, GuardCall
from mtmcs.guardrails.guards import Guard, GuardFormat, GuardKind, GuardVerdict
from mtmcs.models.base import ChatRequest
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, api_key, create_model, split_name
from mtmcs.protocol.types import Dialogue

SUMMARY_FILE = "guard_summary.json"
VERDICTS_FILE = "guard_verdicts.jsonl"
STORE_FILE = "store.sqlite"


def build_guard(
    name: str,
    kind: GuardKind,
    images: ImageEncoder,
    *,
    base_url: str | None,
    guard_format: GuardFormat,
    send_images: bool | None,
    max_retries: int,
    timeout: float,
    connections: int,
    limiter: AdaptiveLimiter | None = None,
    api_key_env: str | None = None,
) -> Guard:
    """The guard for a `provider/model` name and a guard kind (backing off with `limiter`;
    its key chosen by `api_key`, from the variable `api_key_env` when given)."""
    provider, model = split_name(name)
    if provider == "openai-compatible" and not base_url:
        raise ConfigError(f"{name} needs --guard-base-url (e.g. http://localhost:8000/v1)")
    options = ProviderOptions(
        base_url,
        max_retries,
        timeout,
        connections=connections,
        on_rate_limit=limiter.throttled if limiter is not None else None,
        api_key_env=api_key_env,
    )
    if kind == "openai-moderation":
        if provider not in ("openai", "openai-compatible"):
            raise ConfigError("--guard-kind openai-moderation needs an openai/<model> guard")
        from mtmcs.models.moderation import ModerationModel

        moderation = ModerationModel(
            name,
            model,
            images,
            api_key=api_key(name, options),
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
        )
        return Guard(moderation, kind, images=send_images)
    if provider == "baseline":
        raise ConfigError("baseline models are not guards; use a served guard model")
    return Guard(create_model(name, images, options), kind, guard_format, send_images)


def guard_item(dialogue: Dialogue, prefix: int, part: str = "") -> str:
    """The store item of the guard call on a dialogue's user turns R1..R`prefix` (and
    the part, e.g. a ShieldGemma policy)."""
    item = f"{dialogue.id}/guard/R{prefix}"
    return f"{item}/{part}" if part else item


def planned_calls(guard: Guard, dialogues: Sequence[Dialogue]) -> int:
    """The calls `run_guard` makes on `dialogues` with an empty store."""
    return len(dialogues) * len(PREFIXES) * len(guard.parts)


def _verdict(guard: Guard, text: str) -> dict[str, Any]:
    """The guard's verdict in an answer, as stored (its text is the answer's)."""
    found = guard.parse(text)
    return {"unsafe": found.unsafe, "categories": list(found.categories), "score": found.score}


def _stored_verdict(answer: Answer) -> GuardVerdict:
    found = answer.parsed
    return GuardVerdict(found["unsafe"], tuple(found["categories"]), found["score"], answer.text)


async def run_guard(
    guard: Guard,
    caller: Caller,
    dialogues: Sequence[Dialogue],
    release: Callable[[str], None] | None = None,
) -> list[GuardCall]:
    """Classify every dialogue on each prefix through `caller` (the guard model's).

    A failed call is recorded on its `GuardCall`. `release(image_id)` is called once every
    call that needs an image is done, so only images in flight stay encoded.
    """
    pending = Counter(d.image_id for d in dialogues if d.image_id is not None)
    pending = Counter({image: count * len(PREFIXES) for image, count in pending.items()})

    async def part(
        dialogue: Dialogue, prefix: int, name: str, request: ChatRequest
    ) -> Answer | str:
        return await caller(
            guard_item(dialogue, prefix, name),
            request,
            parse=lambda text: _verdict(guard, text),
            kind="guard",
        )

    async def one(dialogue: Dialogue, prefix: int) -> GuardCall:
        requests = guard.requests(dialogue.turns[:prefix], dialogue.image_id)
        answers = await asyncio.gather(
            *(part(dialogue, prefix, n, r) for n, r in zip(guard.parts, requests, strict=True))
        )
        failed = next((answer for answer in answers if isinstance(answer, str)), None)
        if failed is not None:
            call = GuardCall(dialogue, prefix, None, failed)
        else:
            verdicts = [
                (name, _stored_verdict(answer))
                for name, answer in zip(guard.parts, answers, strict=True)
                if isinstance(answer, Answer)
            ]
            call = GuardCall(dialogue, prefix, guard.combine(verdicts))
        if dialogue.image_id is not None:
            pending[dialogue.image_id] -= 1
            if pending[dialogue.image_id] == 0 and release is not None:
                release(dialogue.image_id)
        return call

    return list(await asyncio.gather(*(one(d, prefix) for d in dialogues for prefix in PREFIXES)))


def classify_dialogues(
    guard: Guard,
    dialogues: Sequence[Dialogue],
    images: ImageEncoder,
    limiter: AdaptiveLimiter,
    out: Path,
) -> tuple[list[GuardCall], CallCounts]:
    """`run_guard` with its calls kept in `OUT/store.sqlite`; the calls and their counts."""
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / STORE_FILE)
    caller = Caller(guard.model, store, limiter)

    async def evaluate() -> list[GuardCall]:
        try:
            return await run_guard(guard, caller, dialogues, images.release)
        finally:
            await guard.aclose()

    try:
        calls = asyncio.run(evaluate())
    finally:
        store.close()
    return calls, caller.counts


def write_results(out: Path, calls: Sequence[GuardCall], summary: dict[str, Any]) -> None:
    """`guard_summary.json` and `guard_verdicts.jsonl` (one line per dialogue and prefix)."""
    write_json(out / SUMMARY_FILE, summary)
    write_jsonl(out / VERDICTS_FILE, (call.record() for call in calls))
