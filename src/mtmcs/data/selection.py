"""Which rows of a benchmark a run or a pass covers: chosen splits, a limit, a shard."""

from __future__ import annotations

from collections.abc import Sequence

from mtmcs.data.loaders import Benchmark
from mtmcs.protocol.types import Row, Split


def select_rows(
    benchmark: Benchmark,
    splits: Sequence[Split],
    limit: int | None,
    shard: tuple[int, int] | None = None,
) -> list[Row]:
    """Rows of the chosen splits, the first `limit` of each (by id) when a limit is given.

    With `shard=(index, count)`, only every count-th of those rows, starting at `index`.
    """
    rows: list[Row] = []
    for split in splits:
        chosen = sorted(
            (row for row in benchmark.rows if row.split == split), key=lambda row: row.id
        )
        rows += chosen[:limit] if limit is not None else chosen
    if shard is not None:
        index, count = shard
        rows = rows[index::count]
    return rows
