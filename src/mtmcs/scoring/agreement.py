"""How far raters of the same dialogues agree: judges of a run and its rejudgings, and human
labellers (`mtmcs agreement`). Pure statistics over scores already read.

A rater gives some dialogues a category 1–5 (a judge verdict or a human label; a verdict
score is an integer 1–5 already, `category` refuses anything else). For each benchmark
metric (safety-awareness: unsafe dialogues; helpfulness: safe ones) and each cell (split ×
modality, and every dialogue of the metric pooled as split `all`, modality `all`):

- every pair of raters, over the dialogues both scored: quadratic-weighted Cohen's kappa
  over the categories 1–5 (scikit-learn's `cohen_kappa_score(labels=[1..5],
  weights="quadratic")`), Spearman's rho (scipy), exact and within-one agreement, the 5 × 5
  confusion matrix (rows: the first rater, columns: the second) and n;
- all raters together: Krippendorff's alpha, ordinal (the `krippendorff` package), over the
  dialogues at least two raters scored.

Each figure has a 95% percentile bootstrap interval: the dialogues resampled with
replacement (`scipy.stats.bootstrap` over their indices, a fixed seed), each resample's
figure computed from its summed confusion (or coincidence) counts with the libraries'
formulas, resamples where the figure is undefined (a rater constant in the resample) left
out. A figure is `None` where it is
undefined (kappa and rho when a rater gives one category only, anything over no dialogue).
scipy, scikit-learn and krippendorff are the `stats` extra, imported when first needed.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint

Measure = Literal["safety_awareness", "helpfulness"]
MEASURES: dict[Measure, str] = {"safety_awareness": "unsafe", "helpfulness": "safe"}
"""Each judged metric and the intent of the dialogues it is judged on."""
CATEGORIES = (1, 2, 3, 4, 5)
POOLED = "all"
RESAMPLES = 1000
SEED = 0
BATCH = 100  # resamples summed at once (memory: BATCH × dialogues × 25 floats)


def category(value: object) -> int:
    """A score as its category 1–5: an integer 1–5 (or a number equal to one, `4.0`);
    anything else is a `ValueError` (a half score is not rounded: the rubric asks for whole
    scores, the lower one when torn)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a score 1–5")
    if not math.isfinite(value) or value != int(value) or int(value) not in CATEGORIES:
        raise ValueError(f"{value!r} is not a whole score 1–5")
    return int(value)


@dataclass(frozen=True, slots=True)
class Unit:
    """A dialogue rated: its split, metrics cell (modality, `multimodal@vK` for a variant
    image) and the metric its score belongs to."""

    split: str
    cell: str
    measure: Measure


@dataclass(frozen=True, slots=True)
class Rater:
    """A judge (one run) or a human labeller: dialogue id → category 1–5."""

    name: str
    scores: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure and its 95% bootstrap interval (`None` when undefined)."""

    value: float | None
    ci95: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci95": None if self.ci95 is None else list(self.ci95)}


@dataclass(frozen=True, slots=True)
class PairAgreement:
    """Two raters over the dialogues both scored."""

    a: str
    b: str
    n: int
    kappa: Estimate
    rho: Estimate
    exact: Estimate
    within_one: Estimate
    confusion: tuple[tuple[int, ...], ...]  # rows: a's category 1–5, columns: b's

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "n": self.n,
            "quadratic_kappa": self.kappa.as_dict(),
            "spearman_rho": self.rho.as_dict(),
            "exact_agreement": self.exact.as_dict(),
            "within_one_agreement": self.within_one.as_dict(),
            "confusion": [list(row) for row in self.confusion],
        }


@dataclass(frozen=True, slots=True)
class CellAgreement:
    """Every rater of one metric on one cell (`split`/`cell` `all`: pooled)."""

    metric: Measure
    split: str
    cell: str
    raters: tuple[str, ...]
    n: int  # dialogues at least two raters scored
    alpha: Estimate
    pairs: tuple[PairAgreement, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """One object of `agreement.json`."""
        return {
            "metric": self.metric,
            "split": self.split,
            "modality": self.cell,
            "raters": list(self.raters),
            "n": self.n,
            "krippendorff_alpha_ordinal": self.alpha.as_dict(),
            "pairs": [pair.as_dict() for pair in self.pairs],
            "categories": list(CATEGORIES),
        }


@dataclass(frozen=True)
class _Stats:
    """The `stats` extra's modules."""

    np: Any
    scipy_stats: Any
    sklearn_metrics: Any
    krippendorff: Any


