"""The `mtmcs` command."""

from __future__ import annotations

import json
import sys
import traceback
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from mtmcs.build.cli import build_command
from mtmcs.console import call_progress, console, errors
from mtmcs.data.loaders import load_benchmark
from mtmcs.engine.run import RUBRIC_SOURCES, RunConfig, RunPlan, plan_run, run_benchmark
from mtmcs.engine.scheduler import Role, RunSettings
from mtmcs.errors import ConfigError, DataError, MtmcsError, redact
from mtmcs.guardrails.defences import DEFENCES
from mtmcs.guardrails.guard_cli import guard_command
from mtmcs.models.registry import LocalModelOptions
from mtmcs.models.vllm_serve import serve_command
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.judge import DEFAULT_JUDGE
from mtmcs.protocol.messages import IMAGE_ORDERS, IMAGE_PLACEMENTS
from mtmcs.protocol.prompts import REASONING_EFFORTS, ReasoningEffort
from mtmcs.protocol.types import MODALITIES, SPLITS, Modality, Split
from mtmcs.report.cli import report_command
from mtmcs.scoring.categorize_cli import categorize_command
from mtmcs.scoring.judge_check_cli import judge_check_command
from mtmcs.scoring.metrics import CELL_METRICS, Stat
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import Summary
from mtmcs.scoring.stance_cli import stances_command

app = typer.Typer(
    help="MTMCS-Bench: multi-turn multimodal contextual safety.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and validate a dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")
state = {"debug": False}
Choice = TypeVar("Choice", bound=str)

DatasetOption = Annotated[
    str,
    typer.Option(
        "--dataset", help="'official' (ND-25/MCS-bench), 'sample' (bundled) or a directory."
    ),
]
SplitOption = Annotated[
    list[str] | None, typer.Option("--split", help="type_a and/or type_b (default: both).")
]
RevisionOption = Annotated[str | None, typer.Option(help="Hub revision of the official dataset.")]


def _splits(values: list[str] | None) -> tuple[Split, ...]:
    chosen = tuple(values or SPLITS)
    bad = [value for value in chosen if value not in SPLITS]
    if bad:
        raise typer.BadParameter(
            f"{', '.join(bad)}: expected type_a or type_b", param_hint="--split"
        )
    return chosen  # type: ignore[return-value]


def _modalities(values: list[str] | None) -> tuple[Modality, ...]:
    chosen = tuple(values or MODALITIES)
    bad = [value for value in chosen if value not in MODALITIES]
    if bad:
        raise typer.BadParameter(
            f"{', '.join(bad)}: expected multimodal or unimodal", param_hint="--modality"
        )
    return chosen  # type: ignore[return-value]


def _choice(value: str, allowed: tuple[Choice, ...], option: str) -> Choice:
    """`value` if it is one of `allowed`, else a usage error naming `option`."""
    for choice in allowed:
        if value == choice:
            return choice
    raise typer.BadParameter(f"expected {' or '.join(allowed)}", param_hint=option)


def _effort(value: str | None, option: str) -> ReasoningEffort | None:
    return None if value is None else _choice(value, REASONING_EFFORTS, option)


def _default_out(model: str, defense: str | None = None) -> Path:
    name = model.replace("/", "__") + (f"+{defense}" if defense else "")
    return Path("runs") / name


def _format(stat: Stat | None, percent: bool) -> str:
    """A figure, its 95% interval below it, how many items were unparsed or failed, then the
    authors' scripts' figure over the same replies and how many answers they dropped."""
    if stat is None:
        return "–"  # a metric registered after the run was written
    value = stat.value
    scale, digits = (100, 1) if percent else (1, 2)
    lines = ["–"]
    if value is not None:
        lines = [f"{scale * value:.{digits}f}"]
        if stat.ci95 is not None:
            lo, hi = stat.ci95
            lines.append(f"[{scale * lo:.{digits}f}–{scale * hi:.{digits}f}]")
        if stat.unparseable:
            lines.append(f"{stat.unparseable} unparsed")
        if stat.errors:
            lines.append(f"{stat.errors} failed")
    read = stat.paper_compatible_n
    if read is None:
        return "\n".join(lines)  # no authors' figure (variant consistency, old summaries)
    authors = stat.paper_compatible
    lines.append("authors' " + ("–" if authors is None else f"{scale * authors:.2f}"))
    if stat.n > read:
        lines.append(f"({stat.n - read} dropped)")
    return "\n".join(lines)


