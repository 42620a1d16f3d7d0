"""Defence − undefended deltas (the paper's Table 3 layout)."""

from __future__ import annotations

import math
from pathlib import Path

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


def test_report_shows_each_defended_run_against_its_undefended_run(tmp_path: Path) -> None:
    from mtmcs.engine.run import RunConfig, run_benchmark
    from mtmcs.report.writer import write_report

    for name, defense in (("plain", None), ("patched", "dpp")):
        run_benchmark(
            RunConfig(
                model="baseline/random",
                judge="baseline/keyword",
                dataset="sample",
                limit=2,
                out=tmp_path / name,
                defense=defense,
                defense_texts_dir=Path(__file__).parent / "defence_texts",
            )
        )
    write_report([tmp_path / "plain", tmp_path / "patched"], tmp_path / "report", ["md"])
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    section = markdown.split("## Defences: change against the undefended run", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| dpp |")]
    assert len(rows) == 4  # 2 types × 2 modalities
    assert all("baseline/random + dpp (vs baseline/random)" in row for row in rows)
