"""Defence − undefended deltas, like the paper's Table 3, with 95% intervals.

A defended run is compared with the undefended run of the same model, judge and dataset among
the runs given. Where both runs cover the same items of a split × modality (the same dialogue
ids, `mtmcs.report.items.run_items`), the delta is paired, as `mtmcs compare` computes it
(`mtmcs.scoring.paired`): the mean per-item difference over the items both answered, with the
cluster-robust interval of those differences. Where they do not, it falls back, labelled
unpaired, to the difference of the two summary figures with their standard errors (from
their intervals) combined as independent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtmcs.report.comparison import data_source
from mtmcs.report.export import RunRecords
from mtmcs.report.items import run_items
from mtmcs.report.leaderboard import COLUMNS, MODALITY_ORDER, SPLIT_LABELS, RunSummary
from mtmcs.scoring.clustered import Z95
from mtmcs.scoring.item_values import Figure as ItemFigure
from mtmcs.scoring.item_values import ItemValue, item_values
from mtmcs.scoring.metrics import Stat
from mtmcs.scoring.paired import paired_difference

UNPAIRED_NOTE = (
    "‡ unpaired: the runs cover different items of this split × modality, so the delta is "
    "the difference of the two figures with their errors combined as independent."
)


@dataclass(frozen=True, slots=True)
class Delta:
    """One metric's change under a defence (percentage points for accuracies)."""

    value: float | None
    lo: float | None
    hi: float | None


@dataclass(frozen=True, slots=True)
class DeltaRow:
    """A defended run against its undefended baseline, for one split and modality: paired
    over the items both answered, or (`paired` false) from the two summary figures."""

    defended: str
    baseline: str
    defense: str
    split: str
    modality: str
    deltas: tuple[Delta, ...]
    paired: bool = False


Figure = Stat | Mapping[str, Any]
"""A summary figure, typed or in its JSON form: its `value` and `ci95` are used."""


def _parts(stat: Figure | None) -> tuple[float | None, Sequence[float] | None]:
    if stat is None:
        return None, None
    if isinstance(stat, Stat):
        return stat.value, stat.ci95
    return stat.get("value"), stat.get("ci95")


def _standard_error(value: float | None, interval: Sequence[float] | None) -> float | None:
    if value is None or not interval:
        return None
    return float(interval[1] - interval[0]) / (2 * Z95)


def delta(defended: Figure | None, baseline: Figure | None, scale: float) -> Delta:
    """defended − baseline, unpaired: a 95% interval from the two figures' standard errors
    combined as independent."""
    (value_d, ci_d), (value_b, ci_b) = _parts(defended), _parts(baseline)
    if value_d is None or value_b is None:
        return Delta(None, None, None)
    value = (value_d - value_b) * scale
    first, second = _standard_error(value_d, ci_d), _standard_error(value_b, ci_b)
    if first is None or second is None:
        return Delta(value, None, None)
    half = Z95 * math.hypot(first, second) * scale
    return Delta(value, value - half, value + half)


def paired_delta(
    defended: dict[str, ItemValue] | None, baseline: dict[str, ItemValue] | None, scale: float
) -> Delta:
    """defended − baseline over the items both answered, with its paired, clustered 95%
    interval (`mtmcs.scoring.paired.paired_difference`)."""
    if not defended or not baseline:
        return Delta(None, None, None)
    result = paired_difference(baseline, defended)
    if result.delta is None or result.ci95 is None:
        return Delta(None, None, None)
    lo, hi = result.ci95
    return Delta(result.delta * scale, lo * scale, hi * scale)


def _key(run: RunSummary) -> tuple[str, str, str]:
    meta = run.metadata
    return (meta.model, meta.judge, str(meta.dataset))


@dataclass(frozen=True, slots=True)
class _Items:
    """A run's dialogue ids per split × cell and its items per figure."""

    cells: dict[tuple[str, str], frozenset[str]]
    figures: dict[ItemFigure, dict[str, ItemValue]]


def _items(records: RunRecords) -> _Items:
    source = data_source(records.run.metadata)
    return _Items(run_items(records), item_values(records.dialogues, source))


def defence_deltas(runs: Sequence[RunRecords]) -> list[DeltaRow]:
    """Rows for every defended run that has an undefended run to compare with."""
    baselines = {_key(r.run): r for r in runs if not r.run.metadata.defense}
    items: dict[str, _Items] = {}
    rows: list[DeltaRow] = []
    for records in runs:
        run, defense = records.run, records.run.metadata.defense
        base_records = baselines.get(_key(run))
        if not defense or base_records is None:
            continue
        base = base_records.run
        mine = items.setdefault(run.name, _items(records))
        theirs = items.setdefault(base.name, _items(base_records))
        for split in run.metadata.splits:
            for modality in MODALITY_ORDER:
                defended = run.summary.cells(split).get(modality)
                baseline = base.summary.cells(split).get(modality)
                if defended is None or baseline is None:
                    continue
                cell = mine.cells.get((split, modality))
                paired = bool(cell) and cell == theirs.cells.get((split, modality))
                deltas = tuple(
                    paired_delta(
                        mine.figures.get((split, modality, c.key)),
                        theirs.figures.get((split, modality, c.key)),
                        100 if c.percent else 1,
                    )
                    if paired
                    else delta(defended.get(c.key), baseline.get(c.key), 100 if c.percent else 1)
                    for c in COLUMNS
                )
                rows.append(
                    DeltaRow(run.label, base.label, defense, split, modality, deltas, paired)
                )
    return rows


def _cell(d: Delta, percent: bool) -> str:
    if d.value is None:
        return "–"
    digits = 1 if percent else 2
    text = f"{d.value:+.{digits}f}"
    if d.lo is not None and d.hi is not None:
        text += f" [{d.lo:+.{digits}f}, {d.hi:+.{digits}f}]"
    return text


def render_deltas_markdown(rows: Sequence[DeltaRow]) -> str:
    """Markdown table of the deltas (accuracies in percentage points)."""
    if not rows:
        return ""
    header = ["defence", "run (vs baseline)", "type", "modality", *(c.label for c in COLUMNS)]
    lines = [
        "## Defences: change against the undefended run",
        "",
        "Defended − undefended, with 95% intervals; accuracies in percentage points. Paired "
        "over the items both runs answered, as `mtmcs compare` computes it: the mean per-item "
        "difference, with the cluster-robust (scenario row) interval of those differences.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [
            row.defense + ("" if row.paired else " ‡"),
            f"{row.defended} (vs {row.baseline})",
            SPLIT_LABELS.get(row.split, row.split),
            row.modality,
        ]
        cells += [_cell(d, c.percent) for d, c in zip(row.deltas, COLUMNS, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if not all(row.paired for row in rows):
        lines += ["", UNPAIRED_NOTE]
    return "\n".join(lines) + "\n"