def metrics_table(summary: Summary) -> Table:
    """The summary's figures, one row per split × modality, a column per registered metric
    (`mtmcs.scoring.metrics.CELL_METRICS`)."""
    meta = summary.metadata
    table = Table(
        title=f"model {meta.model}; judge {meta.judge} ({meta.judge_kind})",
        caption=(
            "authors' = the same replies read by the authors' scripts: first letter A–G "
            "anywhere is the answer (a refusal reads as 'A'), unreadable answers dropped from "
            "the denominator, judge score falls back to the first digit 1–5; ours: strict "
            "reading, unparseable = wrong. The paper's published figures are comparable with "
            "authors', not with ours."
        ),
        caption_justify="left",
        pad_edge=False,
    )
    table.add_column("split\nmodality", overflow="fold")
    for entry in CELL_METRICS:
        table.add_column(entry.label, overflow="fold")
    for split in meta.splits:
        for name, cell in summary.cells(split).items():
            if name in ("overall", "variant_consistency"):
                continue  # not modality cells
            figures = (_format(cell.get(m.name), m.percent) for m in CELL_METRICS)
            table.add_row(f"{split}\n{name}", *figures)
    return table


def print_plan(plan: RunPlan, config: RunConfig, latency: float) -> None:
    """The `--dry-run` report: calls per model and judge, critical path, time estimate."""
    table = Table(title=f"plan: {config.model} judged by {config.judge} on {plan.benchmark.name}")
    for header in ("split", "rows", "dialogues", "model calls", "judge calls"):
        table.add_column(header, justify="right")
    for split in config.splits:
        dialogues = [d for d in plan.dialogues if d.split == split]
        table.add_row(
            split,
            str(sum(r.split == split for r in plan.rows)),
            str(len(dialogues)),
            str(sum(len(d.turns) + len(d.questions) for d in dialogues)),
            str(len(dialogues)),
        )
    console.print(table)
    settings = config.settings
    total = plan.planned["model"] + plan.planned["judge"]
    estimate = plan.estimate_s(latency, settings.max_connections, settings.judge_max_connections)
    console.print(
        f"calls: {plan.planned['model']} model + {plan.planned['judge']} judge = {total}\n"
        f"critical path: {plan.CRITICAL_PATH_CALLS} calls in sequence (R1, R2, R3, then the "
        "questions and the judge call side by side)\n"
        f"estimate at {latency:g} s per call with {settings.max_connections} model and "
        f"{settings.judge_max_connections} judge connections: at least {estimate:,.0f} s "
        f"(one call at a time: {total * latency:,.0f} s)",
        soft_wrap=True,
    )


@app.callback()
def _main(debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False) -> None:
    state["debug"] = debug


