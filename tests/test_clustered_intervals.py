"""Intervals clustered by scenario row: the cluster-robust standard error against statsmodels,
and the summary's figures against independent computations on constructed outcomes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint

from mtmcs.protocol.judge import Verdict
from mtmcs.protocol.types import Dialogue, Question
from mtmcs.scoring.clustered import Z95, spread
from mtmcs.scoring.metrics import (
    ACCURACY_METHOD,
    MEAN_METHOD,
    Stat,
    accuracy,
    compute_metrics,
    judge_mean,
)
from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome
from mtmcs.scoring.runfiles import Summary


def clustered_se(values: list[float], groups: list[int]) -> float | None:
    result = spread(values, groups)
    return None if result is None else result.se_clustered


def statsmodels_cluster_se(values: list[float], groups: list[int]) -> float:
    """The intercept-only OLS standard error with `cov_type="cluster"` (statsmodels' default
    correction G/(G−1)·(N−1)/(N−K), which for K = 1 is G/(G−1): CR1)."""
    fit = sm.OLS(np.asarray(values), np.ones(len(values))).fit(
        cov_type="cluster", cov_kwds={"groups": np.asarray(groups)}
    )
    return float(fit.bse[0])


def test_clustered_se_matches_statsmodels_ols_with_clustered_covariance() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 9, size=60)
    groups = [g for g, size in enumerate(sizes) for _ in range(size)]
    effects = rng.normal(0, 1, size=60)
    values = [float(effects[g] + rng.normal(0, 0.5)) for g in groups]
    assert clustered_se(values, groups) == pytest.approx(
        statsmodels_cluster_se(values, groups), rel=1e-10
    )
    binary = [float(rng.random() < 0.3 + 0.4 * (g % 2)) for g in groups]
    assert clustered_se(binary, groups) == pytest.approx(
        statsmodels_cluster_se(binary, groups), rel=1e-10
    )


def test_with_one_item_per_cluster_the_clustered_se_is_the_usual_one() -> None:
    values = [1.0, 3.0, 4.0, 2.0, 5.0, 5.0, 1.0]
    result = spread(values, list(range(len(values))))
    assert result is not None
    assert result.se_clustered == pytest.approx(np.std(values, ddof=1) / math.sqrt(len(values)))
    assert result.design_effect == pytest.approx(1.0)


def test_perfectly_correlated_clusters_widen_the_interval_by_the_root_of_their_size() -> None:
    size, clusters = 4, 200
    groups = [g for g in range(clusters) for _ in range(size)]
    values = [float(g % 2) for g in groups]  # every item of a cluster alike
    result = spread(values, groups)
    assert result is not None and result.se_clustered is not None
    n = size * clusters
    # independent computation: variance of the cluster means over `clusters` clusters
    assert result.design_effect == pytest.approx((n - 1) / (clusters - 1))
    assert result.se_clustered / result.se == pytest.approx(math.sqrt(size), rel=0.01)
    assert result.icc == pytest.approx(1.0, abs=0.01)


def test_independent_items_in_clusters_keep_about_the_unclustered_width() -> None:
    rng = np.random.default_rng(3)
    groups = [g for g in range(400) for _ in range(3)]
    values = [float(rng.random() < 0.6) for _ in groups]
    result = spread(values, groups)
    assert result is not None and result.se_clustered is not None
    assert result.se_clustered / result.se == pytest.approx(1.0, abs=0.1)


# --- the summary's figures ----------------------------------------------------------------


def dialogue(row: int, intent: str = "unsafe", modality: str = "multimodal") -> Dialogue:
    return Dialogue(
        id=f"type_a/{row:06d}/{modality}/{intent}",
        pair_id=f"type_a/{row:06d}/{modality}",
        split="type_a",
        row_id=row,
        modality=modality,  # type: ignore[arg-type]
        intent=intent,  # type: ignore[arg-type]
        turns=("r1", "r2", "r3"),
        image_id=None,
    )


def mcq(d: Dialogue, index: int, right: bool) -> QuestionOutcome:
    question = Question(f"{d.id}/mcq/{index}", "mcq", "q?", ("a", "b", "c", "d"), "A")
    return QuestionOutcome(question, d, "A" if right else "B", "A" if right else "B")


def wilson(p: float, n: float) -> tuple[float, float]:
    """statsmodels' Wilson interval at a (possibly fractional) n."""
    lo, hi = proportion_confint(p * n, n, alpha=0.05, method="wilson")
    return (float(lo), float(hi))


