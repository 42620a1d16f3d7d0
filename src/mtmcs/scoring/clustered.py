"""Standard errors of a mean over clustered items (numpy only; no optional extra needed).

Items of one scenario row are correlated: the questions of a dialogue, the four dialogues
of a row, the safe and unsafe dialogues that share turns, the variant images of a row. The
cluster-robust variance of a mean (Miller 2024, "Adding Error Bars to Evals", appendix A;
inspect_ai's `stderr(cluster=...)`) sums the deviations within each cluster before
squaring: `Var = C/(C−1) · Σ_c (Σ_i (x_ci − x̄))² / n²` over `C` clusters and `n` items.
The factor `C/(C−1)` is the finite-cluster correction (CR1) that statsmodels applies to an
intercept-only OLS with `cov_type="cluster"` (its `(n−1)/(n−k)` factor is 1 for `k = 1`);
with one item per cluster the formula is the usual `s²/n`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95% normal critical value."""


@dataclass(frozen=True, slots=True)
class Spread:
    """A mean over `n` items in `clusters` clusters, with its standard errors.

    `se`: unclustered (sample standard deviation / √n; 0 below 2 items); `se_clustered`:
    cluster-robust (CR1; `None` below 2 clusters); `cluster_size`: the size-weighted mean
    cluster size `Σ m_c² / n` (the `m` of the design effect `1 + (m − 1)·ICC`).
    """

    mean: float
    n: int
    clusters: int
    se: float
    se_clustered: float | None
    cluster_size: float

    @property
    def design_effect(self) -> float | None:
        """Clustered over unclustered variance; `None` when either is unmeasurable (no
        spread at all, or fewer than 2 clusters)."""
        if self.se_clustered is None or self.se == 0:
            return None
        return (self.se_clustered / self.se) ** 2

    @property
    def se_robust(self) -> float:
        """The clustered standard error, never below the unclustered one (a design effect
        under 1, from few clusters or negative correlation, is not trusted)."""
        return max(self.se, self.se_clustered or 0.0)

    @property
    def effective_n(self) -> float:
        """`n` over the design effect (floored at 1): the independent items it is worth."""
        return self.n / max(1.0, self.design_effect or 1.0)

    @property
    def icc(self) -> float | None:
        """The intra-cluster correlation the design effect implies: `(deff − 1)/(m − 1)`
        (`None` when clusters are single items or the design effect is unmeasurable)."""
        deff = self.design_effect
        if deff is None or self.cluster_size <= 1:
            return None
        return (deff - 1) / (self.cluster_size - 1)


def cluster_codes(clusters: Sequence[Hashable]) -> np.ndarray:
    """Each item's cluster as an integer 0…C−1."""
    index: dict[Hashable, int] = {}
    return np.fromiter((index.setdefault(c, len(index)) for c in clusters), dtype=np.intp)


def spread(values: Sequence[float], clusters: Sequence[Hashable]) -> Spread | None:
    """The mean of `values` and its standard errors, `clusters[i]` naming item i's cluster
    (`None` when there are no values)."""
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster ids")
    if not values:
        return None
    x = np.asarray(values, dtype=float)
    n = x.size
    mean = float(x.mean())
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    codes = cluster_codes(clusters)
    sizes = np.bincount(codes)
    count = sizes.size
    se_clustered = None
    if count > 1:
        totals = np.bincount(codes, weights=x - mean)
        se_clustered = float(math.sqrt(count / (count - 1) * float(totals @ totals)) / n)
    return Spread(mean, n, count, se, se_clustered, float(sizes @ sizes) / n)


def wilson(p: float, n: float) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion `p` observed over `n` (> 0) items; `n`
    may be an effective sample size."""
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_interval(
    mean: float, se: float, bounds: tuple[float, float] | None = None
) -> tuple[float, float]:
    """`mean ± 1.96·se`, clipped to `bounds` when given."""
    lo, hi = mean - Z95 * se, mean + Z95 * se
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return (lo, hi)
