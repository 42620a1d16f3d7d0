"""Defence − undefended deltas (the paper's Table 3 layout)."""

from __future__ import annotations

import math

import pytest

from mtmcs.report.deltas import Z95, delta


def test_delta_of_two_accuracies_in_percentage_points_with_a_combined_interval() -> None:
    defended = {"value": 0.6, "ci95": [0.5, 0.7]}
    baseline = {"value": 0.5, "ci95": [0.42, 0.58]}
    result = delta(defended, baseline, 100)
    assert result.value == pytest.approx(10.0)
    half = Z95 * math.hypot(0.2 / (2 * Z95), 0.16 / (2 * Z95)) * 100
    assert (result.lo, result.hi) == (pytest.approx(10 - half), pytest.approx(10 + half))


def test_delta_with_a_missing_figure_is_empty() -> None:
    assert delta({"value": None, "ci95": None}, {"value": 3.0, "ci95": [2.5, 3.5]}, 1).value is None
