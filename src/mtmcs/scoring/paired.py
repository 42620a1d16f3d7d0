"""Paired differences between two runs over the items both answered.

Two runs of the same items (two models, or a model with and without a defence) are not two
independent samples: an item hard for one is usually hard for the other. The difference
B − A is the mean of the per-item differences, and its standard error is that of those
differences, cluster-robust by scenario row (`mtmcs.scoring.clustered`), usually far smaller
than the two figures' errors combined. The p-value flips the sign of whole rows' summed
differences (a paired, clustered permutation test; exact when the rows are few), which
needs no normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from mtmcs.scoring.clustered import cluster_codes, normal_interval, spread
from mtmcs.scoring.item_values import ItemValue
from mtmcs.scoring.stats_extra import stats_module

PAIRED_METHOD = (
    "paired: mean of B − A over the items both runs answered; 95% interval normal with the "
    "cluster-robust (scenario row, CR1) standard error of the differences, never below the "
    "unclustered one; p-value: sign-flip permutation of whole rows' summed differences "
    "(two-sided; exact up to 13 rows, else 9,999 random flips, seed 0)"
)
RESAMPLES = 9999
SEED = 0


@dataclass(frozen=True, slots=True)
class Difference:
    """B − A: `delta`, its 95% interval `ci95`, over `n` item pairs in `clusters` rows;
    `ci95_unpaired` is the interval had the runs been independent samples (each figure's
    cluster-robust error over the same items, combined); `p_value` is filled by
    `with_p_value`."""

    delta: float | None
    ci95: tuple[float, float] | None
    n: int
    clusters: int
    ci95_unpaired: tuple[float, float] | None = None
    p_value: float | None = None


def pairs(
    a: Mapping[str, ItemValue], b: Mapping[str, ItemValue]
) -> tuple[list[float], list[Hashable], list[float], list[float]]:
    """The items both runs answered, in name order: B − A, their rows, A's and B's values."""
    names = sorted(a.keys() & b.keys())
    return (
        [b[name].value - a[name].value for name in names],
        [a[name].cluster for name in names],
        [a[name].value for name in names],
        [b[name].value for name in names],
    )


def paired_difference(a: Mapping[str, ItemValue], b: Mapping[str, ItemValue]) -> Difference:
    """B − A over the items both answered, with its paired, clustered 95% interval."""
    diffs, clusters, values_a, values_b = pairs(a, b)
    result = spread(diffs, clusters)
    first, second = spread(values_a, clusters), spread(values_b, clusters)
    if result is None or first is None or second is None:
        return Difference(None, None, 0, 0)
    unpaired = math.hypot(first.se_robust, second.se_robust)
    return Difference(
        delta=result.mean,
        ci95=normal_interval(result.mean, result.se_robust),
        n=result.n,
        clusters=result.clusters,
        ci95_unpaired=normal_interval(result.mean, unpaired),
    )


def cluster_totals(diffs: Sequence[float], clusters: Sequence[Hashable]) -> np.ndarray:
    """The summed difference of each cluster."""
    return np.bincount(cluster_codes(clusters), weights=np.asarray(diffs, dtype=float))


def sign_flip_p_value(
    diffs: Sequence[float],
    clusters: Sequence[Hashable],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float:
    """Two-sided p-value of "no difference": how often flipping the sign of each cluster's
    summed difference gives a total as far from 0 as the observed one (scipy's
    `permutation_test`: every flip when 2^clusters ≤ `resamples`, else `resamples` random
    ones from `seed`). Needs scipy (the `stats` extra)."""
    permutation_test = stats_module("scipy.stats", "the paired p-value").permutation_test
    totals = cluster_totals(diffs, clusters)
    if not np.any(totals):
        return 1.0
    result = permutation_test(
        (totals,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="two-sided",
        random_state=seed,
    )
    return float(min(1.0, result.pvalue))


def with_p_value(
    difference: Difference, a: Mapping[str, ItemValue], b: Mapping[str, ItemValue]
) -> Difference:
    """`difference` (of `a` and `b`) with its sign-flip p-value (`None` without pairs)."""
    if not difference.n:
        return difference
    diffs, clusters, _, _ = pairs(a, b)
    return replace(difference, p_value=sign_flip_p_value(diffs, clusters))
