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


def _standard_error(stat: Mapping[str, Any]) -> float | None:
    interval = stat.get("ci95")
    if stat.get("value") is None or not interval:
        return None
    return float(interval[1] - interval[0]) / (2 * Z95)


def delta(defended: Mapping[str, Any], baseline: Mapping[str, Any], scale: float) -> Delta:
    """defended − baseline, with a 95% interval from the two figures' standard errors."""
    if defended.get("value") is None or baseline.get("value") is None:
        return Delta(None, None, None)
    value = (defended["value"] - baseline["value"]) * scale
    first, second = _standard_error(defended), _standard_error(baseline)
    if first is None or second is None:
        return Delta(value, None, None)
    half = Z95 * math.hypot(first, second) * scale
    return Delta(value, value - half, value + half)


def _key(run: RunSummary) -> tuple[str, str, str]:
    meta = run.metadata
    return (str(meta["model"]), str(meta["judge"]), str(meta.get("dataset")))


def defence_deltas(runs: Sequence[RunSummary]) -> list[DeltaRow]:
    """Rows for every defended run that has an undefended run to compare with."""
    baselines = {_key(run): run for run in runs if not run.metadata.get("defense")}
    rows: list[DeltaRow] = []
    for run in runs:
        defense = run.metadata.get("defense")
        base = baselines.get(_key(run))
        if not defense or base is None:
            continue
        for split in run.metadata["splits"]:
            for modality in MODALITY_ORDER:
                if modality not in run.summary.get(split, {}):
                    continue
                cells = run.summary[split][modality], base.summary[split][modality]
                rows.append(
                    DeltaRow(
                        defended=run.name,
                        baseline=base.name,
                        defense=str(defense),
                        split=split,
                        modality=modality,
                        deltas=tuple(
                            delta(cells[0][c.key], cells[1][c.key], 100 if c.percent else 1)
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
