"""Which items each run covers, and which leaderboard rows cover other items than the rest.

The items of a leaderboard row (a run on one split × cell) are the dialogues of that cell in
the run's `dialogues.jsonl`, named by dataset, revision and dialogue id (`type_a/000003/
multimodal/safe`): two rows cover the same items when these sets are equal. In each split ×
cell, the set most runs share (on a tie, the first run's) is the reference; a row over
another set (a `--limit 6` run beside full runs, another shard, another dataset) is marked
† with a footnote naming the reference runs, and `mtmcs report` warns on stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from mtmcs.report.export import RunRecords
from mtmcs.report.leaderboard import SPLIT_LABELS, LeaderRow

Cell = tuple[str, str, str]
"""(run name, split, cell)."""


@dataclass(frozen=True, slots=True)
class ItemCheck:
    """Per (run, split, cell): its dialogues and, for a row over other items, its note;
    the labels of the runs with such rows and of the runs they differ from."""

    counts: dict[Cell, int]
    notes: dict[Cell, str]
    differing: tuple[str, ...] = ()
    references: tuple[str, ...] = ()

    def warning(self) -> str | None:
        """One line naming the runs over other items, or `None` when every row agrees."""
        if not self.differing:
            return None
        return (
            f"runs over different items: {', '.join(self.differing)} cover(s) a different "
            f"set of dialogues than {', '.join(self.references)} (e.g. a --limit run beside "
            "full runs); their rows are marked † in every table: compare them with care"
        )


def run_items(records: RunRecords) -> dict[tuple[str, str], frozenset[str]]:
    """The items of each split × cell of a run (dataset, revision and dialogue id)."""
    meta = records.run.metadata
    source = f"{meta.dataset or ''}@{meta.revision or ''}"
    cells: dict[tuple[str, str], set[str]] = {}
    for record in records.dialogues:
        variant = record.get("image_variant") or 0
        cell = str(record.get("modality", "")) + (f"@v{variant}" if variant else "")
        key = (str(record.get("split", "")), cell)
        cells.setdefault(key, set()).add(f"{source}:{record.get('id')}")
    return {key: frozenset(ids) for key, ids in cells.items()}


def check_items(runs: Sequence[RunRecords]) -> ItemCheck:
    """Compare the runs' items cell by cell (see the module)."""
    items = {r.run.name: run_items(r) for r in runs}
    labels = {r.run.name: r.run.label for r in runs}
    counts = {(run, *key): len(ids) for run, cells in items.items() for key, ids in cells.items()}
    notes: dict[Cell, str] = {}
    differing: dict[str, None] = {}
    references: dict[str, None] = {}
    for key in dict.fromkeys(key for cells in items.values() for key in cells):
        sets = {run: cells[key] for run, cells in items.items() if key in cells}
        groups: dict[frozenset[str], list[str]] = {}
        for run, ids in sets.items():
            groups.setdefault(ids, []).append(run)
        if len(groups) < 2:
            continue
        reference = max(groups.values(), key=len)  # the first run's group on a tie
        shown = tuple(labels[run] for run in reference)
        where = f"{SPLIT_LABELS.get(key[0], key[0])} {key[1]}"
        for run, ids in sets.items():
            if run in reference:
                continue
            notes[(run, *key)] = (
                f"covers a different set of items than {', '.join(shown)} "
                f"({len(ids)} vs {len(sets[reference[0]])} dialogues of {where})"
            )
            differing[labels[run]] = None
            references.update(dict.fromkeys(shown))
    return ItemCheck(counts, notes, tuple(differing), tuple(references))


def mark_rows(rows: Sequence[LeaderRow], check: ItemCheck) -> list[LeaderRow]:
    """The rows with the items they cover and, for rows over other items, their note."""
    marked = []
    for row in rows:
        key = (row.run, row.split, row.modality)
        if row.source != "measured" or key not in check.counts:
            marked.append(row)
            continue
        marked.append(replace(row, items=check.counts[key], other_items=check.notes.get(key, "")))
    return marked
