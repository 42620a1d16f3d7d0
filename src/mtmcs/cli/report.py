"""`mtmcs report RUN_DIR...`: leaderboard tables, plots and a per-dialogue export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtmcs.cli.console import errors
from mtmcs.report.discover import find_run_dirs
from mtmcs.report.writer import parse_formats, write_report


def _warn(line: str) -> None:
    errors.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)


def report(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories (each with summary.json), or folders holding them: every "
            "directory with a summary.json under a folder is taken, sorted."
        ),
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
    images: Annotated[
        bool,
        typer.Option(
            help="Show each multimodal dialogue's image in report.html (downscaled, from the "
            "run's dataset when it is at hand; --no-images keeps the page small)."
        ),
    ] = True,
    captions: Annotated[
        Path | None,
        typer.Option(
            help="Captions JSON (id → caption) the runs' judge read, when it is not the "
            "dataset's captions.json."
        ),
    ] = None,
) -> None:
    """Leaderboard (Markdown, CSV, LaTeX), breakdowns, plots, a per-dialogue export and HTML."""
    formats = parse_formats(format)
    found = find_run_dirs(run_dirs)
    written = write_report(
        found, out, formats, categories, images=images, captions=captions, warn=_warn
    )
    for path in written:
        typer.echo(str(path))
