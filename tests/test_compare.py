"""Paired comparisons of two runs: `mtmcs.scoring.paired` on constructed items, `mtmcs compare`
on two scripted runs over the same items, and the report's defence deltas."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

from command import invoke
from fakeserver import FakeServer
from mtmcs.scoring.clustered import Z95
from mtmcs.scoring.item_values import ItemValue
from mtmcs.scoring.paired import paired_difference, sign_flip_p_value, with_p_value
from scripted_pair import STRONG, WEAK, reply, run_pair


def items(values: list[float], size: int = 4) -> dict[str, ItemValue]:
    """Items named i0, i1, … in clusters of `size`."""
    return {f"i{i}": ItemValue(("type_a", i // size), v) for i, v in enumerate(values)}


def cluster_se(diffs: list[float], groups: list[int]) -> float:
    """statsmodels' intercept-only OLS clustered standard error (CR1 for one parameter)."""
    fit = sm.OLS(np.asarray(diffs), np.ones(len(diffs))).fit(
        cov_type="cluster", cov_kwds={"groups": np.asarray(groups)}
    )
    return float(fit.bse[0])


def test_identical_runs_differ_by_zero_with_a_zero_width_interval() -> None:
    rng = np.random.default_rng(1)
    a = items([float(v) for v in rng.integers(0, 2, 80)])
    result = with_p_value(paired_difference(a, a), a, a)
    assert result.delta == 0.0 and result.ci95 == (0.0, 0.0)
    assert result.p_value == 1.0 and result.n == 80 and result.clusters == 20
    assert result.ci95_unpaired is not None and result.ci95_unpaired[1] > 0.1


def test_independent_runs_give_about_the_unpaired_width() -> None:
    rng = np.random.default_rng(2)
    a = items([float(v) for v in rng.random(2000) < 0.5])
    b = items([float(v) for v in rng.random(2000) < 0.6])
    result = paired_difference(a, b)
    assert result.ci95 is not None and result.ci95_unpaired is not None
    paired = result.ci95[1] - result.ci95[0]
    unpaired = result.ci95_unpaired[1] - result.ci95_unpaired[0]
    assert paired / unpaired == pytest.approx(1.0, abs=0.1)


