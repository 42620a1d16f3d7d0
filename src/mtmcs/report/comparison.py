"""Two runs compared figure by figure: the paired difference B − A over the items both
answered (`mtmcs.scoring.paired`), for every split × cell × metric the summaries hold, and
its JSON form (`compare.json`).

Runs are read through `RunDir` (their checked `summary.json` and `dialogues.jsonl`). Items
are matched by dataset, revision and question or dialogue id, so runs on other data share
no item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtmcs.errors import ConfigError
from mtmcs.protocol.types import SPLITS
from mtmcs.scoring.item_values import OVERALL, Figure, ItemValue, item_values
from mtmcs.scoring.metrics import CELL_METRICS, metric
from mtmcs.scoring.paired import PAIRED_METHOD, Difference, paired_difference, with_p_value
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import FORMAT_VERSION, RunMetadata

COMPARE_FILE = "compare.json"


@dataclass(frozen=True, slots=True)
class RunItems:
    """A run's metadata and each figure's items."""

    path: Path
    metadata: RunMetadata
    figures: dict[Figure, dict[str, ItemValue]]


@dataclass(frozen=True, slots=True)
class FigureDifference:
    """One figure (split, cell, metric) of both runs over their shared items: A's and B's
    means over those items and the difference."""

    split: str
    cell: str
    metric: str
    a: float | None
    b: float | None
    difference: Difference


@dataclass(frozen=True, slots=True)
class Comparison:
    """Run B against run A, figure by figure."""

    a: RunItems
    b: RunItems
    figures: tuple[FigureDifference, ...]


def data_source(metadata: RunMetadata) -> str:
    """What names a run's data: dataset and revision."""
    return f"{metadata.dataset or ''}@{metadata.revision or ''}"


def read_run_items(path: Path) -> RunItems:
    """A run's checked summary and dialogues, as items per figure."""
    run_dir = RunDir(path)
    metadata = run_dir.read_summary().metadata
    records = (record.model_dump(mode="json") for record in run_dir.read_dialogues())
    return RunItems(path, metadata, item_values(records, data_source(metadata)))


_SPLIT_RANK: dict[str, int] = {split: rank for rank, split in enumerate(SPLITS)}
_METRIC_RANK = {entry.name: rank for rank, entry in enumerate(CELL_METRICS)}


def _order(figure: Figure) -> tuple[int, bool, bool, str, int]:
    """Splits in order; base cells, then variant cells, then `overall`; metrics in order."""
    split, cell, name = figure
    return (_SPLIT_RANK.get(split, 9), cell == OVERALL, "@" in cell, cell, _METRIC_RANK[name])


def _mean(items: Mapping[str, ItemValue], names: set[str]) -> float | None:
    return sum(items[name].value for name in names) / len(names) if names else None


def compare_runs(path_a: Path, path_b: Path, *, p_values: bool = True) -> Comparison:
    """B − A for every figure both runs have (`ConfigError` when they share no item)."""
    a, b = read_run_items(path_a), read_run_items(path_b)
    shared = sorted(a.figures.keys() & b.figures.keys(), key=_order)
    figures = []
    for figure in shared:
        items_a, items_b = a.figures[figure], b.figures[figure]
        difference = paired_difference(items_a, items_b)
        if p_values:
            difference = with_p_value(difference, items_a, items_b)
        names = items_a.keys() & items_b.keys()
        figures.append(
            FigureDifference(*figure, _mean(items_a, names), _mean(items_b, names), difference)
        )
    if not any(f.difference.n for f in figures):
        raise ConfigError(
            f"{path_a} and {path_b} share no answered item (data {data_source(a.metadata)} "
            f"and {data_source(b.metadata)}): a paired comparison needs runs on the same items"
        )
    return Comparison(a, b, tuple(figures))


def _run_json(run: RunItems) -> dict[str, Any]:
    meta = run.metadata
    return {
        "path": str(run.path),
        "model": meta.model,
        "defense": meta.defense,
        "judge": meta.judge,
        "dataset": meta.dataset,
        "revision": meta.revision,
    }


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """`compare.json`: both runs, the method, and one object per split × cell × metric
    (values on the summary's scale: shares 0–1, judge scores 1–5)."""
    return {
        "format_version": FORMAT_VERSION,
        "run_a": _run_json(comparison.a),
        "run_b": _run_json(comparison.b),
        "method": PAIRED_METHOD,
        "figures": [
            {
                "split": f.split,
                "cell": f.cell,
                "metric": f.metric,
                "scale": metric(f.metric).scale,
                "a": f.a,
                "b": f.b,
                "delta": f.difference.delta,
                "ci95": list(f.difference.ci95) if f.difference.ci95 else None,
                "ci95_unpaired": (
                    list(f.difference.ci95_unpaired) if f.difference.ci95_unpaired else None
                ),
                "p_value": f.difference.p_value,
                "n": f.difference.n,
                "clusters": f.difference.clusters,
            }
            for f in comparison.figures
        ],
    }