def test_accuracy_is_clustered_by_row_wilson_at_the_effective_n() -> None:
    # 10 rows × 4 MCQs: rows 0–5 all right, rows 6–9 all wrong, except one answer each
    outcomes = []
    for row in range(10):
        d = dialogue(row)
        for index in range(4):
            right = (row < 6) != (index == 0 and row in (2, 8))
            outcomes.append(mcq(d, index, right))
    stat = accuracy(outcomes)
    values = [float(o.correct) for o in outcomes]
    groups = [o.dialogue.row_id for o in outcomes]
    n, p = len(values), float(np.mean(values))
    deff = statsmodels_cluster_se(values, groups) ** 2 / (np.var(values, ddof=1) / n)
    assert stat.value == p and stat.n == n and stat.clusters == 10
    assert stat.design_effect == pytest.approx(deff)
    assert stat.ci95 == pytest.approx(wilson(p, n / deff))
    assert stat.ci95_unclustered == pytest.approx(wilson(p, n))
    assert stat.ci95_method == ACCURACY_METHOD
    assert stat.ci95 is not None and stat.ci95_unclustered is not None
    assert stat.ci95[1] - stat.ci95[0] > 1.5 * (stat.ci95_unclustered[1] - stat.ci95_unclustered[0])


def test_judge_mean_is_clustered_by_row_across_intents_and_modalities() -> None:
    scores = {0: 5, 1: 5, 2: 1, 3: 1, 4: 3, 5: 4}
    outcomes = [
        DialogueOutcome(dialogue(row, "unsafe", modality), (), Verdict(score, "x"), "raw")
        for row, score in scores.items()
        for modality in ("multimodal", "unimodal")
    ]
    stat = judge_mean(outcomes)
    values = [float(o.verdict.score) for o in outcomes if o.verdict]
    groups = [o.dialogue.row_id for o in outcomes]
    se = statsmodels_cluster_se(values, groups)
    mean = float(np.mean(values))
    assert stat.clusters == 6 and stat.ci95_method == MEAN_METHOD
    assert stat.ci95 == pytest.approx((max(1.0, mean - Z95 * se), min(5.0, mean + Z95 * se)))
    iid = np.std(values, ddof=1) / math.sqrt(len(values))
    assert stat.ci95_unclustered == pytest.approx((mean - Z95 * iid, mean + Z95 * iid))


def test_a_design_effect_under_one_keeps_the_unclustered_interval() -> None:
    # each row has one right and one wrong answer: the clustered variance is 0
    outcomes = [mcq(dialogue(row), i, i == 0) for row in range(8) for i in range(2)]
    stat = accuracy(outcomes)
    assert stat.design_effect == pytest.approx(0.0)
    assert stat.ci95 == stat.ci95_unclustered == pytest.approx(wilson(0.5, 16))


def test_the_overall_mcq_figure_pools_modalities_within_a_row() -> None:
    questions = [
        mcq(dialogue(row, "safe", modality), i, row % 2 == 0)
        for row in range(6)
        for modality in ("multimodal", "unimodal")
        for i in range(2)
    ]
    overall = compute_metrics(questions, [], splits=("type_a",))["type_a"]["overall"]
    assert overall["mcq_accuracy"].clusters == 6
    assert overall["mcq_accuracy"].design_effect == pytest.approx((24 - 1) / (6 - 1))


def test_a_summary_written_before_clustering_still_reads() -> None:
    old = {"value": 0.5, "n": 4, "unparseable": 0, "ci95": [0.15, 0.85], "errors": 0}
    text = json.dumps(
        {
            "metadata": {"model": "m", "judge": "j", "splits": ["type_a"]},
            "type_a": {"multimodal": {"tf_accuracy": old}, "unimodal": {}},
        }
    )
    stat = Summary.model_validate_json(text).stat("type_a", "multimodal", "tf_accuracy")
    assert stat == Stat(0.5, 4, 0, (0.15, 0.85), 0)
    assert stat.ci95_method is None and stat.ci95_unclustered is None
