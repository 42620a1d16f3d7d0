"""`mtmcs report RUN_DIR...`: leaderboard tables, plots and a per-dialogue export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtmcs.report.writer import parse_formats, write_report


def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories (each with summary.json).")
    ],
    out: Annotated[Path, typer.Option(help="Directory for the report files.")] = Path("report"),
    format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="Comma-separated or repeated: md, csv, latex, png (also SVG), parquet, "
            "html (default: all).",
        ),
    ] = None,
    categories: Annotated[
        Path | None,
        typer.Option(
            help="Harm-category mapping file from `mtmcs categorize`: adds the breakdown "
            "by category and the category filter."
        ),
    ] = None,
) -> None:
    """Leaderboard (Markdown, CSV, LaTeX), breakdowns, plots, a per-dialogue export and HTML."""
    for path in write_report(run_dirs, out, parse_formats(format), categories):
        typer.echo(str(path))
