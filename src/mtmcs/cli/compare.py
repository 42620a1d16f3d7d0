"""`mtmcs compare RUN_A RUN_B [--out DIR]`: run B against run A, figure by figure, paired
over the items both answered (`mtmcs.report.comparison`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mtmcs.cli.console import console, errors
from mtmcs.errors import StoreError
from mtmcs.files import write_json
from mtmcs.report.comparison import COMPARE_FILE, Comparison, compare_runs, comparison_json
from mtmcs.scoring.metrics import metric
from mtmcs.scoring.paired import PAIRED_METHOD


def _shown(value: float | None, scale: float, digits: int, sign: str = "") -> str:
    return "–" if value is None else f"{scale * value:{sign}.{digits}f}"


def _p_value(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _interval(interval: tuple[float, float] | None, scale: float, digits: int) -> str:
    if interval is None:
        return "–"
    return f"[{scale * interval[0]:+.{digits}f}, {scale * interval[1]:+.{digits}f}]"


def comparison_table(comparison: Comparison) -> Table:
    """One row per split × cell × metric: A, B, B − A with its paired and unpaired 95%
    intervals, the p-value, pairs and rows (accuracies in %, differences in points)."""
    a, b = comparison.a.metadata, comparison.b.metadata
    table = Table(
        title=f"B − A: B = {b.model}{f' + {b.defense}' if b.defense else ''}, "
        f"A = {a.model}{f' + {a.defense}' if a.defense else ''}",
        caption=PAIRED_METHOD + ". Accuracies in %, their differences in percentage points.",
        caption_justify="left",
        pad_edge=False,
    )
    for header in ("split / cell", "metric", "A", "B", "B − A", "95% paired", "95% unpaired"):
        table.add_column(header, no_wrap=True)
    for header in ("p", "pairs", "rows"):
        table.add_column(header, justify="right")
    for figure in comparison.figures:
        entry, d = metric(figure.metric), figure.difference
        scale, digits = (100.0, 1) if entry.percent else (1.0, 2)
        table.add_row(
            f"{figure.split} {figure.cell}",
            entry.label,
            _shown(figure.a, scale, digits),
            _shown(figure.b, scale, digits),
            _shown(d.delta, scale, digits, "+"),
            _interval(d.ci95, scale, digits),
            _interval(d.ci95_unpaired, scale, digits),
            _p_value(d.p_value),
            str(d.n),
            str(d.clusters),
        )
    return table


def compare(
    run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="The run compared against.")],
    run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="The run compared (B − A).")],
    out: Annotated[
        Path | None,
        typer.Option(help=f"Directory to write {COMPARE_FILE} into (default: print only)."),
    ] = None,
) -> None:
    """Paired difference of two runs on the same items: B − A, clustered 95% interval, p."""
    comparison = compare_runs(run_a, run_b)
    a, b = comparison.a.metadata, comparison.b.metadata
    if a.judge != b.judge:
        errors.print(
            f"warning: the runs have different judges ({a.judge}, {b.judge}): judge-score "
            "differences mix the models with the judges",
            markup=False,
            soft_wrap=True,
        )
    console.print(comparison_table(comparison))
    if out is not None:
        path = out / COMPARE_FILE
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create {out}: {error.strerror}") from error
        write_json(path, comparison_json(comparison))
        console.print(f"written: {path}", soft_wrap=True)
