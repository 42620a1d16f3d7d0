"""Report files of finished runs: leaderboard tables, breakdowns, plots, exports, HTML."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mtmcs.errors import ConfigError, StoreError
from mtmcs.keys import redact
from mtmcs.report.breakdowns import (
    Breakdown,
    category_breakdown,
    pair_breakdown,
    render_breakdowns_csv,
    render_breakdowns_markdown,
    stance_breakdowns,
    variant_breakdown,
)
from mtmcs.report.deltas import defence_deltas, render_deltas_markdown
from mtmcs.report.export import RunRecords, read_run_records
from mtmcs.report.items import check_items, mark_rows
from mtmcs.report.leaderboard import (
    expected_rows,
    leaderboard_rows,
    load_runs,
    render_csv,
    render_latex,
    render_markdown,
)
from mtmcs.scoring.categories import CategoryMap
from mtmcs.scoring.categorize import read_map
from mtmcs.scoring.stance_summary import stance_summary

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


def category_map(path: Path) -> CategoryMap:
    """The mapping file written by `mtmcs categorize`, checked."""
    mapping = read_map(path)
    if mapping is None:
        raise ConfigError(f"no category mapping file {path}: make one with `mtmcs categorize`")
    return mapping


def breakdown_tables(
    records: Sequence[RunRecords], mapping: CategoryMap | None = None
) -> list[Breakdown]:
    """The pair, harm-category (with a mapping file), image-variant and stance breakdowns."""
    dialogues = [(r.run, r.dialogues) for r in records]
    tables = [pair_breakdown(dialogues)]
    if mapping is not None:
        method = f"{mapping.method} ({mapping.model}, taxonomy {mapping.taxonomy})"
        tables.append(category_breakdown(dialogues, mapping.assignments.get, method))
    tables.append(variant_breakdown([r.run for r in records]))
    tables += stance_breakdowns([(r.run, stance_summary(r.dialogues, r.stances)) for r in records])
    return [table for table in tables if table.rows]


def write_report(
    run_dirs: Sequence[Path],
    out: Path,
    formats: Sequence[str],
    categories: Path | None = None,
    *,
    images: bool = True,
    captions: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the requested report files for `run_dirs` into `out`; the paths written.

    md → leaderboard.md (with the breakdowns); csv → leaderboard.csv, breakdowns.csv and
    dialogues.csv; latex → leaderboard.tex;
    png → tradeoff/metrics/modality_gap .png and .svg; parquet → dialogues.parquet;
    html → report.html (self-contained: tables, plots, filterable dialogues, with the
    scenario images unless `images` is false, and the judge's captions, `captions` or the
    dataset's). `warn` is told, one line each, of runs over different items and of images
    left out.
    """
    records = [read_run_records(run) for run in load_runs(run_dirs)]
    runs = [r.run for r in records]  # every string redacted (mtmcs.report.export)
    expected = expected_rows(dialogue for r in records for dialogue in r.dialogues)
    check = check_items(records)
    if warn is not None and (line := check.warning()):
        warn(line)
    rows = mark_rows(leaderboard_rows(runs, expected=expected), check)
    mapping = category_map(categories) if categories is not None else None
    category_of = mapping.assignments.get if mapping is not None else None
    tables = breakdown_tables(records, mapping)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the report directory {out}: {error.strerror}") from error
    written = []
    if "md" in formats:
        deltas = render_deltas_markdown(defence_deltas(records))
        markdown = render_markdown(rows) + (f"\n{deltas}" if deltas else "")
        markdown += f"\n{render_breakdowns_markdown(tables)}" if tables else ""
        written.append(_write(out / "leaderboard.md", markdown))
    if "csv" in formats:
        written.append(_write(out / "leaderboard.csv", render_csv(rows)))
        written.append(_write(out / "breakdowns.csv", render_breakdowns_csv(tables)))
    if "latex" in formats:
        written.append(_write(out / "leaderboard.tex", render_latex(rows)))
    if "png" in formats:
        from mtmcs.report.plots import write_plots

        written += write_plots(runs, out)
    if "parquet" in formats or "csv" in formats:
        from mtmcs.report.export import write_exports

        written += write_exports(records, out, formats, category_of)
    if "html" in formats:
        from mtmcs.report.html import write_html
        from mtmcs.report.media import Media, scenario_media

        media = scenario_media(records, captions) if images else Media()
        media.captions.update({key: redact(text) for key, text in media.captions.items()})
        for note in media.notes:
            if warn is not None:
                warn(note)
        try:
            written.append(write_html(records, rows, tables, out, category_of, media))
        except OSError as error:
            raise StoreError(f"cannot write {out / 'report.html'}: {error.strerror}") from error
    return written
