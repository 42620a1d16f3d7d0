"""Agreement figures computed by hand, independently of the libraries `mtmcs agreement`
uses: kappa from the confusion matrix and its quadratic weights, rho as the correlation of
average ranks, Krippendorff's ordinal alpha from the coincidence matrix."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

K = 5


def confusion(a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    matrix = np.zeros((K, K))
    for x, y in zip(a, b, strict=True):
        matrix[x - 1, y - 1] += 1
    return matrix


def kappa_by_hand(a: Sequence[int], b: Sequence[int]) -> float:
    observed = confusion(a, b) / len(a)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i = np.arange(K)
    weights = (i[:, None] - i[None, :]) ** 2 / (K - 1) ** 2
    return float(1 - (weights * observed).sum() / (weights * expected).sum())


def average_ranks(values: Sequence[int]) -> list[float]:
    ordered = sorted(values)
    return [
        ordered.index(v) + 1 + (ordered.count(v) - 1) / 2  # first position, ties averaged
        for v in values
    ]


def rho_by_hand(a: Sequence[int], b: Sequence[int]) -> float:
    x, y = np.array(average_ranks(a)), np.array(average_ranks(b))
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def alpha_by_hand(units: Sequence[Sequence[int]]) -> float:
    """Krippendorff's ordinal alpha from the coincidence matrix of the units' values."""
    coincidence = np.zeros((K, K))
    for values in units:
        if len(values) < 2:
            continue
        for i, j in combinations(range(len(values)), 2):
            c, k = values[i] - 1, values[j] - 1
            coincidence[c, k] += 1 / (len(values) - 1)
            coincidence[k, c] += 1 / (len(values) - 1)
    totals = coincidence.sum(axis=1)
    n = totals.sum()

    def delta(c: int, k: int) -> float:
        low, high = min(c, k), max(c, k)
        return float((totals[low : high + 1].sum() - (totals[c] + totals[k]) / 2) ** 2)

    observed = sum(coincidence[c, k] * delta(c, k) for c in range(K) for k in range(K))
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in range(K) for k in range(K))
    return float(1 - (n - 1) * observed / expected)
