"""How many rows (or items per row: variant images, repeated samples) a paired comparison
needs to detect a difference, from the spread measured in runs.

The comparison is paired (both models answer the same items) and two-sided. Items of a row
are correlated, with intra-cluster correlation ICC: `n` items in rows of `m` are worth
`n / (1 + (m − 1)·ICC)` independent ones (the design effect). The independent pairs needed
come from statsmodels' power solver for a one-sample t test on the differences
(`TTestPower`), with effect size `delta / sd` of the differences; the rows needed are those
pairs times the design effect, over `m`. With the rows fixed, more items per row (the three
variant images of a row, or several samples of each item at temperature > 0) add precision
only up to `rows / ICC` independent items.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from mtmcs.scoring.clustered import spread
from mtmcs.scoring.stats_extra import stats_module


@dataclass(frozen=True, slots=True)
class Measured:
    """The spread a power estimate starts from: `n` items in `clusters` rows of
    `cluster_size` items (size-weighted mean), the standard deviation `sd` of the paired
    differences and their `icc` (0 when unmeasurable or negative); `paired` says whether
    `sd` was measured on two runs' differences or derived from one run (√2 · its sd:
    the two runs' answers to an item taken as independent)."""

    n: int
    clusters: int
    cluster_size: float
    sd: float
    icc: float
    paired: bool


@dataclass(frozen=True, slots=True)
class PowerPlan:
    """What detecting a difference needs: `pairs`, independent item pairs; `design_effect`
    at the measured items per row; `items`, correlated item pairs (`pairs` × design effect);
    `rows` at the measured items per row; with `available_rows` rows, `items_per_row` needed
    and `per_row_factor` (how many times the measured items per row: images per row, or
    samples per item); both `None` when no number of items per row suffices."""

    pairs: float
    design_effect: float
    items: float
    rows: int
    available_rows: int
    items_per_row: float | None
    per_row_factor: float | None


def measure(
    values: Sequence[float], clusters: Sequence[Hashable], *, paired: bool
) -> Measured | None:
    """The spread of `values` (paired differences when `paired`, else one run's values)
    clustered by `clusters`; `None` without items."""
    result = spread(values, clusters)
    if result is None:
        return None
    sd = result.se * math.sqrt(result.n) * (1.0 if paired else math.sqrt(2.0))
    icc = min(1.0, max(0.0, result.icc or 0.0))
    return Measured(result.n, result.clusters, result.cluster_size, sd, icc, paired)


def required_pairs(delta: float, sd: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """Independent pairs a two-sided paired t test needs to detect `delta` with `power`
    (statsmodels `TTestPower.solve_power`, effect size `delta / sd`)."""
    solver = stats_module("statsmodels.stats.power", "the power analysis").TTestPower()
    pairs = solver.solve_power(
        effect_size=abs(delta) / sd, alpha=alpha, power=power, alternative="two-sided"
    )
    return float(pairs)


def plan(
    measured: Measured,
    delta: float,
    power: float = 0.8,
    alpha: float = 0.05,
    available_rows: int | None = None,
) -> PowerPlan:
    """What detecting `delta` needs, given the `measured` spread; `available_rows` defaults
    to the rows measured."""
    if delta == 0:
        raise ValueError("a difference of 0 cannot be detected")
    if measured.sd == 0:
        raise ValueError("the items show no spread at all: any difference is detected")
    pairs = required_pairs(delta, measured.sd, power, alpha)
    m, icc = measured.cluster_size, measured.icc
    deff = 1 + (m - 1) * icc
    rows_available = available_rows or measured.clusters
    per_row: float | None = None
    if rows_available > pairs * icc:
        per_row = max(1.0, pairs * (1 - icc) / (rows_available - pairs * icc))
    return PowerPlan(
        pairs=pairs,
        design_effect=deff,
        items=pairs * deff,
        rows=math.ceil(pairs * deff / m),
        available_rows=rows_available,
        items_per_row=per_row,
        per_row_factor=None if per_row is None else per_row / m,
    )
