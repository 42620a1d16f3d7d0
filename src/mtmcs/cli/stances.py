"""`mtmcs stances RUN_DIR...`: turn-level stances (refuse / hedge / comply) of finished runs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from mtmcs.cli.console import call_progress, console, errors
from mtmcs.cli.options import JudgeApiKeyEnvOption, MaxRetriesOption, TimeoutOption, base_urls
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.errors import ConfigError
from mtmcs.models.images import ImageEncoder
from mtmcs.models.judges import Judge
from mtmcs.models.registry import ProviderOptions, create_judge, judge_kind
from mtmcs.passes.stances import StanceResult, classify_run
from mtmcs.protocol.judge import DEFAULT_JUDGE
from mtmcs.protocol.stances import ONSETS, PERSISTENCES, STANCES
from mtmcs.scoring.records import DIALOGUES_FILE, read_dialogue_records
from mtmcs.scoring.stance_summary import stance_breakdown

SHOWN_PROBLEMS = 5


def _percent(share: Mapping[str, Any], interval: bool = False) -> str:
    if share["value"] is None:
        return "–"
    text = f"{100 * share['value']:.0f}%"
    if interval:
        lo, hi = share["ci95"]
        text += f" [{100 * lo:.0f}–{100 * hi:.0f}]"
    return text


def _outcome(group: Mapping[str, Any]) -> str:
    """Onset (type A unsafe), persistence (type B unsafe) or over-refusal (safe)."""
    if "over_refusal" in group:
        return f"over-refusal {_percent(group['over_refusal'], True)}"
    if "onset" in group:
        lines = [
            f"{onset.replace('_', ' ')} {_percent(group['onset'][onset], True)}" for onset in ONSETS
        ]
        with_hedge = "/".join(_percent(group["onset_with_hedge"][onset]) for onset in ONSETS)
        return "\n".join([*lines, f"counting hedges: {with_hedge}"])
    return "\n".join(
        f"{kind.replace('_', ' ')} {_percent(group['persistence'][kind], True)}"
        for kind in PERSISTENCES
    )


def stance_table(breakdown: Mapping[str, Any]) -> Table:
    """One line per split × cell × intent: stance shares per turn, then onset / persistence."""
    table = Table()
    for header in ("split", "modality", "intent", "n", "A1", "A2", "A3", "onset / persistence"):
        table.add_column(header, justify="right" if header == "n" else "left")
    for split, cells in breakdown.items():
        for cell, intents in cells.items():
            for intent, group in intents.items():
                n = str(group["classified"])
                if group["classified"] != group["dialogues"]:
                    n += f" of {group['dialogues']}"
                turns = [
                    "\n".join(f"{stance} {_percent(shares[stance])}" for stance in STANCES)
                    for shares in group["turns"].values()
                ]
                table.add_row(split, cell, intent, n, *turns, _outcome(group))
    return table


def _print_result(result: StanceResult, judge_kind: str) -> None:
    breakdown = stance_breakdown(read_dialogue_records(result.run_dir), result.stances)
    console.print(
        f"{result.run_dir}: turn stances by {result.judge} ({judge_kind})", soft_wrap=True
    )
    console.print(stance_table(breakdown))
    console.print(
        f"{len(result.stances)} dialogues classified: {result.made} calls made, "
        f"{result.cached} from the store; {len(result.unparseable)} unparseable, "
        f"{len(result.failed)} failed, {len(result.skipped)} skipped (a turn failed in the "
        f"run)\nstances: {result.path}",
        soft_wrap=True,
    )
    for label, problems in (("unparseable", result.unparseable), ("failed", result.failed)):
        for dialogue, why in sorted(problems.items())[:SHOWN_PROBLEMS]:
            errors.print(f"  {label}: {dialogue}: {why}", markup=False, soft_wrap=True)
        if len(problems) > SHOWN_PROBLEMS:
            errors.print(f"  … and {len(problems) - SHOWN_PROBLEMS} more {label}", markup=False)


async def _classify_all(
    run_dirs: Sequence[Path], judge: Judge, limiter: AdaptiveLimiter, progress: Progress
) -> list[StanceResult]:
    results = []
    try:
        for run_dir in run_dirs:
            task = progress.add_task(f"stances {run_dir}", total=None)

            def advance(done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total)

            results.append(await classify_run(run_dir, judge, limiter, advance))
    finally:
        await judge.aclose()
    return results


def stances(
    run_dirs: Annotated[
        list[Path], typer.Argument(metavar="RUN_DIR...", help="Run directories of `mtmcs run`.")
    ],
    judge: Annotated[
        str, typer.Option(help="Judge, provider/model or baseline/keyword.")
    ] = DEFAULT_JUDGE,
    base_url: Annotated[
        list[str] | None, typer.Option(help="Server of the judge; repeat for replicas.")
    ] = None,
    judge_api_key_env: JudgeApiKeyEnvOption = None,
    judge_max_connections: Annotated[int, typer.Option(min=1, help="Judge calls in flight.")] = 16,
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Classify each assistant turn as refuse, hedge or comply (ours, not the paper's).

    Writes RUN_DIR/turn_stances.jsonl and prints, per split × modality × intent, the stance
    shares per turn, the refusal onset (type A unsafe), the stance persistence (type B
    unsafe) and over-refusal (safe). Calls are kept in the run's store (RUN_DIR/store.sqlite):
    a rerun makes no call but those that failed.
    """
    urls = base_urls(base_url, "--base-url", judge)
    missing = [str(path) for path in run_dirs if not (path / DIALOGUES_FILE).is_file()]
    if missing:
        raise ConfigError(
            f"no {DIALOGUES_FILE} in {', '.join(missing)}: not a run directory (run `mtmcs run` "
            "first)"
        )
    limiter = AdaptiveLimiter(judge_max_connections)
    model = create_judge(
        judge,
        ImageEncoder(lambda image_id: b""),  # text-only: the stance judge sees no image
        ProviderOptions(
            max_retries=max_retries,
            timeout=timeout,
            connections=judge_max_connections,
            on_rate_limit=limiter.throttled,
            api_key_env=judge_api_key_env,
        ),
        urls,
    )
    progress = call_progress()
    with progress:
        results = asyncio.run(_classify_all(run_dirs, model, limiter, progress))
    for result in results:
        _print_result(result, judge_kind(judge))
    if any(result.failed for result in results):
        errors.print(
            "[yellow]some stance calls failed[/]; rerun the same command to retry only them",
            soft_wrap=True,
        )
        raise typer.Exit(3)
