"""The HTML report's judge-agreement section: runs of the same answers judged by different
judges (a run and its `mtmcs rejudge`s) compared as `mtmcs agreement` does, with each pair's
confusion matrices drawn as heatmaps (HTML tables shaded by count: no image, no script).

Runs belong together when their dialogues and replies are the same; a group needs two
runs. Without the `stats` extra the section says how to install it instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from mtmcs.errors import ConfigError
from mtmcs.report.export import RunRecords
from mtmcs.scoring.agreement import CATEGORIES, POOLED, CellAgreement, Estimate, agreement
from mtmcs.scoring.raters import compare_runs

SHADE = (40, 90, 200)  # the heatmap's colour; a cell's opacity is its share of the largest


def answer_groups(records: Sequence[RunRecords]) -> list[list[RunRecords]]:
    """The runs with the same dialogues and replies, in report order; groups of two or more."""
    groups: dict[str, list[RunRecords]] = {}
    for run in records:
        answers = sorted((str(r["id"]), list(r["replies"])) for r in run.dialogues)
        key = hashlib.sha256(json.dumps(answers).encode()).hexdigest()
        groups.setdefault(key, []).append(run)
    return [group for group in groups.values() if len(group) > 1]


def figure_text(estimate: Estimate, percent: bool = False, separator: str = " ") -> str:
    """A figure (a share in % when `percent`) and its interval after `separator`."""
    if estimate.value is None:
        return "–"
    scale, digits = (100, 0) if percent else (1, 2)
    text = f"{scale * estimate.value:.{digits}f}"
    if estimate.ci95 is not None:
        lo, hi = estimate.ci95
        text += f"{separator}[{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
    return text


def heatmap(confusion: Sequence[Sequence[int]]) -> list[list[dict[str, Any]]]:
    """Each cell of a confusion matrix with its count and shading (opacity by count)."""
    largest = max((count for row in confusion for count in row), default=0) or 1
    return [
        [
            {
                "count": count,
                "style": f"background: rgba({SHADE[0]}, {SHADE[1]}, {SHADE[2]}, "
                f"{count / largest:.2f}); color: {'#fff' if count / largest > 0.55 else '#111'}",
            }
            for count in row
        ]
        for row in confusion
    ]


def _rows(cells: Sequence[CellAgreement]) -> list[list[str]]:
    return [
        [
            cell.metric.replace("_", "-"),
            "pooled" if cell.split == POOLED else f"{cell.split} {cell.cell}",
            f"{pair.a} vs {pair.b}",
            str(pair.n),
            figure_text(pair.kappa),
            figure_text(pair.rho),
            figure_text(pair.exact, True),
            figure_text(pair.within_one, True),
            figure_text(cell.alpha),
        ]
        for cell in cells
        for pair in cell.pairs
    ]


def agreement_sections(records: Sequence[RunRecords]) -> tuple[list[dict[str, Any]], str | None]:
    """Per group of runs: its runs, the figures table and the pooled confusion heatmaps of
    each pair and metric; and a note when the figures cannot be computed here."""
    sections = []
    for group in answer_groups(records):
        names = [f"{r.run.judge} ({r.run.name})" for r in group]
        ratings = compare_runs(list(zip(names, (r.dialogues for r in group), strict=True)))
        try:
            cells = agreement(ratings.units, ratings.raters)
        except ConfigError as error:
            return [], f"Judge agreement not computed: {error}"
        sections.append(
            {
                "title": f"{group[0].run.label}: " + ", ".join(r.run.judge for r in group),
                "rows": _rows(cells),
                "heatmaps": [
                    {
                        "title": f"{cell.metric.replace('_', '-')}, pooled: {pair.a} (rows) vs "
                        f"{pair.b} (columns), n={pair.n}",
                        "cells": heatmap(pair.confusion),
                    }
                    for cell in cells
                    if cell.split == POOLED
                    for pair in cell.pairs
                ],
            }
        )
    return sections, None


HEADER = ("metric", "cell", "raters", "n", "kappa", "rho", "exact %", "±1 %", "alpha")
CATEGORY_LABELS = [str(c) for c in CATEGORIES]
