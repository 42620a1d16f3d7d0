"""The spread a power estimate starts from, measured in one or two runs
(`mtmcs.scoring.power`): one metric's items pooled over the chosen splits and cells,
clustered by scenario row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mtmcs.errors import UsageError
from mtmcs.protocol.types import MODALITIES, SPLITS
from mtmcs.report.comparison import RunItems, read_run_items
from mtmcs.scoring.item_values import ItemValue
from mtmcs.scoring.paired import pairs
from mtmcs.scoring.power import Measured, measure


def pooled_items(
    run: RunItems, metric: str, splits: Sequence[str], cells: Sequence[str]
) -> dict[str, ItemValue]:
    """A run's items of `metric` in the given splits and cells, pooled."""
    pooled: dict[str, ItemValue] = {}
    for (split, cell, name), items in run.figures.items():
        if name == metric and split in splits and cell in cells:
            pooled.update(items)
    return pooled


def measured_spread(
    paths: Sequence[Path],
    metric: str,
    splits: Sequence[str] = SPLITS,
    cells: Sequence[str] = MODALITIES,
) -> Measured:
    """The spread of `metric` in one run (its values) or two (their paired differences
    over the items both answered)."""
    if len(paths) not in (1, 2):
        raise UsageError(
            f"power needs one run (its spread) or two (their paired differences), got {len(paths)}"
        )
    items = [pooled_items(read_run_items(path), metric, splits, cells) for path in paths]
    if len(items) == 1:
        values = [item.value for item in items[0].values()]
        result = measure(values, [item.cluster for item in items[0].values()], paired=False)
    else:
        diffs, clusters, _, _ = pairs(items[0], items[1])
        result = measure(diffs, clusters, paired=True)
    if result is None:
        where = f"splits {', '.join(splits)}, cells {', '.join(cells)}"
        raise UsageError(f"no items of {metric} in {', '.join(map(str, paths))} ({where})")
    return result
