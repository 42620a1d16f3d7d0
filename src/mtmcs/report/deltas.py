"""Defence − undefended deltas, like the paper's Table 3, with 95% intervals.

A defended run is compared with the undefended run of the same model, judge and dataset among
the runs given. The interval of a difference treats the two runs as independent samples: its
standard error is the root sum of squares of each figure's (from the Wilson or normal
interval the summary reports), which is conservative for runs over the same items.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtmcs.report.leaderboard import COLUMNS, MODALITY_ORDER, SPLIT_LABELS, RunSummary
from mtmcs.scoring.metrics import Stat

Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Delta:
    """One metric's change under a defence (percentage points for accuracies)."""

    value: float | None
    lo: float | None
    hi: float | None


@dataclass(frozen=True, slots=True)
class DeltaRow:
    """A defended run against its undefended baseline, for one split and modality."""

    defended: str
    baseline: str
    defense: str
    split: str
    modality: str
    deltas: tuple[Delta, ...]


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
    """defended − baseline, with a 95% interval from the two figures' standard errors."""
    (value_d, ci_d), (value_b, ci_b) = _parts(defended), _parts(baseline)
    if value_d is None or value_b is None:
        return Delta(None, None, None)
    value = (value_d - value_b) * scale
    first, second = _standard_error(value_d, ci_d), _standard_error(value_b, ci_b)
    if first is None or second is None:
        return Delta(value, None, None)
    half = Z95 * math.hypot(first, second) * scale
    return Delta(value, value - half, value + half)


def _key(run: RunSummary) -> tuple[str, str, str]:
    meta = run.metadata
    return (meta.model, meta.judge, str(meta.dataset))


def defence_deltas(runs: Sequence[RunSummary]) -> list[DeltaRow]:
    """Rows for every defended run that has an undefended run to compare with."""
    baselines = {_key(run): run for run in runs if not run.metadata.defense}
    rows: list[DeltaRow] = []
    for run in runs:
        defense = run.metadata.defense
        base = baselines.get(_key(run))
        if not defense or base is None:
            continue
        for split in run.metadata.splits:
            for modality in MODALITY_ORDER:
                defended = run.summary.cells(split).get(modality)
                baseline = base.summary.cells(split).get(modality)
                if defended is None or baseline is None:
                    continue
                rows.append(
                    DeltaRow(
                        defended=run.label,
                        baseline=base.label,
                        defense=defense,
                        split=split,
                        modality=modality,
                        deltas=tuple(
                            delta(
                                defended.get(c.key),
                                baseline.get(c.key),
                                100 if c.percent else 1,
                            )
                            for c in COLUMNS
                        ),
                    )
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
        "Defended − undefended, with 95% intervals; accuracies in percentage points.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [
            row.defense,
            f"{row.defended} (vs {row.baseline})",
            SPLIT_LABELS.get(row.split, row.split),
            row.modality,
        ]
        cells += [_cell(d, c.percent) for d, c in zip(row.deltas, COLUMNS, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
