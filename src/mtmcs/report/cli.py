"""`mtmcs report RUN_DIR...`: leaderboard tables, plots and a per-dialogue export."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from mtmcs.errors import ConfigError, StoreError
from mtmcs.report.deltas import defence_deltas, render_deltas_markdown
from mtmcs.report.leaderboard import (
    leaderboard_rows,
    load_runs,
    render_csv,
    render_latex,
    render_markdown,
)

FORMATS = ("md", "csv", "latex", "png", "parquet", "html")


def parse_formats(values: Sequence[str] | None) -> list[str]:
    """Comma-separated and/or repeated `--format` values, checked; default: all."""
    chosen = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    if not chosen:
        return list(FORMATS)
    bad = [value for value in chosen if value not in FORMATS]
    if bad:
        raise ConfigError(f"unknown report format {', '.join(bad)}: expected {', '.join(FORMATS)}")
    return list(dict.fromkeys(chosen))


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise StoreError(f"cannot write {path}: {error.strerror}") from error
    return path


def report(run_dirs: Sequence[Path], out: Path, formats: Sequence[str]) -> list[Path]:
    """Write the requested report files for `run_dirs` into `out`; the paths written.

    md → leaderboard.md; csv → leaderboard.csv and dialogues.csv; latex → leaderboard.tex;
    png → tradeoff/metrics/modality_gap .png and .svg; parquet → dialogues.parquet;
    html → report.html (self-contained: tables, plots, filterable dialogues).
    """
    runs = load_runs(run_dirs)
    rows = leaderboard_rows(runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the report directory {out}: {error.strerror}") from error
    written = []
    if "md" in formats:
        deltas = render_deltas_markdown(defence_deltas(runs))
        markdown = render_markdown(rows) + (f"\n{deltas}" if deltas else "")
        written.append(_write(out / "leaderboard.md", markdown))
    if "csv" in formats:
        written.append(_write(out / "leaderboard.csv", render_csv(rows)))
    if "latex" in formats:
        written.append(_write(out / "leaderboard.tex", render_latex(rows)))
    if "png" in formats:
        from mtmcs.report.plots import write_plots

        written += write_plots(runs, out)
    if "parquet" in formats or "csv" in formats:
        from mtmcs.report.export import write_exports

        written += write_exports(runs, out, formats)
    if "html" in formats:
        from mtmcs.report.html import write_html

        try:
            written.append(write_html(runs, rows, out))
        except OSError as error:
            raise StoreError(f"cannot write {out / 'report.html'}: {error.strerror}") from error
    return written


def report_command(
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
) -> None:
    """Leaderboard (Markdown, CSV, LaTeX), plots, a per-dialogue export and an HTML report."""
    for path in report(run_dirs, out, parse_formats(format)):
        typer.echo(str(path))
