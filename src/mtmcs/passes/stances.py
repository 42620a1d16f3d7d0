"""The optional turn-level pass: a judge classifies every assistant turn of a finished run.

One judge call per dialogue whose three turns were answered, through the run's own store
(so a rerun makes no call), parsed strictly; the stances go to
`RUN_DIR/turn_stances.jsonl`. Unparseable answers and failed calls are counted and
reported, never written as stances.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtmcs.engine.calls import Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.errors import ProviderError
from mtmcs.models.base import ChatModel, ChatRequest
from mtmcs.models.judges import Judge, JudgedDialogue, JudgeRequest
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


def stance_request(record: Mapping[str, Any]) -> JudgeRequest:
    """The judge question classifying the turns of one finished dialogue record."""
    turns, replies = tuple(record["turns"]), tuple(record["replies"])
    prompt = ChatRequest(
        stance_prompt(turns, replies),
        STANCE_DECODING.max_tokens,
        STANCE_DECODING.temperature,
        kind="stance",
    )
    dialogue = JudgedDialogue(
        record["split"], record.get("modality", ""), record["intent"], turns, replies
    )
    return JudgeRequest(prompt, dialogue)


async def classify_run(
    run_dir: Path,
    judge: Judge | ChatModel,
    limiter: AdaptiveLimiter | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> StanceResult:
    """Classify the turns of every finished dialogue of a run and write `turn_stances.jsonl`.

    `judge` is a `Judge` (a chat model is asked as an `LLMJudge`). Calls go through the
    run's store, under `limiter` (default: 16 connections; give the
    judge's provider `on_rate_limit=limiter.throttled`); `on_progress(done, total)` after
    each dialogue.
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
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(finished))

    caller = Caller(judge, store, limiter or AdaptiveLimiter(16), on_call=advance)
    try:
        async with asyncio.TaskGroup() as group:
            for record in finished:
                group.create_task(_classify(record, caller, result))
    except* ProviderError as errors:
        raise errors.exceptions[0] from None
    finally:
        store.close()
    result.made, result.cached = caller.counts.made, caller.counts.cached
    RunDir(run_dir).write_stances(
        (
            {"id": record["id"], "stances": list(result.stances[record["id"]]), "judge": judge.name}
            for record in finished
            if record["id"] in result.stances
        ),
    )
    return result


def _read(output: str, replies: list[str]) -> list[Stance] | str:
    """The stances of an answer, or why it is refused (both stored as they are)."""
    try:
        return list(parse_stances(output, len(replies), replies))
    except StanceParseError as error:
        return str(error)


async def _classify(record: Mapping[str, Any], caller: Caller, result: StanceResult) -> None:
    """One dialogue: its answer from the store or the judge, parsed into `result`."""
    dialogue, replies = record["id"], record["replies"]
    answer = await caller(
        stance_item(dialogue),
        stance_request(record),
        parse=lambda output: _read(output, replies),
    )
    if isinstance(answer, str):
        result.failed[dialogue] = answer
    elif isinstance(answer.parsed, str):
        result.unparseable[dialogue] = answer.parsed
    else:
        result.stances[dialogue] = tuple(answer.parsed)