def _stats() -> _Stats:
    try:
        return _Stats(
            importlib.import_module("numpy"),
            importlib.import_module("scipy.stats"),
            importlib.import_module("sklearn.metrics"),
            importlib.import_module("krippendorff"),
        )
    except ImportError as error:
        raise ConfigError(
            f"judge agreement needs scipy, scikit-learn and krippendorff ({error.name} is "
            f"missing): {install_hint('stats')}"
        ) from error


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _kappa(s: _Stats, a: Any, b: Any) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined: nan, reported as None
        return float(
            s.sklearn_metrics.cohen_kappa_score(a, b, labels=list(CATEGORIES), weights="quadratic")
        )


def _rho(s: _Stats, a: Any, b: Any) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant rater: nan
        return float(s.scipy_stats.spearmanr(a, b).statistic)


def _alpha(s: _Stats, data: Any) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no expected disagreement: nan, reported as None
            return float(
                s.krippendorff.alpha(
                    reliability_data=data,
                    level_of_measurement="ordinal",
                    value_domain=CATEGORIES,
                )
            )
    except ValueError:  # one value only: alpha is undefined
        return math.nan


# --- the bootstrap -------------------------------------------------------------------------
# A resample of the dialogues is summed from per-dialogue 5 × 5 contributions (a pair: its
# cell of the confusion matrix; all raters: its share of the coincidence matrix), and each
# figure is computed from those sums for every resample at once. The same formulas as the
# libraries' (tests check them against each other); a library call per resample would take
# minutes for a full run.


def _kappa_of(s: _Stats, confusion: Any) -> Any:
    """Quadratic-weighted kappa of confusion matrices (..., 5, 5)."""
    k = len(CATEGORIES)
    i = s.np.arange(k)
    weights = (i[:, None] - i[None, :]) ** 2
    n = confusion.sum(axis=(-2, -1))
    expected = confusion.sum(axis=-1)[..., :, None] * confusion.sum(axis=-2)[..., None, :]
    with s.np.errstate(divide="ignore", invalid="ignore"):
        return 1 - (weights * confusion).sum(axis=(-2, -1)) * n / (weights * expected).sum(
            axis=(-2, -1)
        )


def _ranks(s: _Stats, counts: Any) -> Any:
    """The average rank of each category given its counts (..., 5)."""
    before = s.np.cumsum(counts, axis=-1) - counts
    return before + (counts + 1) / 2


def _rho_of(s: _Stats, confusion: Any) -> Any:
    """Spearman's rho (average ranks for ties) of confusion matrices (..., 5, 5)."""
    rows, cols = confusion.sum(axis=-1), confusion.sum(axis=-2)
    n = rows.sum(axis=-1, keepdims=True)
    x = _ranks(s, rows) - (n + 1) / 2
    y = _ranks(s, cols) - (n + 1) / 2
    covariance = (confusion * x[..., :, None] * y[..., None, :]).sum(axis=(-2, -1))
    spread = s.np.sqrt((rows * x**2).sum(axis=-1) * (cols * y**2).sum(axis=-1))
    with s.np.errstate(divide="ignore", invalid="ignore"):
        return covariance / spread


def _agreement_of(s: _Stats, confusion: Any, within: int) -> Any:
    """Share of dialogues whose two scores are at most `within` apart."""
    i = s.np.arange(len(CATEGORIES))
    close = s.np.abs(i[:, None] - i[None, :]) <= within
    with s.np.errstate(divide="ignore", invalid="ignore"):
        return (confusion * close).sum(axis=(-2, -1)) / confusion.sum(axis=(-2, -1))


def _alpha_of(s: _Stats, coincidence: Any) -> Any:
    """Krippendorff's ordinal alpha of coincidence matrices (..., 5, 5)."""
    totals = coincidence.sum(axis=-1)  # n_c
    n = totals.sum(axis=-1)
    cumulative = s.np.cumsum(totals, axis=-1)
    k = len(CATEGORIES)
    c, g = s.np.triu_indices(k)
    delta = s.np.zeros((*totals.shape[:-1], k, k))
    # distance of c ≤ k: (n_c + … + n_k) − (n_c + n_k) / 2, squared; symmetric
    between = cumulative[..., g] - cumulative[..., c] + totals[..., c]
    value = (between - (totals[..., c] + totals[..., g]) / 2) ** 2
    delta[..., c, g] = value
    delta[..., g, c] = value
    observed = (coincidence * delta).sum(axis=(-2, -1))
    expected = (totals[..., :, None] * totals[..., None, :] * delta).sum(axis=(-2, -1))
    with s.np.errstate(divide="ignore", invalid="ignore"):
        return 1 - (n - 1) * observed / expected


def _coincidences(s: _Stats, data: Any) -> Any:
    """Each dialogue's contribution to the coincidence matrix (units, 5, 5): pairs of its
    values from different raters, over its values less one."""
    k = len(CATEGORIES)
    counts = s.np.stack([(data == value).sum(axis=0) for value in CATEGORIES], axis=-1)
    pairs = counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * s.np.eye(k)
    return pairs / (counts.sum(axis=-1) - 1)[:, None, None]


