"""The optional turn-level pass: a judge classifies every assistant turn of a finished run.

One judge call per dialogue whose three turns were answered, recorded in the run's own
store (so a rerun makes no call), parsed strictly; the stances go to
`RUN_DIR/turn_stances.jsonl`. Unparseable answers and failed calls are counted and
reported, never written as stances.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtmcs.engine.attempt import attempt
from mtmcs.engine.store import CallRecord, Store, request_key
from mtmcs.errors import ProviderError
from mtmcs.models.base import ChatModel, ChatRequest
from mtmcs.protocol.stances import (
    STANCE_DECODING,
    Stance,
    StanceParseError,
    parse_stances,
    stance_prompt,
)
from mtmcs.scoring.records import read_dialogue_records
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.stance_summary import STANCES_FILE

STORE_FILE = "store.sqlite"


def stance_item(dialogue_id: str) -> str:
    """The store item of a dialogue's stance call."""
    return f"{dialogue_id}:stances"


@dataclass
class StanceResult:
    """What a stance pass over one run did.

    `stances`: the classified dialogues (as written); `skipped`: dialogues not classified
    because a turn failed in the run (id → the run's error); `unparseable`: id → why the
    judge's answer was refused; `failed`: id → cause of the failed call (retried next time).
    """

    run_dir: Path
    judge: str
    stances: dict[str, tuple[Stance, ...]] = field(default_factory=dict)
    made: int = 0
    cached: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    unparseable: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """The stance file written."""
        return self.run_dir / STANCES_FILE


def stance_request(record: Mapping[str, Any]) -> ChatRequest:
    """The judge request classifying the turns of one finished dialogue record."""
    replies = tuple(record["replies"])
    return ChatRequest(
        stance_prompt(record["turns"], replies),
        STANCE_DECODING.max_tokens,
        STANCE_DECODING.temperature,
        kind="stance",
        judged_replies=replies,
        judged_split=record["split"],
        judged_intent=record["intent"],
    )


async def classify_run(
    run_dir: Path,
    judge: ChatModel,
    concurrency: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> StanceResult:
    """Classify the turns of every finished dialogue of a run and write `turn_stances.jsonl`.

    At most `concurrency` calls at once; `on_progress(done, total)` after each dialogue.
    A judge that cannot be reached before any call succeeded stops the pass
    (`ProviderError`); other failures are counted per dialogue.
    """
    records = read_dialogue_records(run_dir)
    result = StanceResult(run_dir, judge.name)
    finished = []
    for record in records:
        if record.get("error") is not None or len(record["replies"]) != len(record["turns"]):
            result.skipped[record["id"]] = str(record.get("error") or "unanswered turns")
        else:
            finished.append(record)
    store = Store(run_dir / STORE_FILE)
    slots = asyncio.Semaphore(concurrency)
    done = 0

    async def classify(record: Mapping[str, Any]) -> None:
        nonlocal done
        await _classify(record, judge, store, slots, result)
        done += 1
        if on_progress is not None:
            on_progress(done, len(finished))

    try:
        async with asyncio.TaskGroup() as group:
            for record in finished:
                group.create_task(classify(record))
    except* ProviderError as errors:
        raise errors.exceptions[0] from None
    finally:
        store.close()
    RunDir(run_dir).write_stances(
        (
            {"id": record["id"], "stances": list(result.stances[record["id"]]), "judge": judge.name}
            for record in finished
            if record["id"] in result.stances
        ),
    )
    return result


def _accept(result: StanceResult, dialogue: str, output: str, replies: list[str]) -> Any:
    """Parse an answer into `result` (stances or the reason it was refused); the stored form."""
    try:
        stances = parse_stances(output, len(replies), replies)
    except StanceParseError as error:
        result.unparseable[dialogue] = str(error)
        return None
    result.stances[dialogue] = stances
    return list(stances)


async def _classify(
    record: Mapping[str, Any],
    judge: ChatModel,
    store: Store,
    slots: asyncio.Semaphore,
    result: StanceResult,
) -> None:
    """One dialogue: its answer from the store or the judge, recorded and parsed."""
    dialogue, replies = record["id"], record["replies"]
    request = stance_request(record)
    item = stance_item(dialogue)
    key = request_key(judge.name, item, request)
    cached = store.get(key)
    if cached is not None and cached.output is not None:
        result.cached += 1
        _accept(result, dialogue, cached.output, replies)
        return
    async with slots:
        started = time.perf_counter()
        answer = await attempt(judge, request, answered_before=result.made > 0)
        latency = time.perf_counter() - started
    if isinstance(answer, str):
        result.failed[dialogue] = answer
        store.put(CallRecord.failed(key, item, judge.name, request, answer, latency))
        return
    result.made += 1
    parsed = _accept(result, dialogue, answer.text, replies)
    store.put(CallRecord.answered(key, item, judge.name, request, answer, parsed, latency))
