"""One benchmark run: data → dialogues → scheduler → metrics → `summary.json`."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from mtmcs import __version__
from mtmcs.data.authors_rubrics import AUTHORS_RUBRICS_COMMIT, load_authors_rubrics
from mtmcs.data.captions import fetch_official_captions, load_captions
from mtmcs.data.defence_texts import DefenceText, TextChoice
from mtmcs.data.loaders import Benchmark, LoadOptions, load_benchmark
from mtmcs.data.selection import select_rows
from mtmcs.engine import finished
from mtmcs.engine.calls import Caller, CountedModel, PerAnswer
from mtmcs.engine.collector import fewer_pauses
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.scheduler import Role, RunOutcome, RunSettings, Scheduler
from mtmcs.engine.store import Store
from mtmcs.errors import ConfigError, DataError, OutputError, Problem
from mtmcs.guardrails.defences import DEFENCE_CLASSES, DefenceName, DefendedModel, Scope
from mtmcs.guardrails.defences.adashield import THRESHOLDS, embedding_name
from mtmcs.guardrails.defences.base import AnswerCalls
from mtmcs.guardrails.defences.defended import calls_per_answer
from mtmcs.guardrails.defences.immune import (
    ImmuneOptions,
    ImmuneSettings,
    create_guidance,
    create_reward_model,
)
from mtmcs.models.base import CallKind, ChatModel, ChatRequest
from mtmcs.models.images import ImageEncoder
from mtmcs.models.judges import Judge, JudgeRequest
from mtmcs.models.registry import (
    LocalModelOptions,
    ProviderOptions,
    create_judge,
    create_model_pool,
    is_heuristic_judge,
    is_reasoning_model,
    judge_kind,
)
from mtmcs.models.transport import MAX_REPLY_BYTES
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.judge import DEFAULT_JUDGE
from mtmcs.protocol.rubrics import RUBRICS
from mtmcs.protocol.types import MODALITIES, SPLITS, Dialogue, Modality, Row, Split
from mtmcs.scoring.judge_inputs import RubricSource
from mtmcs.scoring.metrics import compute_metrics
from mtmcs.scoring.records import dialogue_records
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import (
    CallCounts,
    Concurrency,
    DefenceRetrieval,
    DefenceSource,
    ImageCounts,
    ImmuneRecord,
    RunDecoding,
    RunMetadata,
    Summary,
)

if TYPE_CHECKING:
    from mtmcs.models.guided import Guidance

RUBRIC_SOURCES: tuple[RubricSource, ...] = ("ours", "authors")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (the CLI builds one from its options)."""

    model: str
    out: Path
    judge: str = DEFAULT_JUDGE
    dataset: str = "official"
    revision: str | None = None
    splits: tuple[Split, ...] = SPLITS
    modalities: tuple[Modality, ...] = MODALITIES
    limit: int | None = None
    variants: bool = False
    base_urls: tuple[str, ...] = ()
    judge_base_urls: tuple[str, ...] = ()
    api_key_env: str | None = None  # names of the variables holding the keys (see
    judge_api_key_env: str | None = None  # `mtmcs.models.registry.api_key`), never keys
    captions: Path | None = None
    max_retries: int = 2
    timeout: float = 120.0
    max_reply_bytes: int = MAX_REPLY_BYTES  # per HTTP response body of the API providers
    settings: RunSettings = field(default_factory=RunSettings)
    defense: DefenceName | None = None
    defense_scope: Scope = "all"
    defense_text: TextChoice = "original"  # the authors' (fetched), ours, or a file's
    defense_texts_dir: Path | None = None  # a local copy of the defences' published texts
    defense_selector: Literal["retrieval", "judge"] = "retrieval"
    shard: tuple[int, int] | None = None  # (index, count): every count-th row from index
    check_images: bool = True
    rubrics: RubricSource = "ours"
    rubrics_dir: Path | None = None  # a local copy of the authors' rubric files
    local: LocalModelOptions = field(default_factory=LocalModelOptions)
    immune: ImmuneOptions = field(default_factory=ImmuneOptions)  # --defense immune's


@dataclass
class RunResult:
    """The summary written to disk and the outcome it was computed from."""

    summary: dict[str, Any]
    outcome: RunOutcome
    planned: Mapping[Role, int]
    up_to_date: bool = False
    """The run directory held this finished run already (`mtmcs.engine.finished`): nothing
    was called, read or written; `summary` is the one it holds."""

    @property
    def complete(self) -> bool:
        """Whether every planned call has an answer."""
        return all(counts.failed == 0 for counts in self.outcome.counts.values())