@app.command()
def run(
    model: Annotated[str, typer.Option(help="Model under test, provider/model.")],
    judge: Annotated[
        str, typer.Option(help="Judge, provider/model or baseline/keyword.")
    ] = DEFAULT_JUDGE,
    dataset: DatasetOption = "official",
    split: SplitOption = None,
    modality: Annotated[
        list[str] | None, typer.Option(help="multimodal and/or unimodal (default: both).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N rows of each split.")] = None,
    variants: Annotated[
        bool, typer.Option(help="Also run multimodal dialogues on each row's variant images.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (store + summary); default runs/<model>.")
    ] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            help="Server of the model under test; repeat for replicas (least busy first)."
        ),
    ] = None,
    judge_base_url: Annotated[
        list[str] | None, typer.Option(help="Server of the judge; repeat for replicas.")
    ] = None,
    captions: Annotated[
        Path | None, typer.Option(help="Captions JSON (id → caption) for the judge.")
    ] = None,
    max_connections: Annotated[int, typer.Option(min=1)] = 32,
    judge_max_connections: Annotated[int, typer.Option(min=1)] = 16,
    temperature: Annotated[
        str | None,
        typer.Option(
            help="Temperature of model calls (default: the authors' 0.1); 'none' sends none, "
            "for models that refuse one (e.g. OpenAI reasoning models)."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed sent to the model.")] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Token limit of every model call (default: the authors' 128 / 64 / 32 for "
            "turns / MCQ / TF; 256 for reasoning models, hidden reasoning included).",
        ),
    ] = None,
    judge_max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, help="Token limit of judge calls (default: 128; 256 for a reasoning judge)."
        ),
    ] = None,
    reasoning_effort: Annotated[
        str | None,
        typer.Option(
            help="Reasoning effort of the model under test: none, minimal, low, medium, high "
            "(default: low for OpenAI reasoning models, as the authors ran GPT-5.x; unset "
            "otherwise). Anthropic models: an extended-thinking budget.",
        ),
    ] = None,
    judge_reasoning_effort: Annotated[
        str | None,
        typer.Option(help="Reasoning effort of the judge (default: low for a reasoning judge)."),
    ] = None,
    rubrics: Annotated[
        str,
        typer.Option(
            help="Judge rubrics: ours (default; the authors' score anchors in our words) or "
            "authors (their text verbatim, downloaded at a pinned commit and checksummed)."
        ),
    ] = "ours",
    rubrics_dir: Annotated[
        Path | None,
        typer.Option(
            help="With --rubrics authors: a local copy of their rubric files (checksummed "
            "like the download), for machines without network."
        ),
    ] = None,
    image_placement: Annotated[
        str,
        typer.Option(
            help="newest: image on the newest user turn (default, as the authors); first: on R1."
        ),
    ] = "newest",
    image_order: Annotated[
        str,
        typer.Option(
            help="before: image before the text of its message (default, as the authors' "
            "local-model wrappers); after: after it (their OpenAI wrapper)."
        ),
    ] = "before",
    max_retries: Annotated[int, typer.Option(min=0, help="SDK retries per call.")] = 2,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per call.")] = 120.0,
    revision: RevisionOption = None,
    defense: Annotated[
        str | None,
        typer.Option(help=f"Run the model behind a defence: {', '.join(DEFENCES)}."),
    ] = None,
    defense_text: Annotated[
        Path | None, typer.Option(help="Your own patch / prompt text for dpp or adashield-s.")
    ] = None,
    adashield_selector: Annotated[
        str, typer.Option(help="How adashield-a picks its prompt: lexical (default) or judge.")
    ] = "lexical",
    defense_scope: Annotated[
        str, typer.Option(help="all: defend turns and questions (default); turns: turns only.")
    ] = "all",
    ray: Annotated[
        str | None,
        typer.Option(
            help="Run shards as Ray tasks: 'local' (a Ray instance here), 'auto' (the running "
            "cluster) or a Ray address.",
        ),
    ] = None,
    ray_shards: Annotated[int, typer.Option(min=1, help="Shards of rows for --ray.")] = 8,
    dry_run: Annotated[
        bool, typer.Option(help="Print the planned calls and a time estimate; call nothing.")
    ] = False,
    assume_latency: Annotated[
        float, typer.Option(min=0, help="Seconds per call assumed by --dry-run's estimate.")
    ] = 1.0,
    batch_size: Annotated[
        int, typer.Option(min=1, help="hf/ models: requests per generate call.")
    ] = 16,
    device: Annotated[
        str | None,
        typer.Option(help="hf/ models: cpu, cuda, cuda:N or auto (shard over the GPUs)."),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="hf/ and vllm/ models: auto, bfloat16, float16 or float32.")
    ] = "auto",
    max_pixels: Annotated[
        int | None,
        typer.Option(min=1, help="hf/ and vllm/ models: downscale larger images (aspect kept)."),
    ] = None,
    tensor_parallel: Annotated[
        int | None,
        typer.Option(min=1, help="vllm/ models: GPUs to shard over (default: the model card's)."),
    ] = None,
) -> None:
    """Run (or resume) the benchmark on one model and print its metrics."""
    placement = _choice(image_placement, IMAGE_PLACEMENTS, "--image-placement")
    order = _choice(image_order, IMAGE_ORDERS, "--image-order")
    rubric_source = _choice(rubrics, RUBRIC_SOURCES, "--rubrics")
    effort = _effort(reasoning_effort, "--reasoning-effort")
    judge_effort = _effort(judge_reasoning_effort, "--judge-reasoning-effort")
    omit_temperature = temperature is not None and temperature.lower() == "none"
    try:
        chosen_temperature = None if temperature is None or omit_temperature else float(temperature)
    except ValueError:
        raise typer.BadParameter(
            "expected a number or 'none'", param_hint="--temperature"
        ) from None
    if defense is not None and defense not in DEFENCES:
        raise typer.BadParameter(f"expected one of {', '.join(DEFENCES)}", param_hint="--defense")
    if adashield_selector not in ("lexical", "judge"):
        raise typer.BadParameter("expected lexical or judge", param_hint="--adashield-selector")
    if defense_scope not in ("all", "turns"):
        raise typer.BadParameter("expected all or turns", param_hint="--defense-scope")
    try:
        patch = defense_text.read_text(encoding="utf-8").strip() if defense_text else None
    except OSError as error:
        raise ConfigError(f"cannot read --defense-text {defense_text}: {error.strerror}") from None
    config = RunConfig(
        model=model,
        judge=judge,
        dataset=dataset,
        revision=revision,
        splits=_splits(split),
        modalities=_modalities(modality),
        limit=limit,
        variants=variants,
        defense=defense,
        defense_scope="turns" if defense_scope == "turns" else "all",
        defense_text=patch,
        defense_selector="judge" if adashield_selector == "judge" else "lexical",
        out=out or _default_out(model, defense),
        base_urls=tuple(base_url or ()),
        judge_base_urls=tuple(judge_base_url or ()),
        captions=captions,
        max_retries=max_retries,
        timeout=timeout,
        rubrics=rubric_source,
        rubrics_dir=rubrics_dir,
        settings=RunSettings(
            temperature=chosen_temperature,
            omit_temperature=omit_temperature,
            seed=seed,
            max_tokens=max_tokens,
            judge_max_tokens=judge_max_tokens,
            reasoning_effort=effort,
            judge_reasoning_effort=judge_effort,
            image_placement=placement,
            image_order=order,
            max_connections=max_connections,
            judge_max_connections=judge_max_connections,
        ),
        local=LocalModelOptions(batch_size, device, dtype, max_pixels, tensor_parallel),
    )
    if dry_run:
        print_plan(plan_run(replace(config, check_images=False)), config, assume_latency)
        return
    progress = call_progress()
    tasks: dict[Role, Any] = {}

    def on_start(planned: Mapping[Role, int]) -> None:
        tasks["model"] = progress.add_task(f"model {model}", total=planned["model"])
        tasks["judge"] = progress.add_task(f"judge {judge}", total=planned["judge"])

    if ray is not None:
        from mtmcs.engine.ray_run import run_with_ray

        with progress:
            shard_task = progress.add_task("Ray shards", total=None)
            result = run_with_ray(
                config,
                ray,
                ray_shards,
                lambda done, total: progress.update(shard_task, completed=done, total=total),
            )
    else:
        with progress:
            result = run_benchmark(config, on_start, lambda role: progress.advance(tasks[role]))
    run_dir = RunDir(config.out)
    summary = run_dir.read_summary()  # as written, through the typed run files
    console.print(metrics_table(summary))
    for split_name in config.splits:
        if consistency := summary.cells(split_name).get("variant_consistency"):
            judged, answers = consistency["judged_outcome"], consistency["mcq_answers"]
            console.print(
                f"{split_name} variant consistency: judged outcome "
                f"{_format(judged, True).splitlines()[0]}% of {judged.n} pairs, MCQ answers "
                f"{_format(answers, True).splitlines()[0]}% of {answers.n} questions",
                soft_wrap=True,
            )
    model_calls, judge_calls = summary.metadata.calls["model"], summary.metadata.calls["judge"]
    console.print(
        f"calls: model {model_calls.made} made, {model_calls.cached} from the store, "
        f"{model_calls.failed} failed; judge {judge_calls.made} made, "
        f"{judge_calls.cached} from the store, {judge_calls.failed} failed; "
        f"wall {summary.metadata.wall_s or 0:.1f} s",
        soft_wrap=True,
    )
    console.print(f"summary: {run_dir.summary_path}", soft_wrap=True)
    if not result.complete:
        errors.print(
            "[yellow]incomplete run:[/] some calls failed (excluded from the metrics); "
            "rerun the same command to retry only them. Most frequent causes:",
            soft_wrap=True,
        )
        for role, counts in result.outcome.counts.items():
            for cause, count in counts.causes.most_common(5):
                errors.print(f"  {role}: {count} × {cause}", markup=False, soft_wrap=True)
        raise typer.Exit(3)


