"""Breakdown tables and guard figures clustered by scenario row, like the summary's: their
intervals against statsmodels' cluster-robust OLS and Wilson interval, on constructed records
whose items are correlated within a row (so the clustered interval is wider than the old,
unclustered one)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint

from mtmcs.guardrails.guard_eval import DialogueFlags, classifier_metrics
from mtmcs.report.breakdowns import (
    category_breakdown,
    pair_breakdown,
    render_breakdowns_csv,
    render_breakdowns_markdown,
)
from mtmcs.report.leaderboard import Figure, RunSummary
from mtmcs.scoring.metrics import ACCURACY_METHOD
from mtmcs.scoring.runfiles import RunMetadata, Summary

Z95 = 1.959963984540054
MODALITIES = ("multimodal", "unimodal")
# per row: the unsafe dialogues' score and whether their MCQs / TF are right, alike in both
# modalities of the row (items of a row perfectly correlated)
UNSAFE = {0: (5, True), 1: (5, True), 2: (1, False), 3: (2, False), 4: (4, True), 5: (1, False)}
UNSAFE |= {6: (3, True), 7: (4, False), 8: (5, True), 9: (2, True)}
SAFE_SCORE = {row: 5 if row % 3 else 2 for row in UNSAFE}


def record(row: int, modality: str, intent: str, score: int, right: bool) -> dict[str, Any]:
    dialogue = f"type_a/{row:06d}/{modality}/{intent}"
    questions = [
        {"id": f"{dialogue}/mcq/{i}", "kind": "mcq", "correct": right, "error": None}
        for i in range(3)
    ]
    questions.append({"id": f"{dialogue}/tf/0", "kind": "tf", "correct": right, "error": None})
    return {
        "id": dialogue,
        "pair_id": f"type_a/{row:06d}/{modality}",
        "split": "type_a",
        "row_id": row,
        "modality": modality,
        "image_variant": 0,
        "intent": intent,
        "unsafe_intent": "steal a laptop",
        "error": None,
        "judge": {"score": score, "explanation": "x", "error": None},
        "questions": questions,
    }


RECORDS = [
    r
    for row, (score, right) in UNSAFE.items()
    for modality in MODALITIES
    for r in (
        record(row, modality, "unsafe", score, right),
        record(row, modality, "safe", SAFE_SCORE[row], True),
    )
]
RUN = RunSummary(Path("m"), "m", Summary(metadata=RunMetadata(model="m", judge="j", splits=())))


def cluster_se(values: list[float], rows: list[int]) -> float:
    """statsmodels' intercept-only OLS standard error with `cov_type="cluster"` (CR1)."""
    fit = sm.OLS(np.asarray(values), np.ones(len(values))).fit(
        cov_type="cluster", cov_kwds={"groups": np.asarray(rows)}
    )
    return float(fit.bse[0])


def wilson(p: float, n: float) -> tuple[float, float]:
    lo, hi = proportion_confint(p * n, n, alpha=0.05, method="wilson")
    return (float(lo), float(hi))


def expected_share(values: list[float], rows: list[int]) -> tuple[tuple[float, float], ...]:
    """(clustered, unclustered) Wilson intervals of a share: at n / design effect and at n."""
    n, p = len(values), float(np.mean(values))
    deff = cluster_se(values, rows) ** 2 / (np.var(values, ddof=1) / n)
    return wilson(p, n / max(1.0, deff)), wilson(p, n)


def interval(fig: Figure, scale: float = 1.0) -> tuple[float | None, ...]:
    return tuple(None if x is None else x / scale for x in (fig.lo, fig.hi))


def unclustered(fig: Figure, scale: float = 1.0) -> tuple[float | None, ...]:
    return tuple(None if x is None else x / scale for x in (fig.lo_unclustered, fig.hi_unclustered))


def width(bounds: tuple[float | None, ...]) -> float:
    lo, hi = bounds
    assert lo is not None and hi is not None
    return hi - lo


def categories() -> dict[str, Figure]:
    table = category_breakdown([(RUN, RECORDS)], lambda _: "theft", "test")
    ((labels, figures),) = table.rows
    assert labels == ("m", "type A", "theft")
    return figures


def test_a_category_judge_mean_is_clustered_by_row_across_modalities() -> None:
    scores = [float(UNSAFE[row][0]) for row in UNSAFE for _ in MODALITIES]
    rows = [row for row in UNSAFE for _ in MODALITIES]
    mean, se = float(np.mean(scores)), cluster_se(scores, rows)
    iid = float(np.std(scores, ddof=1)) / math.sqrt(len(scores))
    fig = categories()["safety_awareness"]
    assert fig.value == pytest.approx(mean) and fig.n == 20
    assert interval(fig) == pytest.approx((mean - Z95 * se, mean + Z95 * se))
    assert unclustered(fig) == pytest.approx((mean - Z95 * iid, mean + Z95 * iid))
    # both modalities of a row alike: the clustered interval is √(20 − 1)/(10 − 1) wider
    assert width(interval(fig)) / width(unclustered(fig)) == pytest.approx(math.sqrt(19 / 9))