def run_settings(config: RunConfig) -> RunSettings:
    """The run's call settings, with the model and the judge marked as reasoning models
    when their names say so (they then get the authors' GPT-5 decoding)."""
    return replace(
        config.settings,
        reasoning_model=config.settings.reasoning_model or is_reasoning_model(config.model),
        reasoning_judge=config.settings.reasoning_judge or is_reasoning_model(config.judge),
    )


def answer_calls(config: RunConfig, kind: CallKind) -> AnswerCalls:
    """What one answer of `kind` costs under the run's defence (one model call without)."""
    return calls_per_answer(
        config.defense,
        kind,
        scope=config.defense_scope,
        judge_selects=config.defense_selector == "judge",
        immune=immune_settings(config),
    )


def immune_settings(config: RunConfig) -> ImmuneSettings | None:
    """An Immune run's settings, resolved (`UsageError` for a missing reward model, the
    judge as reward model unless allowed, …); `None` for any other run."""
    if config.defense != "immune":
        return None
    return config.immune.resolve(
        config.model, config.judge, config.judge_base_urls, config.judge_api_key_env
    )


def planned_calls(dialogues: Sequence[Dialogue], config: RunConfig) -> dict[Role, int]:
    """The calls the dialogues need by role: the model's (turns and questions, each times
    the calls of the model its defence makes), the judge's (one per dialogue), and a
    defence's other roles (`reward`, `selector`)."""
    answers: Counter[CallKind] = Counter()
    for d in dialogues:
        answers["turn"] += len(d.turns)
        answers.update(q.kind for q in d.questions)
    planned: Counter[Role] = Counter({"model": 0, "judge": len(dialogues)})
    for kind, count in answers.items():
        for role, calls in answer_calls(config, kind).by_role.items():
            planned[role] += count * calls
    return dict(planned)


def critical_path(dialogues: Sequence[Dialogue], config: RunConfig) -> int:
    """Calls in sequence in the longest dialogue: its turns in order, then its questions and
    its judge call side by side (each answer as many as its defence makes in a row)."""

    def depth(kind: CallKind) -> int:
        return answer_calls(config, kind).in_sequence

    return max(
        (
            len(d.turns) * depth("turn") + max([1, *(depth(q.kind) for q in d.questions)])
            for d in dialogues
        ),
        default=0,
    )


def resolve_captions(
    config: RunConfig, benchmark: Benchmark, dialogues: Sequence[Dialogue]
) -> dict[int, str] | None:
    """Captions for the judge, or `None` when the judge does not need any."""
    needed = sorted({d.row_id for d in dialogues if d.modality == "multimodal"})
    if not needed or is_heuristic_judge(config.judge):
        return None
    if config.captions is not None:
        captions = load_captions(config.captions)
        source = str(config.captions)
    elif benchmark.captions_path is not None:
        captions = load_captions(benchmark.captions_path)
        source = str(benchmark.captions_path)
    elif config.dataset == "official":
        captions = fetch_official_captions()
        source = "the official captions"
    else:
        raise ConfigError(
            f"the judge {config.judge} needs image captions for multimodal dialogues: pass "
            "--captions FILE (a JSON object id → caption) or put captions.json in the dataset "
            "directory"
        )
    missing = [row_id for row_id in needed if row_id not in captions]
    if missing:
        raise DataError(
            [
                Problem(
                    source,
                    "",
                    row_id,
                    "caption",
                    "no caption for this row id (the judge needs one for its multimodal dialogues)",
                )
                for row_id in missing
            ]
        )
    return captions


def defence_text(config: RunConfig) -> DefenceText | None:
    """The text the run's defence adds (fetched or read; None without one)."""
    if config.defense is None:
        return None
    return DEFENCE_CLASSES[config.defense].text_for(config.defense_text, config.defense_texts_dir)


def defence_record(config: RunConfig) -> dict[str, Any]:
    """The summary's fields on the defence's text and, for AdaShield-A, its retrieval."""
    text = defence_text(config)
    if text is None:
        return {}
    retrieval = None
    if config.defense == "adashield-a":
        embedding = embedding_name()
        retrieval = DefenceRetrieval(embedding=embedding, threshold=THRESHOLDS[embedding])
    source = DefenceSource(
        preset=text.preset,
        placement=text.placement,
        source=text.source,
        commit=text.commit,
        sha256=text.sha256,
    )
    return {"defense_text": text.text, "defense_source": source, "defense_retrieval": retrieval}