def _bootstrap(
    s: _Stats,
    contributions: Any,
    figures: Callable[[Any], Any],
    resamples: int,
    seed: int,
) -> list[tuple[float, float] | None]:
    """95% percentile intervals of each figure of the summed contributions (units, 5, 5),
    the units resampled with replacement (`scipy.stats.bootstrap`); undefined resamples left
    out, `None` with fewer than two units or when most resamples are undefined."""
    outputs = len(figures(contributions.sum(axis=0)))
    units = len(contributions)
    if units < 2 or resamples < 1:
        return [None] * outputs

    def statistic(index: Any, axis: int = -1) -> Any:
        return s.np.stack(figures(contributions[index.astype(int)].sum(axis=-3)))

    with warnings.catch_warnings():  # scipy's own interval of undefined resamples: unused
        warnings.filterwarnings("ignore", message="The BCa confidence interval")
        result = s.scipy_stats.bootstrap(
            (s.np.arange(units),),
            statistic,
            vectorized=True,
            batch=BATCH,
            n_resamples=resamples,
            method="percentile",
            random_state=s.np.random.default_rng(seed),
        )
    intervals: list[tuple[float, float] | None] = []
    for row in s.np.atleast_2d(result.bootstrap_distribution):
        defined = row[s.np.isfinite(row)]
        if len(defined) * 2 < len(row):
            intervals.append(None)
            continue
        lo, hi = s.np.percentile(defined, [2.5, 97.5])
        intervals.append((float(lo), float(hi)))
    return intervals


def _pair(
    s: _Stats, a: Rater, b: Rater, ids: Sequence[str], resamples: int, seed: int
) -> PairAgreement:
    both = [i for i in ids if i in a.scores and i in b.scores]
    x = s.np.array([a.scores[i] for i in both], dtype=int)
    y = s.np.array([b.scores[i] for i in both], dtype=int)
    k = len(CATEGORIES)
    contributions = s.np.zeros((len(both), k, k))
    contributions[s.np.arange(len(both)), x - 1, y - 1] = 1
    confusion = contributions.sum(axis=0).astype(int)

    def figures(matrix: Any) -> list[Any]:
        return [
            _kappa_of(s, matrix),
            _rho_of(s, matrix),
            _agreement_of(s, matrix, 0),
            _agreement_of(s, matrix, 1),
        ]

    values = (
        [_kappa(s, x, y), _rho(s, x, y), *(float(v) for v in figures(confusion)[2:])]
        if both
        else [math.nan] * 4
    )
    intervals = _bootstrap(s, contributions, figures, resamples, seed)
    kappa, rho, exact, within = (
        Estimate(value, ci if value is not None else None)
        for value, ci in zip((_finite(v) for v in values), intervals, strict=True)
    )
    return PairAgreement(
        a.name,
        b.name,
        len(both),
        kappa,
        rho,
        exact,
        within,
        tuple(tuple(int(c) for c in row) for row in confusion),
    )


def _cell(
    s: _Stats,
    measure: Measure,
    split: str,
    cell: str,
    ids: Sequence[str],
    raters: Sequence[Rater],
    resamples: int,
    seed: int,
) -> CellAgreement:
    data = s.np.array([[r.scores.get(i, math.nan) for i in ids] for r in raters], dtype=float)
    data = data.reshape(len(raters), len(ids))
    data = data[:, (~s.np.isnan(data)).sum(axis=0) >= 2]  # pairable dialogues
    units = data.shape[1]
    alpha, interval = None, None
    if units:
        alpha = _finite(_alpha(s, data))
        if alpha is not None:
            (interval,) = _bootstrap(
                s, _coincidences(s, data), lambda m: [_alpha_of(s, m)], resamples, seed
            )
    return CellAgreement(
        measure,
        split,
        cell,
        tuple(r.name for r in raters),
        units,
        Estimate(alpha, interval),
        tuple(_pair(s, a, b, ids, resamples, seed) for a, b in combinations(raters, 2)),
    )


def agreement(
    units: Mapping[str, Unit],
    raters: Sequence[Rater],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> list[CellAgreement]:
    """Agreement of `raters` on `units` (dialogue id → unit), per metric × split × cell,
    then pooled per metric (see the module)."""
    s = _stats()
    cells: list[CellAgreement] = []
    for measure in MEASURES:
        ids = sorted(i for i, unit in units.items() if unit.measure == measure)
        groups = sorted({(units[i].split, units[i].cell) for i in ids})
        for split, cell in [*groups, (POOLED, POOLED)]:
            chosen = [
                i
                for i in ids
                if split == POOLED or (units[i].split, units[i].cell) == (split, cell)
            ]
            cells.append(_cell(s, measure, split, cell, chosen, raters, resamples, seed))
    return cells