def test_correlated_runs_give_the_exact_difference_and_a_narrower_interval() -> None:
    rng = np.random.default_rng(3)
    difficulty = rng.random(400)
    a_values = [float(u < 0.5) for u in difficulty]
    b_values = [float(u < 0.6) for u in difficulty]
    a, b = items(a_values), items(b_values)
    result = paired_difference(a, b)
    diffs = [y - x for x, y in zip(a_values, b_values, strict=True)]
    assert result.delta == pytest.approx(np.mean(b_values) - np.mean(a_values))
    # the clustered error, never below the unclustered one
    se = max(cluster_se(diffs, [i // 4 for i in range(400)]), np.std(diffs, ddof=1) / 20)
    assert result.ci95 == pytest.approx((result.delta - Z95 * se, result.delta + Z95 * se))
    assert result.ci95 is not None and result.ci95_unpaired is not None
    unpaired = result.ci95_unpaired[1] - result.ci95_unpaired[0]
    assert result.ci95[1] - result.ci95[0] < 0.6 * unpaired


def test_only_items_both_runs_answered_are_paired() -> None:
    a = items([1.0, 0.0, 1.0, 1.0])
    b = {k: v for k, v in items([1.0, 1.0, 0.0, 1.0]).items() if k != "i3"}
    assert paired_difference(a, b).n == 3
    assert paired_difference(a, {}).delta is None


def test_sign_flip_p_value_is_the_exact_permutation_over_clusters() -> None:
    rng = np.random.default_rng(4)
    groups = [g for g in range(8) for _ in range(3)]
    diffs = [float(v) for v in rng.integers(-1, 2, len(groups)) + (np.array(groups) < 5)]
    totals = np.bincount(groups, weights=diffs)
    observed = abs(totals.sum())
    flips = list(itertools.product((1, -1), repeat=len(totals)))
    exact = sum(abs(np.dot(signs, totals)) >= observed - 1e-9 for signs in flips) / len(flips)
    assert sign_flip_p_value(diffs, groups) == pytest.approx(exact)


def test_sign_flip_p_value_with_many_clusters_is_seeded_and_near_the_normal_one() -> None:
    rng = np.random.default_rng(5)
    groups = [g for g in range(300) for _ in range(2)]
    diffs = [float(v) for v in rng.normal(0.12, 1.0, len(groups))]
    first, second = sign_flip_p_value(diffs, groups), sign_flip_p_value(diffs, groups)
    assert first == second
    z = abs(np.mean(diffs)) / cluster_se(diffs, groups)
    normal = math.erfc(z / math.sqrt(2))
    assert first == pytest.approx(normal, abs=0.02)


# --- mtmcs compare on two scripted runs -----------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with FakeServer(reply) as server:
        return run_pair(server, tmp_path_factory.mktemp("pair"), limit=6)


def per_item(run: Path) -> dict[str, tuple[int, float]]:
    """MCQ correctness by question id (and its row) from a run's dialogues.jsonl."""
    found = {}
    for line in (run / "dialogues.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["split"] == "type_a" and record["modality"] == "unimodal":
            for q in record["questions"]:
                if q["kind"] == "mcq":
                    found[q["id"]] = (record["row_id"], float(q["correct"]))
    return found


def test_compare_reports_the_exact_paired_difference_narrower_than_unpaired(
    pair: dict[str, Path], tmp_path: Path
) -> None:
    result = invoke("compare", str(pair[WEAK]), str(pair[STRONG]), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "MCQ overall %" in result.stdout and "95% paired" in result.stdout
    data = json.loads((tmp_path / "compare.json").read_text())
    assert data["run_a"]["model"] == f"openai-compatible/{WEAK}"
    figure = next(
        f
        for f in data["figures"]
        if (f["split"], f["cell"], f["metric"]) == ("type_a", "unimodal", "mcq_accuracy")
    )
    a, b = per_item(pair[WEAK]), per_item(pair[STRONG])
    diffs = [b[k][1] - a[k][1] for k in sorted(a)]
    assert figure["n"] == len(diffs) == 6 * 4 and figure["clusters"] == 6
    assert figure["delta"] == pytest.approx(np.mean(diffs)) and figure["delta"] > 0
    se = max(cluster_se(diffs, [a[k][0] for k in sorted(a)]), np.std(diffs, ddof=1) / 24**0.5)
    assert figure["ci95"] == pytest.approx([figure["delta"] - Z95 * se, figure["delta"] + Z95 * se])
    width = figure["ci95"][1] - figure["ci95"][0]
    assert width < figure["ci95_unpaired"][1] - figure["ci95_unpaired"][0]
    assert 0 < figure["p_value"] <= 1
    keys = {(f["split"], f["cell"], f["metric"]) for f in data["figures"]}
    assert ("type_b", "overall", "mcq_accuracy") in keys and len(keys) == 2 * (2 * 6 + 1)


def test_compare_of_a_run_with_itself_is_zero_everywhere(pair: dict[str, Path]) -> None:
    result = invoke("compare", str(pair[WEAK]), str(pair[WEAK]))
    assert result.returncode == 0, result.stderr
    assert "+0.0" in result.stdout and "[+0.0, +0.0]" in result.stdout


def test_compare_refuses_runs_without_shared_items(pair: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("compare", str(pair[WEAK]), str(tmp_path / "missing"))
    assert result.returncode != 0 and "does not exist" in result.stderr


# --- the report's defence deltas ------------------------------------------------------------


def test_report_deltas_are_paired_where_runs_share_items_and_labelled_where_not(
    tmp_path: Path,
) -> None:
    from mtmcs.engine.run import RunConfig, run_benchmark
    from mtmcs.report.deltas import defence_deltas
    from mtmcs.report.export import read_run_records
    from mtmcs.report.leaderboard import load_runs
    from mtmcs.report.writer import write_report

    for name, defense, limit in (("plain", None, 3), ("patched", "dpp", 3), ("short", "dpp", 2)):
        run_benchmark(
            RunConfig(
                model="baseline/random",
                judge="baseline/keyword",
                dataset="sample",
                splits=("type_a",),
                limit=limit,
                out=tmp_path / name,
                defense=defense,
                defense_texts_dir=Path(__file__).parent / "defence_texts",
            )
        )
    runs = load_runs([tmp_path / "plain", tmp_path / "patched"])
    rows = defence_deltas([read_run_records(run) for run in runs])
    row = next(r for r in rows if r.modality == "unimodal")
    assert row.paired
    a, b = per_item(tmp_path / "plain"), per_item(tmp_path / "patched")
    safe = [k for k in sorted(a) if "/safe/" in k]
    diffs = [b[k][1] - a[k][1] for k in safe]
    shown = row.deltas[0]  # MCQ safe %, in percentage points
    assert shown.value == pytest.approx(100 * np.mean(diffs))
    se = max(cluster_se(diffs, [a[k][0] for k in safe]), np.std(diffs, ddof=1) / len(diffs) ** 0.5)
    assert (shown.lo, shown.hi) == (
        pytest.approx(shown.value - 100 * Z95 * se),
        pytest.approx(shown.value + 100 * Z95 * se),
    )
    write_report([tmp_path / "plain", tmp_path / "short"], tmp_path / "report", ["md"])
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "| dpp ‡ |" in markdown and "‡ unpaired" in markdown


def test_without_the_stats_extra_the_p_value_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mtmcs.scoring.stats_extra as stats_extra
    from mtmcs.errors import ConfigError

    def missing(name: str) -> None:
        raise ImportError(name=name)

    monkeypatch.setattr(stats_extra.importlib, "import_module", missing)
    with pytest.raises(ConfigError, match=r"paired p-value needs scipy\.stats.*pip install"):
        sign_flip_p_value([1.0, 0.0], [0, 1])