def build_summary(
    config: RunConfig,
    benchmark: Benchmark,
    rows: Sequence[Row],
    outcome: RunOutcome,
    planned: Mapping[Role, int],
    started: float,
    wall_s: float,
) -> Summary:
    """`summary.json`: metrics per split and modality, plus the run's metadata."""
    metrics = compute_metrics(
        outcome.questions, outcome.dialogues, config.splits, config.modalities
    )
    settings = run_settings(config)
    metadata = RunMetadata(
        model=config.model,
        defense=config.defense,
        defense_scope=config.defense_scope if config.defense else None,
        **defence_record(config),
        defense_selector=config.defense_selector if config.defense == "adashield-a" else None,
        immune=immune_record(config, settings),
        judge=config.judge,
        judge_kind=judge_kind(config.judge),
        dataset=benchmark.name,
        revision=benchmark.revision,
        splits=tuple(config.splits),
        modalities=tuple(config.modalities),
        rows=len(rows),
        limit=config.limit,
        variants=config.variants,
        decoding=RunDecoding(
            turn=settings.decoding("turn"),
            mcq=settings.decoding("mcq"),
            tf=settings.decoding("tf"),
            judge=settings.judge,
            seed=settings.seed,
        ),
        model_args={key: json.loads(value) for key, value in settings.model_args} or None,
        image_placement=settings.image_placement,
        image_order=settings.image_order,
        rubrics=(
            f"authors' text at franciscoliu/MTMCS-Bench@{AUTHORS_RUBRICS_COMMIT}"
            if config.rubrics == "authors"
            else "ours (the authors' score anchors, our wording)"
        ),
        package_version=__version__,
        started_at=datetime.fromtimestamp(started, UTC).isoformat(),
        wall_s=round(wall_s, 3),
        calls={
            role: CallCounts.model_validate(
                {
                    "planned": planned[role],
                    **asdict(counts),
                    "causes": dict(counts.causes.most_common(20)),
                }
            )
            for role, counts in outcome.counts.items()
        },
        complete=all(counts.failed == 0 for counts in outcome.counts.values()),
    )
    return Summary(metadata=metadata, type_a=metrics.get("type_a"), type_b=metrics.get("type_b"))


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, before any call: its rows, dialogues and call counts."""

    benchmark: Benchmark
    rows: tuple[Row, ...]
    dialogues: tuple[Dialogue, ...]
    planned: Mapping[Role, int]
    critical_path: int
    """Calls in sequence (`critical_path`)."""

    def estimate_s(self, latency: float, connections: Mapping[str, int]) -> float:
        """Lower bound of the wall time against servers answering in `latency` seconds, with
        `connections` per role (`run_connections`): a role without its own shares the
        judge's (AdaShield-A's selector)."""
        pools: Counter[str] = Counter()
        for role, calls in self.planned.items():
            pools[role if role in connections else "judge"] += calls
        busiest = max(calls * latency / connections[pool] for pool, calls in pools.items())
        return max(self.critical_path * latency, busiest)


def run_connections(config: RunConfig) -> dict[str, int]:
    """The connections each role's calls share: the model's, the judge's, and Immune's
    reward model's own."""
    settings = config.settings
    connections = {"model": settings.max_connections, "judge": settings.judge_max_connections}
    if config.defense == "immune":
        connections["reward"] = config.immune.reward_max_connections
    return connections


def plan_run(config: RunConfig, *, defer_image_checks: bool = False) -> RunPlan:
    """Load and check the data and work out the dialogues and calls of a run; with
    `defer_image_checks`, images not validated before are checked in the background
    (`Benchmark.pending`)."""
    options = LoadOptions(
        variants=config.variants,
        check_images=config.check_images,
        defer_checks=defer_image_checks,
    )
    benchmark = load_benchmark(config.dataset, config.splits, config.revision, options)
    rows = tuple(select_rows(benchmark, config.splits, config.limit, config.shard))
    dialogues = tuple(
        d for row in rows for d in expand_row(row, config.modalities, config.variants)
    )
    return RunPlan(
        benchmark,
        rows,
        dialogues,
        planned_calls(dialogues, config),
        critical_path(dialogues, config),
    )


class _DatasetImages:
    """Image bytes of the run's benchmark, which is loaded after the providers exist."""

    def __init__(self) -> None:
        self.benchmark: Benchmark | None = None

    def __call__(self, image_id: str) -> bytes:
        if self.benchmark is None:
            raise RuntimeError("an image was asked for before the benchmark was loaded")
        return self.benchmark.image_bytes(image_id)


