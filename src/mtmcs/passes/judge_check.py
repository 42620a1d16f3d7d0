"""`mtmcs judge-check` as a pass: the judge's verdicts on every case, clean and attacked.

The cases, attacks, requests and report are in `mtmcs.scoring.injection`; this module
makes the calls, through a store (a rerun makes no call but those that failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtmcs.engine.calls import Caller
from mtmcs.engine.judging import judge_dialogue
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_judge, is_reasoning_model
from mtmcs.protocol.prompts import JUDGE_DECODING, Decoding, judge_decoding
from mtmcs.scoring.injection import (
    ATTACKS,
    BASE_CASES,
    Attack,
    Case,
    JudgeCheckReport,
    Judged,
    attacked,
    judged_dialogue,
)


def check_item(case: Case, attack: Attack | None) -> str:
    """The store item of one judge call: `clean/<case>` or `<attack>/<case>`."""
    return f"{'clean' if attack is None else attack.name}/{case.name}"


async def judge_check(
    caller: Caller,
    cases: Sequence[Case] = BASE_CASES,
    attacks: Sequence[Attack] = ATTACKS,
    *,
    decoding: Decoding = JUDGE_DECODING,
) -> JudgeCheckReport:
    """Judge every case clean, then under every attack, through `caller` (the judge's), with
    the judge's `decoding`, as the benchmark judges a dialogue (`judge_dialogue`).

    A failed call is recorded in the report; a judge unreachable before any answer
    (`ProviderError`) cancels the remaining calls and propagates.
    """

    async def one(case: Case, attack: Attack | None, payload: str | None = None) -> Judged:
        target = case if attack is None else attacked(case, attack, payload=payload)
        label = None if attack is None else attack.name
        result = await judge_dialogue(
            caller, check_item(case, attack), judged_dialogue(target), decoding
        )
        score = None if result.verdict is None else result.verdict.score
        return Judged(case.name, label, score, result.raw, result.error, result.masked_raw)

    clean = await _all([one(case, None) for case in cases])
    own = {judged.case: judged.raw for judged in clean if judged.score is not None}
    attacks_made = await _all(
        [
            one(case, attack, own.get(case.name) if attack.pastes_clean_verdict else None)
            for attack in attacks
            for case in cases
        ]
    )
    return JudgeCheckReport(
        judge=caller.name,
        cases=tuple(cases),
        attacks=tuple(attacks),
        clean=tuple(clean),
        attacked=tuple(attacks_made),
    )


async def _all(calls: Sequence[Coroutine[Any, Any, Judged]]) -> list[Judged]:
    """Every call's result; on an error (a judge unreachable) the others are cancelled."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def check_judge(name: str, options: ProviderOptions, store_path: Path) -> JudgeCheckReport:
    """`judge_check` of the judge `name` (text only: it sees captions, no images), with
    `options.connections` calls in flight and its calls kept in the store at `store_path`."""
    limiter = AdaptiveLimiter(options.connections)
    options = replace(options, on_rate_limit=limiter.throttled)
    model = create_judge(name, ImageEncoder(lambda image_id: b""), options)
    store = Store(store_path)

    async def check() -> JudgeCheckReport:
        try:
            return await judge_check(
                Caller(model, store, limiter),
                decoding=judge_decoding(reasoning=is_reasoning_model(name)),
            )
        finally:
            await model.aclose()

    try:
        return asyncio.run(check())
    finally:
        store.close()