@data_app.command()
def validate(
    dataset: DatasetOption = "official", split: SplitOption = None, revision: RevisionOption = None
) -> None:
    """Check every row; print one line per problem."""
    benchmark = load_benchmark(dataset, _splits(split), revision)
    console.print(f"{benchmark.name}: {len(benchmark.rows)} rows, no problems")


@data_app.command()
def stats(
    dataset: DatasetOption = "official", split: SplitOption = None, revision: RevisionOption = None
) -> None:
    """Counts of rows, dialogues, questions and planned calls."""
    benchmark = load_benchmark(dataset, _splits(split), revision)
    table = Table(title=benchmark.name)
    for header in ("split", "rows", "dialogues", "MCQ", "TF", "model calls", "judge calls"):
        table.add_column(header, justify="right")
    for name in _splits(split):
        rows = [row for row in benchmark.rows if row.split == name]
        dialogues = [d for row in rows for d in expand_row(row)]
        kinds = Counter(q.kind for d in dialogues for q in d.questions)
        model_calls = sum(len(d.turns) + len(d.questions) for d in dialogues)
        table.add_row(
            name,
            str(len(rows)),
            str(len(dialogues)),
            str(kinds["mcq"]),
            str(kinds["tf"]),
            str(model_calls),
            str(len(dialogues)),
        )
    console.print(table)


