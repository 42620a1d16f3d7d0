"""A finished run judged again by another judge (`mtmcs rejudge`): same dialogues, same
answers, new verdicts, in a new run directory.

The source run's `dialogues.jsonl` gives every dialogue's turns, replies and question
answers; only the judge is called, through a `Caller` on the new directory's store and the
scheduler's own judging (`Scheduler.judge_only`), so the prompts and store items are those a
run with that judge makes, a rerun resumes, and the model under test is never called.
Dialogues whose turns failed in the source run stay failed (nothing to judge). The new
summary's metrics are computed as a run computes them; its metadata is the source run's
with the new judge, the judge's calls and `rejudged_from` (the source directory, its judge
and the digest of its dialogues).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from mtmcs import __version__
from mtmcs.engine.calls import CallCounts as EngineCallCounts
from mtmcs.engine.calls import Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.scheduler import RunOutcome, RunSettings, Scheduler
from mtmcs.engine.store import Store
from mtmcs.errors import DataError, OutputError, Problem, UsageError
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import (
    ProviderOptions,
    create_judge,
    is_heuristic_judge,
    is_reasoning_model,
    judge_kind,
)
from mtmcs.models.transport import MAX_REPLY_BYTES
from mtmcs.protocol.rubrics import Rubric
from mtmcs.protocol.types import Dialogue
from mtmcs.scoring.judge_inputs import RubricSource, rubrics_label, run_captions, run_rubrics
from mtmcs.scoring.metrics import compute_metrics
from mtmcs.scoring.outcomes import DialogueOutcome
from mtmcs.scoring.records import dialogue_records, record_answers, record_dialogue
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import (
    CallCounts,
    Concurrency,
    DialogueRecord,
    Rejudged,
    RunMetadata,
    Summary,
)


@dataclass(frozen=True)
class RejudgeConfig:
    """What `mtmcs rejudge` does: judge the run in `source` with `judge`, into `out`.

    `rubrics` `None` keeps the source run's rubric set; `captions` replaces the dataset's
    captions (what a text judge reads in place of a multimodal dialogue's image).
    """

    source: Path
    out: Path
    judge: str
    judge_base_urls: tuple[str, ...] = ()
    judge_api_key_env: str | None = None  # a variable's name, never a key
    captions: Path | None = None
    rubrics: RubricSource | None = None
    rubrics_dir: Path | None = None
    max_retries: int = 2
    timeout: float = 120.0
    max_reply_bytes: int = MAX_REPLY_BYTES
    settings: RunSettings = field(default_factory=RunSettings)


@dataclass
class RejudgeResult:
    """The new run's summary, its judge's outcome and how many judge calls were planned."""

    summary: Summary
    outcome: RunOutcome
    planned: int

    @property
    def complete(self) -> bool:
        """Whether every judge call has an answer."""
        return self.outcome.counts["judge"].failed == 0


def _source_dialogue(record: DialogueRecord, source: str) -> Dialogue:
    """The dialogue a record was written from (its image is not needed: the judge reads
    the caption)."""
    if record.row_id is None:
        raise DataError(
            [Problem(source, record.split, None, "row_id", f"dialogue {record.id} has no row id")]
        )
    if len(record.turns) != 3:
        problem = f"dialogue {record.id} has {len(record.turns)} user turns, not 3"
        raise DataError([Problem(source, record.split, record.row_id, "turns", problem)])
    return record_dialogue(record, record.row_id)


def _judge_all(
    config: RejudgeConfig,
    settings: RunSettings,
    finished: Sequence[tuple[Dialogue, tuple[str, ...]]],
    captions: Mapping[int, str] | None,
    rubrics: Mapping[str, Rubric],
    on_call: Callable[[], None] | None,
) -> tuple[RunOutcome, AdaptiveLimiter]:
    """The judge's verdicts of the finished dialogues (through `OUT/store.sqlite`) and the
    judge's connection limiter."""
    limiter = AdaptiveLimiter(settings.judge_max_connections)
    judge = create_judge(
        config.judge,
        ImageEncoder(lambda image_id: b""),  # a text judge: it reads captions, not images
        ProviderOptions(
            max_retries=config.max_retries,
            timeout=config.timeout,
            max_reply_bytes=config.max_reply_bytes,
            connections=settings.judge_max_connections,
            on_rate_limit=limiter.throttled,
            api_key_env=config.judge_api_key_env,
        ),
        config.judge_base_urls,
    )
    try:
        store = Store(config.out / "store.sqlite")
    except BaseException:
        asyncio.run(judge.aclose())
        raise

    async def execute() -> RunOutcome:
        caller = Caller(judge, store, limiter, on_call=on_call)
        scheduler = Scheduler(
            callers={"judge": caller}, captions=captions, settings=settings, rubrics=rubrics
        )
        try:
            return await scheduler.judge_only(finished)
        finally:
            await judge.aclose()

    try:
        return asyncio.run(execute()), limiter
    finally:
        store.close()


def rejudged_metadata(
    source: Summary,
    config: RejudgeConfig,
    *,
    settings: RunSettings,
    rubrics: RubricSource,
    planned: int,
    counts: EngineCallCounts,
    limiter: AdaptiveLimiter,
    started: float,
) -> RunMetadata:
    """The source run's metadata with the new judge, its decoding, rubrics and calls (the
    model's: none), and where the run was rejudged from."""
    meta = source.metadata
    decoding = meta.decoding
    return meta.model_copy(
        update={
            "judge": config.judge,
            "judge_kind": judge_kind(config.judge),
            "decoding": None
            if decoding is None
            else decoding.model_copy(update={"judge": settings.judge}),
            "rubrics": rubrics_label(rubrics),
            "package_version": __version__,
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
            "wall_s": round(time.time() - started, 3),
            "calls": {
                "model": CallCounts(),
                "judge": CallCounts(
                    planned=planned,
                    made=counts.made,
                    cached=counts.cached,
                    failed=counts.failed,
                    reasoning_exhausted=counts.reasoning_exhausted,
                    replaced_code_points=counts.replaced_code_points,
                    causes=dict(counts.causes.most_common(20)),
                ),
            },
            "complete": counts.failed == 0,
            "concurrency": {
                "judge": Concurrency(
                    maximum=limiter.maximum,
                    lowest=round(limiter.lowest, 1),
                    final=round(limiter.limit, 1),
                    rate_limited_responses=limiter.throttles,
                )
            },
            "images": None,
            "ray": None,
            "rejudged_from": Rejudged(
                run=str(config.source),
                judge=meta.judge,
                dialogues_sha256=source.dialogues_sha256,
            ),
        }
    )


def rejudge(config: RejudgeConfig, on_call: Callable[[], None] | None = None) -> RejudgeResult:
    """Judge the source run's dialogues with `config.judge` into `config.out` (a run
    directory), resuming from its store; the new summary as written."""
    started = time.time()
    source = RunDir(config.source)
    if config.out.resolve() == config.source.resolve():
        raise UsageError(f"--out {config.out} is the source run: rejudge into a new directory")
    summary = source.read_summary()
    records = source.read_dialogues()
    dialogues = [_source_dialogue(r, str(source.dialogues_path)) for r in records]
    finished = [(d, r.replies) for d, r in zip(dialogues, records, strict=True) if r.error is None]
    captions = None
    multimodal = sorted({d.row_id for d, _ in finished if d.modality == "multimodal"})
    if multimodal and not is_heuristic_judge(config.judge):
        captions = run_captions(summary.metadata.dataset, config.captions, multimodal)
    rubric_source, rubrics = run_rubrics(summary, config.rubrics, config.rubrics_dir)
    settings = replace(
        config.settings,
        reasoning_judge=config.settings.reasoning_judge or is_reasoning_model(config.judge),
    )
    outcome, limiter = _judge_all(config, settings, finished, captions, rubrics, on_call)
    outcome.dialogues += [
        DialogueOutcome(d, r.replies, None, None, error=r.error)
        for d, r in zip(dialogues, records, strict=True)
        if r.error is not None
    ]
    outcome.questions = [
        q for d, r in zip(dialogues, records, strict=True) for q in record_answers(r, d)
    ]
    metadata = rejudged_metadata(
        summary,
        config,
        settings=settings,
        rubrics=rubric_source,
        planned=len(finished),
        counts=outcome.counts["judge"],
        limiter=limiter,
        started=started,
    )
    meta = summary.metadata
    metrics = compute_metrics(outcome.questions, outcome.dialogues, meta.splits, meta.modalities)
    new = Summary(metadata=metadata, type_a=metrics.get("type_a"), type_b=metrics.get("type_b"))
    run_dir = RunDir(config.out)
    try:
        written = run_dir.write_run(new, dialogue_records(outcome.dialogues, outcome.questions))
    except OutputError as error:
        raise OutputError(
            f"{error} — the judge's answers are kept in {run_dir.store_path}: the rerun makes "
            "none of them again"
        ) from error
    return RejudgeResult(written, outcome, len(finished))
