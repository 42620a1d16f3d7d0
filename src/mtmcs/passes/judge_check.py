"""`mtmcs judge-check` as a pass: the judge's verdicts on every case, clean and attacked.

The cases, attacks, requests and report are in `mtmcs.scoring.injection`; this module
makes the calls, through a store (a rerun makes no call but those that failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mtmcs.engine.calls import Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_judge, is_reasoning_model
from mtmcs.protocol.judge import parse_verdict
from mtmcs.protocol.prompts import JUDGE_DECODING, Decoding, judge_decoding
from mtmcs.scoring.injection import (
    ATTACKS,
    BASE_CASES,
    Attack,
    Case,
    JudgeCheckReport,
    Judged,
    attacked,
    judge_request,
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
    """Judge every case clean and under every attack through `caller` (the judge's), with
    the judge's `decoding`.

    A failed call is recorded in the report; a judge unreachable before any answer
    (`ProviderError`) cancels the remaining calls and propagates.
    """

    async def one(case: Case, attack: Attack | None) -> Judged:
        request = judge_request(case if attack is None else attacked(case, attack), decoding)
        judged = "\n".join(request.replies)

        def score(text: str) -> int | None:
            verdict = parse_verdict(text, judged)
            return None if verdict is None else verdict.score

        label = None if attack is None else attack.name
        answer = await caller(check_item(case, attack), request, parse=score)
        if isinstance(answer, str):
            return Judged(case.name, label, None, None, answer)
        return Judged(case.name, label, answer.parsed, answer.text)

    plan: list[tuple[Case, Attack | None]] = [(case, None) for case in cases]
    plan += [(case, attack) for attack in attacks for case in cases]
    tasks = [asyncio.ensure_future(one(case, attack)) for case, attack in plan]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return JudgeCheckReport(
        judge=caller.name,
        cases=tuple(cases),
        attacks=tuple(attacks),
        clean=tuple(results[: len(cases)]),
        attacked=tuple(results[len(cases) :]),
    )


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