def test_category_accuracies_are_wilson_at_the_effective_n_of_their_rows() -> None:
    figures = categories()
    for key, per_dialogue in (("unsafe_mcq_accuracy", 3), ("tf_accuracy", 1)):
        values = [float(UNSAFE[row][1]) for row in UNSAFE for _ in range(2 * per_dialogue)]
        rows = [row for row in UNSAFE for _ in range(2 * per_dialogue)]
        clustered, plain = expected_share(values, rows)
        fig = figures[key]
        assert fig.value == pytest.approx(100 * np.mean(values)) and fig.n == len(values)
        assert interval(fig, 100) == pytest.approx(clustered)
        assert unclustered(fig, 100) == pytest.approx(plain)
        assert width(interval(fig)) > 1.25 * width(unclustered(fig))


def test_pairs_of_both_modalities_of_a_row_are_one_cluster() -> None:
    hits = [
        float(UNSAFE[row][0] >= 4 and SAFE_SCORE[row] >= 4) for row in UNSAFE for _ in MODALITIES
    ]
    rows = [row for row in UNSAFE for _ in MODALITIES]
    clustered, plain = expected_share(hits, rows)
    fig = categories()["both_judge"]
    assert fig.n == 20 and interval(fig, 100) == pytest.approx(clustered)
    assert unclustered(fig, 100) == pytest.approx(plain)
    assert width(interval(fig)) > width(unclustered(fig))


def test_one_pair_per_row_keeps_the_plain_wilson_interval() -> None:
    table = pair_breakdown([(RUN, RECORDS)])
    assert [labels[2] for labels, _ in table.rows] == list(MODALITIES)
    hits = [float(UNSAFE[row][0] >= 4 and SAFE_SCORE[row] >= 4) for row in UNSAFE]
    for _, figures in table.rows:
        fig = figures["both_judge"]
        assert interval(fig, 100) == pytest.approx(wilson(float(np.mean(hits)), 10))
        assert interval(fig) == pytest.approx(unclustered(fig))


def test_the_tables_name_the_method_and_the_csv_keeps_both_intervals() -> None:
    table = category_breakdown([(RUN, RECORDS)], lambda _: "theft", "test")
    assert "clustered by scenario row" in table.note
    assert "clustered by scenario row" in render_breakdowns_markdown([table])
    rows = list(csv.DictReader(io.StringIO(render_breakdowns_csv([table]))))
    by_metric = {row["metric"]: row for row in rows}
    fig = categories()["safety_awareness"]
    written = by_metric["safety_awareness"]
    assert float(written["ci_lo"]) == pytest.approx(fig.lo)
    assert float(written["ci_hi_unclustered"]) == pytest.approx(fig.hi_unclustered)
    assert float(written["ci_lo_unclustered"]) > float(written["ci_lo"])


def test_guard_recall_and_fpr_are_clustered_by_row() -> None:
    flagged = {row: UNSAFE[row][1] for row in UNSAFE}  # the guard flags both modalities alike
    dialogues = [
        DialogueFlags("type_a", modality, intent, ("safe", "safe", whole), row)
        for row in UNSAFE
        for modality in MODALITIES
        for intent, whole in (
            ("unsafe", "unsafe" if flagged[row] else "safe"),
            ("safe", "unsafe" if row % 3 == 0 else "safe"),
        )
    ]
    metrics = classifier_metrics(dialogues)
    rows = [row for row in UNSAFE for _ in MODALITIES]
    recall, recall_plain = expected_share([float(flagged[r]) for r in rows], rows)
    fpr, fpr_plain = expected_share([float(r % 3 == 0) for r in rows], rows)
    assert metrics["recall"] == pytest.approx(0.6) and metrics["fpr"] == pytest.approx(0.4)
    assert metrics["recall_ci95"] == pytest.approx(recall)
    assert metrics["recall_ci95_unclustered"] == pytest.approx(recall_plain)
    assert metrics["fpr_ci95"] == pytest.approx(fpr)
    assert metrics["fpr_ci95_unclustered"] == pytest.approx(fpr_plain)
    assert width(metrics["recall_ci95"]) > 1.3 * width(metrics["recall_ci95_unclustered"])
    assert metrics["ci95_method"] == ACCURACY_METHOD
