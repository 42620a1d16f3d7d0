"""Judge sensitivity: a model's judge figures (safety-awareness, helpfulness) under each judge
that scored it, side by side, with the spread (highest − lowest value).

Built from the leaderboard's measured rows: a model appears here when runs of it were judged
by two or more judges. Runs made by `mtmcs rejudge` share their answers, so their spread is
the judges' alone; separate runs of a model differ in their answers too, which the spread
then includes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mtmcs.report.leaderboard import (
    COLUMNS,
    SPLIT_LABELS,
    Figure,
    LeaderRow,
    format_figure,
)

JUDGED = tuple(c for c in COLUMNS if c.judge)
SENSITIVITY_NOTE = (
    "A model's judge figures under each judge that scored it (value [95% CI] n), and the "
    "spread: highest − lowest value. Runs made by `mtmcs rejudge` share their answers, so "
    "their spread is the judges' alone; separate runs of a model also differ in answers."
)


@dataclass(frozen=True, slots=True)
class SensitivityLine:
    """One figure of one cell under each judge, and its spread."""

    cell: str
    metric: str
    figures: tuple[Figure, ...]

    @property
    def spread(self) -> float | None:
        """Highest − lowest value (`None` with fewer than two values)."""
        values = [f.value for f in self.figures if f.value is not None]
        return max(values) - min(values) if len(values) > 1 else None


@dataclass(frozen=True, slots=True)
class SensitivityTable:
    """A model under several judges."""

    model: str
    judges: tuple[str, ...]
    lines: tuple[SensitivityLine, ...]


def judge_sensitivity(rows: Sequence[LeaderRow]) -> list[SensitivityTable]:
    """A table per model judged by two or more judges, in leaderboard order."""
    measured = [row for row in rows if row.source == "measured"]
    tables = []
    for model in dict.fromkeys(row.model for row in measured):
        mine = [row for row in measured if row.model == model]
        runs = list(dict.fromkeys((row.run, row.judge) for row in mine))
        judges = [judge for _, judge in runs]
        if len(set(judges)) < 2:
            continue
        names = tuple(
            judge if judges.count(judge) == 1 else f"{judge} ({run})" for run, judge in runs
        )
        cells = list(dict.fromkeys((row.split, row.modality) for row in mine))
        by_key = {(row.run, row.split, row.modality): row for row in mine}
        lines = tuple(
            SensitivityLine(
                f"{SPLIT_LABELS.get(split, split)} — {modality}",
                column.label,
                tuple(
                    by_key[(run, split, modality)].figures.get(column.key, Figure(None))
                    if (run, split, modality) in by_key
                    else Figure(None)
                    for run, _ in runs
                ),
            )
            for split, modality in cells
            for column in JUDGED
        )
        tables.append(SensitivityTable(model, names, lines))
    return tables


def sensitivity_cells(table: SensitivityTable) -> list[list[str]]:
    """The displayed cells of a table: cell, metric, one figure per judge, spread."""
    return [
        [
            line.cell,
            line.metric,
            *(format_figure(figure, False) for figure in line.figures),
            "–" if line.spread is None else f"{line.spread:.2f}",
        ]
        for line in table.lines
    ]


def render_sensitivity_markdown(tables: Sequence[SensitivityTable]) -> str:
    """`## Judge sensitivity` with a table per model ("" without any)."""
    if not tables:
        return ""
    lines = ["## Judge sensitivity", "", SENSITIVITY_NOTE, ""]
    for table in tables:
        header = ["type — modality", "metric", *table.judges, "spread"]
        lines += [f"### {table.model}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
        for cells in sensitivity_cells(table):
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)