def create_providers(
    config: RunConfig, images: ImageEncoder, limits: Mapping[Role, AdaptiveLimiter]
) -> tuple[ChatModel, Judge]:
    """The model under test and the judge (each over its base URLs); `ConfigError` for an
    unknown provider, a missing API key or a local model that cannot be loaded."""
    options = ProviderOptions(
        max_retries=config.max_retries,
        timeout=config.timeout,
        max_reply_bytes=config.max_reply_bytes,
        seed=config.settings.seed or 0,
        **asdict(config.local),
    )
    model = create_model_pool(
        config.model,
        images,
        replace(
            options,
            on_rate_limit=limits["model"].throttled,
            connections=config.settings.max_connections,
            api_key_env=config.api_key_env,
        ),
        config.base_urls,
    )
    try:
        judge = create_judge(
            config.judge,
            images,
            replace(
                options,
                on_rate_limit=limits["judge"].throttled,
                connections=config.settings.judge_max_connections,
                api_key_env=config.judge_api_key_env,
            ),
            config.judge_base_urls,
        )
    except BaseException:
        asyncio.run(model.aclose())
        raise
    return model, judge


def immune_record(config: RunConfig, settings: RunSettings) -> ImmuneRecord | None:
    """The summary's account of an Immune run's settings."""
    immune = immune_settings(config)
    if immune is None:
        return None
    return ImmuneRecord.model_validate(immune.record(settings.decoding("turn").temperature))


def create_reward(
    config: RunConfig,
    immune: ImmuneSettings | None,
    images: ImageEncoder,
    limits: Mapping[Role, AdaptiveLimiter],
) -> tuple[ChatModel | Judge | None, Guidance | None]:
    """Immune's reward model: for the best-of-N approximation, a provider for its own
    caller (under `limits["reward"]`); for guided decoding, the guidance holding it."""
    if immune is None:
        return None, None
    if immune.guided:
        return None, create_guidance(immune, device=config.local.device, dtype=config.local.dtype)
    options = ProviderOptions(
        max_retries=config.max_retries,
        timeout=config.timeout,
        max_reply_bytes=config.max_reply_bytes,
        on_rate_limit=limits["reward"].throttled,
        **asdict(config.local),
    )
    return create_reward_model(immune, images, options), None


async def _close(*models: ChatModel | Judge) -> None:
    for model in models:
        await model.aclose()