@data_app.command()
def show(
    row_id: int,
    dataset: DatasetOption = "official",
    split: Annotated[str, typer.Option(help="type_a or type_b.")] = "type_a",
    revision: RevisionOption = None,
) -> None:
    """Print the four dialogues of one row with their questions."""
    benchmark = load_benchmark(dataset, _splits([split]), revision)
    row = next((row for row in benchmark.rows if row.id == row_id), None)
    if row is None:
        raise typer.BadParameter(f"no row {row_id} in {split}", param_hint="ROW_ID")
    console.print(f"[bold]{split} row {row_id}[/]  unsafe intent: {escape(row.unsafe_intent)}")
    for dialogue in expand_row(row):
        console.print(f"\n[bold]{dialogue.id}[/]")
        for index, turn in enumerate(dialogue.turns, start=1):
            console.print(f"  R{index}: {turn}", markup=False)
        for question in dialogue.questions:
            console.print(
                f"  {question.kind} {question.id.rsplit('/', 1)[1]}: "
                f"{json.dumps(question.text)} → {question.ground_truth}",
                markup=False,
            )
            for letter, option in zip("ABCDEFGH", question.options, strict=False):
                console.print(f"      {letter}. {option}", markup=False)


app.command("report")(report_command)
app.command("guard")(guard_command)
app.command("build")(build_command)
app.command("judge-check")(judge_check_command)
app.command("stances")(stances_command)
app.command("categorize")(categorize_command)
app.command("serve")(serve_command)


def _print_traceback() -> None:
    sys.stderr.write(redact(traceback.format_exc()))


def main() -> None:
    """Entry point: run the app, turning our errors into one clear message and an exit code.

    Tracebacks (with `--debug`, or for a bug) go through the same redaction of API keys.
    """
    try:
        code = app(standalone_mode=False)  # returns the code of a `typer.Exit`
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except MtmcsError as error:
        if state["debug"]:
            _print_traceback()
        else:
            errors.print("[red]error:[/]", end=" ")
            errors.print(redact(str(error)), markup=False, highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(error, DataError) else 1)
    except typer.TyperException as error:  # usage errors: typer's own click exceptions
        show = getattr(error, "show", None)
        if show is None:
            _print_traceback()
            sys.exit(1)
        show()
        sys.exit(getattr(error, "exit_code", 2))
    except Exception:
        _print_traceback()
        sys.exit(1)
