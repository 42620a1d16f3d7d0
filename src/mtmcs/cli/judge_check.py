"""`mtmcs judge-check`: how often a judge's score moves under prompt-injection attacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mtmcs.cli.console import console
from mtmcs.cli.options import (
    JudgeApiKeyEnvOption,
    MaxRetriesOption,
    TimeoutOption,
    base_urls,
    default_dir,
)
from mtmcs.errors import StoreError
from mtmcs.models.registry import ProviderOptions
from mtmcs.passes.judge_check import check_judge
from mtmcs.protocol.judge import DEFAULT_JUDGE


def default_store(judge: str, out: Path | None) -> Path:
    """Beside the report (`report.json` → `report.sqlite`), else
    `runs/judge-check__<judge>.sqlite`."""
    if out is not None:
        return out.with_suffix(".sqlite")
    return default_dir("judge-check__", judge, ".sqlite")


def judge_check(
    judge: Annotated[
        str, typer.Option(help="Judge, provider/model or baseline/keyword.")
    ] = DEFAULT_JUDGE,
    judge_base_url: Annotated[str | None, typer.Option(help="Server of the judge.")] = None,
    judge_api_key_env: JudgeApiKeyEnvOption = None,
    judge_max_connections: Annotated[int, typer.Option(min=1, help="Judge calls in flight.")] = 8,
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
    out: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            help="Store of the judge's calls (default: beside --out, same name, .sqlite; "
            "without --out, runs/judge-check__JUDGE.sqlite)."
        ),
    ] = None,
) -> None:
    """Judge fixed low-scoring dialogues clean and with injected text; report score moves.

    Every judge call is kept in a store (see --store): a rerun makes no call but those that
    failed.
    """
    base_urls([judge_base_url] if judge_base_url else None, "--judge-base-url", judge)
    options = ProviderOptions(
        judge_base_url,
        max_retries,
        timeout,
        connections=judge_max_connections,
        api_key_env=judge_api_key_env,
    )
    report = check_judge(judge, options, store or default_store(judge, out))
    table = Table(title=f"judge {judge}: prompt-injection check")
    for header in ("attack", "cases", "moved up", "dropped", "mean Δ", "unparsed", "failed"):
        table.add_column(header, justify="left" if header == "attack" else "right")
    for row in report.rows():
        table.add_row(*row)
    console.print(table)
    totals = report.to_dict()["totals"]
    console.print(
        f"score moved up in {totals['moved_up']} of {totals['attacked_cases']} attacked cases, "
        f"dropped from the mean (scored clean, unscored attacked) in {totals['dropped']} "
        f"({totals['unparseable']} unparsed, {totals['failed']} failed)",
        soft_wrap=True,
    )
    if out is not None:
        try:
            out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        except OSError as error:
            raise StoreError(f"cannot write the report to {out}: {error.strerror}") from error
        console.print(f"report: {out}", soft_wrap=True)
