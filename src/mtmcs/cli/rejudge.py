"""`mtmcs rejudge RUN_DIR --judge M --out NEW_DIR`: a finished run judged by another judge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtmcs.cli.console import call_progress, console
from mtmcs.cli.options import (
    JudgeApiKeyEnvOption,
    MaxRetriesOption,
    TimeoutOption,
    base_urls,
    choice,
    writable_dir,
)
from mtmcs.cli.run_output import print_summary
from mtmcs.engine.rejudge import RejudgeConfig, rejudge
from mtmcs.engine.run import RUBRIC_SOURCES
from mtmcs.engine.scheduler import RunSettings
from mtmcs.models.registry import ProviderOptions, api_key
from mtmcs.protocol.prompts import REASONING_EFFORTS
from mtmcs.scoring.rundir import RunDir


def rejudge_run(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A finished run of `mtmcs run`.")
    ],
    judge: Annotated[str, typer.Option(help="The new judge, provider/model or baseline/keyword.")],
    out: Annotated[Path, typer.Option(help="The new run directory (not RUN_DIR).")],
    judge_base_url: Annotated[
        list[str] | None, typer.Option(help="Server of the judge; repeat for replicas.")
    ] = None,
    judge_api_key_env: JudgeApiKeyEnvOption = None,
    judge_max_connections: Annotated[int, typer.Option(min=1, help="Judge calls in flight.")] = 16,
    judge_max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, help="Token limit of judge calls (default: 128; 256 for a reasoning judge)."
        ),
    ] = None,
    judge_reasoning_effort: Annotated[
        str | None,
        typer.Option(help="Reasoning effort of a reasoning judge (default: low, as the authors)."),
    ] = None,
    captions: Annotated[
        Path | None,
        typer.Option(
            help="Captions JSON (id → caption) for the judge (default: the run's dataset's)."
        ),
    ] = None,
    rubrics: Annotated[
        str | None,
        typer.Option(help="Judge rubrics: ours or authors (default: those of RUN_DIR)."),
    ] = None,
    rubrics_dir: Annotated[
        Path | None,
        typer.Option(help="With --rubrics authors: a local copy of their rubric files."),
    ] = None,
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Judge a finished run again with another judge, into a new run directory.

    Same dialogues, same answers (the model under test is never called), new verdicts:
    4 judge calls per row, kept in NEW_DIR/store.sqlite, so a rerun resumes and a finished
    one makes no call. NEW_DIR/summary.json records the judge and the run it was rejudged
    from; compare the two with `mtmcs agreement RUN_DIR NEW_DIR`. Exit 3 when judge calls
    failed (rerun to retry them).
    """
    urls = base_urls(judge_base_url, "--judge-base-url", judge)
    effort = (
        None
        if judge_reasoning_effort is None
        else choice(judge_reasoning_effort, REASONING_EFFORTS, "--judge-reasoning-effort")
    )
    config = RejudgeConfig(
        source=run_dir,
        out=out,
        judge=judge,
        judge_base_urls=urls,
        judge_api_key_env=judge_api_key_env,
        captions=captions,
        rubrics=None if rubrics is None else choice(rubrics, RUBRIC_SOURCES, "--rubrics"),
        rubrics_dir=rubrics_dir,
        max_retries=max_retries,
        timeout=timeout,
        settings=RunSettings(
            judge_max_tokens=judge_max_tokens,
            judge_reasoning_effort=effort,
            judge_max_connections=judge_max_connections,
        ),
    )
    options = ProviderOptions(urls[0] if urls else None, api_key_env=judge_api_key_env)
    api_key(judge, options, judge=True)  # a missing key: one line before any work
    writable_dir(out)
    progress = call_progress()
    with progress:
        task = progress.add_task(f"judge calls ({judge})", total=None)
        result = rejudge(config, on_call=lambda: progress.advance(task))
    print_summary(RunDir(out))
    console.print(f"rejudged from {run_dir} ({result.planned} dialogues judged)", soft_wrap=True)
    if not result.complete:
        raise typer.Exit(3)
