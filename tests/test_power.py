"""Power analysis: the pairs needed against the noncentral t, the design effect and the rows
or items per row it implies, and `mtmcs power` on two scripted runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from command import invoke
from fakeserver import FakeServer
from mtmcs.scoring.power import Measured, measure, plan, required_pairs
from scripted_pair import STRONG, WEAK, reply, run_pair


def paired_t_power(pairs: float, effect: float, alpha: float = 0.05) -> float:
    """Power of a two-sided one-sample t test, from the noncentral t distribution."""
    df = pairs - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = effect * math.sqrt(pairs)
    return float(
        stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
    )


@pytest.mark.parametrize(("delta", "sd"), [(0.05, 0.4), (0.3, 1.1), (-0.1, 0.5)])
def test_required_pairs_give_the_asked_power(delta: float, sd: float) -> None:
    pairs = required_pairs(delta, sd)
    assert paired_t_power(pairs, abs(delta) / sd) == pytest.approx(0.8, abs=1e-6)
    normal = ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / delta) ** 2
    assert pairs == pytest.approx(normal, rel=0.05)  # the t test needs a little more


def test_rows_needed_scale_with_the_design_effect() -> None:
    measured = Measured(n=800, clusters=200, cluster_size=4.0, sd=0.5, icc=0.1, paired=True)
    result = plan(measured, 0.05)
    pairs = TTestPower().solve_power(effect_size=0.1, alpha=0.05, power=0.8)
    deff = 1 + 3 * 0.1
    assert result.pairs == pytest.approx(pairs)
    assert result.design_effect == pytest.approx(deff)
    assert result.rows == math.ceil(pairs * deff / 4)
    # with the 200 rows, items per row m' give exactly the pairs needed
    m = result.items_per_row
    assert m is not None and 200 * m / (1 + (m - 1) * 0.1) == pytest.approx(pairs)
    assert result.per_row_factor == pytest.approx(m / 4)


def test_no_number_of_items_per_row_beats_rows_over_icc() -> None:
    measured = Measured(n=40, clusters=10, cluster_size=4.0, sd=0.5, icc=0.5, paired=True)
    result = plan(measured, 0.05)  # ~ 785 pairs needed, 10 rows are worth at most 20
    assert result.items_per_row is None and result.rows > 10


def test_measured_icc_of_perfectly_correlated_rows_is_one() -> None:
    groups = [g for g in range(100) for _ in range(5)]
    values = [float(g % 2) for g in groups]
    measured = measure(values, groups, paired=True)
    assert measured is not None
    assert measured.icc == pytest.approx(1.0, abs=0.01) and measured.cluster_size == 5.0
    assert measured.sd == pytest.approx(np.std(values, ddof=1))
    one_run = measure(values, groups, paired=False)
    assert one_run is not None and one_run.sd == pytest.approx(math.sqrt(2) * measured.sd)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with FakeServer(reply) as server:
        return run_pair(server, tmp_path_factory.mktemp("pair"), limit=6)


def test_power_command_sizes_from_the_paired_differences_of_two_runs(
    pair: dict[str, Path],
) -> None:
    result = invoke(
        "power", "--metric", "mcq_accuracy", "--delta", "10",
        "--runs", str(pair[WEAK]), "--runs", str(pair[STRONG]),
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    diffs: dict[str, float] = {}
    for run, sign in ((pair[WEAK], -1.0), (pair[STRONG], 1.0)):
        for line in (run / "dialogues.jsonl").read_text().splitlines():
            record = json.loads(line)
            for q in record["questions"]:
                if q["kind"] == "mcq":
                    diffs[q["id"]] = diffs.get(q["id"], 0.0) + sign * float(q["correct"])
    sd = float(np.std(list(diffs.values()), ddof=1))
    pairs = TTestPower().solve_power(effect_size=0.10 / sd, alpha=0.05, power=0.8)
    shown = re.search(r"independent pairs needed\s*│\s*([\d.]+)", result.stdout)
    assert shown is not None and float(shown.group(1)) == pytest.approx(pairs, abs=0.05)
    assert re.search(r"items, rows\s*│\s*96, 12\s*│", result.stdout)  # 6 rows × 2 splits, 8 MCQs
    assert "paired differences of 2 runs" in result.stdout
    assert "design effect = 1 + (m − 1)·ICC" in result.stdout


def test_power_command_with_one_run_says_what_it_assumes(pair: dict[str, Path]) -> None:
    result = invoke(
        "power", "--metric", "helpfulness", "--delta", "0.2", "--runs", str(pair[WEAK]),
        "--rows", "752", env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "√2 × the run's sd" in result.stdout and "752 rows" in result.stdout


def test_power_command_refuses_an_unknown_metric(pair: dict[str, Path]) -> None:
    result = invoke("power", "--metric", "nope", "--delta", "5", "--runs", str(pair[WEAK]))
    assert result.returncode == 2 and "unknown metric 'nope'" in result.stderr
