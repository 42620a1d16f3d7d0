"""Each item's value under each metric, read from a run's dialogue records: what a paired
comparison matches across runs and what the power analysis measures.

An item is a question (its correctness, 1 or 0; unparseable = 0) or a judged dialogue (its
score, 1–5), exactly as `mtmcs.scoring.metrics` counts them: failed calls and unscored
dialogues are not items. Items are named by the run's dataset and revision and by the
question or dialogue id (which holds the split, row id, modality, image variant and intent:
`type_a/000003/multimodal/unsafe/mcq/1`), and clustered by scenario row (split, row id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mtmcs.scoring.metrics import CELL_METRICS, Metric

Figure = tuple[str, str, str]
"""(split, cell, metric name), as the summary holds them."""

OVERALL = "overall"
"""The cell pooling the MCQs of a split's base modalities (`mcq_accuracy` only)."""


@dataclass(frozen=True, slots=True)
class ItemValue:
    """An item's value and its cluster (split, row id)."""

    cluster: tuple[str, int]
    value: float


def record_row(record: Mapping[str, Any]) -> int:
    """A dialogue record's row id (read from its id, `type_a/000003/…`, in records written
    before the field existed)."""
    row = record.get("row_id")
    return int(row) if row is not None else int(str(record["id"]).split("/")[1])


def _cell(record: Mapping[str, Any]) -> str:
    variant = record.get("image_variant") or 0
    return str(record["modality"]) + (f"@v{variant}" if variant else "")


def _applies(entry: Metric, source: str, intent: str) -> bool:
    return entry.source == source and entry.intent in (None, intent)


def item_values(
    records: Iterable[Mapping[str, Any]], source: str = ""
) -> dict[Figure, dict[str, ItemValue]]:
    """Per figure of the summary: item name (`source:id`) → value, from dialogue records in
    their JSON form. `source` names the dataset, so runs on other data share no item."""
    figures: dict[Figure, dict[str, ItemValue]] = {}
    for record in records:
        split, cell, intent = str(record["split"]), _cell(record), str(record["intent"])
        cluster = (split, record_row(record))
        judge = record.get("judge") or {}
        score = judge.get("score")
        if record.get("error") is None and judge.get("error") is None and score is not None:
            for entry in CELL_METRICS:
                if _applies(entry, "judge", intent):
                    figures.setdefault((split, cell, entry.name), {})[
                        f"{source}:{record['id']}"
                    ] = ItemValue(cluster, float(score))
        for question in record.get("questions") or ():
            if question.get("error") is not None:
                continue
            item = ItemValue(cluster, 1.0 if question.get("correct") else 0.0)
            name = f"{source}:{question['id']}"
            for entry in CELL_METRICS:
                if _applies(entry, str(question["kind"]), intent):
                    figures.setdefault((split, cell, entry.name), {})[name] = item
            if question["kind"] == "mcq" and "@" not in cell:
                figures.setdefault((split, OVERALL, "mcq_accuracy"), {})[name] = item
    return figures