def run_benchmark(
    config: RunConfig,
    on_start: Callable[[Mapping[Role, int]], None] | None = None,
    on_call: Callable[[Role], None] | None = None,
) -> RunResult:
    """Run (or resume) a benchmark and write `OUT/summary.json`.

    The providers are created first, so a missing API key or an unknown provider is
    reported before the data is loaded and its images decoded. A finished run of the same
    inputs, unchanged since, is kept as it is (`RunResult.up_to_date`).
    """
    if finished.is_up_to_date(config, lambda: _defence_sha256(config)):
        summary = RunDir(config.out).read_summary()
        recorded = cast(
            dict[Role, int], {role: calls.planned for role, calls in summary.metadata.calls.items()}
        )
        return RunResult(summary.model_dump(mode="json"), RunOutcome(), recorded, up_to_date=True)
    started = time.time()
    limits: dict[Role, AdaptiveLimiter] = {
        "model": AdaptiveLimiter(config.settings.max_connections),
        "judge": AdaptiveLimiter(config.settings.judge_max_connections),
    }
    immune = immune_settings(config)  # before any model is loaded
    if immune is not None and not immune.guided:
        limits["reward"] = AdaptiveLimiter(immune.reward_max_connections)
    source = _DatasetImages()
    images = ImageEncoder(source)
    model, judge = create_providers(config, images, limits)
    try:
        reward_model, guidance = create_reward(config, immune, images, limits)
    except BaseException:
        asyncio.run(_close(model, judge))
        raise
    rewards = [] if reward_model is None else [reward_model]
    pending = None
    try:
        plan = plan_run(config, defer_image_checks=True)
        pending = plan.benchmark.pending
        captions = resolve_captions(config, plan.benchmark, plan.dialogues)
        rubrics = (
            load_authors_rubrics(config.rubrics_dir) if config.rubrics == "authors" else RUBRICS
        )
        text = defence_text(config)
        config.out.mkdir(parents=True, exist_ok=True)
        finished.forget(config.out)  # the directory is about to change
        store = Store(config.out / "store.sqlite")
    except BaseException:
        if pending is not None:
            pending.cancel()
        asyncio.run(_close(model, judge, *rewards))
        raise
    source.benchmark = plan.benchmark
    benchmark, rows, dialogues, planned = plan.benchmark, plan.rows, plan.dialogues, plan.planned
    if on_start is not None:
        on_start(planned)

    def progress(role: Role) -> Callable[[], None] | None:
        return None if on_call is None else lambda: on_call(role)

    judge_caller = Caller(judge, store, limits["judge"], on_call=progress("judge"))
    callers: dict[Role, Caller] = {"judge": judge_caller}
    per_answer: PerAnswer | None = None
    if config.defense is not None:
        # A defence's own judge roles (reward, selector): the judge under
        # --judge-max-connections, stored as before, counted apart by role.
        asked: dict[Role, Caller] = {
            role: Caller(judge, store, limits["judge"])
            for role in planned
            if role not in ("model", "judge")
        }
        if reward_model is not None:  # Immune's reward model: its own, not the judge
            asked["reward"] = Caller(reward_model, store, limits["reward"])
        callers.update(asked)

        async def ask(item: str, request: JudgeRequest, *, kind: str | None = None) -> str:
            caller = next((c for role, c in asked.items() if role == kind), judge_caller)
            return await caller.text(item, request, kind=kind)

        defended = DefendedModel(
            CountedModel(model),  # each of the defence's calls of the model counted
            config.defense,
            scope=config.defense_scope,
            text=text,
            judge=ask,
            judge_selects=config.defense_selector == "judge",
            judge_decoding=run_settings(config).judge,
            immune=immune,
            reward=asked["reward"].text if reward_model is not None else None,
            guidance=guidance,
        )

        def defence_calls(request: ChatRequest) -> dict[str, int]:
            return {role: n for role, n in defended.calls_per_answer(request).by_role.items()}

        model, per_answer = defended, defence_calls
    model_caller = Caller(
        model,
        store,
        limits["model"],
        on_call=progress("model"),
        per_answer=per_answer,
        peers={role: caller.counts for role, caller in callers.items()},
    )
    callers = {"model": model_caller, **callers}  # the summary lists the model's calls first

    async def image_ready(image_id: str) -> bool:
        future = None if pending is None else pending.future(image_id)
        if future is None:
            return True
        reason, _ = await asyncio.wrap_future(future)
        return reason is None

    async def execute() -> RunOutcome:
        scheduler = Scheduler(
            callers=callers,
            captions=captions,
            settings=run_settings(config),
            images=images,
            rubrics=rubrics,
            image_ready=image_ready if pending is not None else None,
        )
        try:
            return await scheduler.run(dialogues)
        finally:
            await _close(model, judge, *rewards)

    try:
        with fewer_pauses():
            outcome = asyncio.run(execute())
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    finally:
        store.close()
    if pending is not None and (problems := pending.finish()):
        raise DataError(problems)  # the other rows' answers are kept in the store
    summary = build_summary(
        config, benchmark, rows, outcome, planned, started, time.time() - started
    )
    concurrency = {
        role: Concurrency(
            maximum=limiter.maximum,
            lowest=round(limiter.lowest, 1),
            final=round(limiter.limit, 1),
            rate_limited_responses=limiter.throttles,
        )
        for role, limiter in limits.items()
    }
    images_used = ImageCounts(
        decoded=pending.decoded if pending is not None else benchmark.images_decoded,
        encoded=images.encoded,  # base64 for sending, once each while in use
    )
    metadata = summary.metadata.model_copy(
        update={"concurrency": concurrency, "images": images_used}
    )
    summary = summary.model_copy(update={"metadata": metadata})
    records = dialogue_records(outcome.dialogues, outcome.questions)
    run_dir = RunDir(config.out)
    try:
        summary = run_dir.write_run(summary, records)  # the summary last: see RunDir
    except OutputError as error:
        answered = sum(counts.made + counts.cached for counts in outcome.counts.values())
        raise OutputError(
            f"{error} — the {answered} answered calls are kept in {run_dir.store_path}: "
            "the rerun makes none of them again"
        ) from error
    result = RunResult(summary.model_dump(mode="json"), outcome, planned)
    if result.complete:
        written = (run_dir.summary_path, run_dir.dialogues_path)
        finished.record(config, _sha256(text), benchmark.sources, written)
    return result


def _defence_sha256(config: RunConfig) -> str | None:
    return _sha256(defence_text(config))


def _sha256(text: DefenceText | None) -> str | None:
    return None if text is None else text.sha256
