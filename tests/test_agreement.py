"""`mtmcs agreement`: two scripted judges with a known disagreement on the same answers (a run
and its rejudging through the fake server) give the kappa, alpha and rho computed here
independently: kappa from the confusion matrix and its quadratic weights, alpha from the
coincidence matrix, rho as the correlation of average ranks (none by the libraries)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agreement_by_hand import alpha_by_hand, confusion, kappa_by_hand, rho_by_hand
from command import invoke
from fakeserver import FakeServer
from mtmcs.engine.rejudge import RejudgeConfig, rejudge
from mtmcs.scoring.agreement import Rater, Unit, agreement
from scripted_judges import JUDGE_A, JUDGE_B, judged_run, reply


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("agreement")
    with FakeServer(reply) as server:
        source = judged_run(server, root / "judge-a")
        rejudge(
            RejudgeConfig(
                source=source,
                out=root / "judge-b",
                judge=JUDGE_B,
                judge_base_urls=(server.base_url,),
                max_retries=0,
            )
        )
    return source, root / "judge-b"


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "dialogues.jsonl").open() if line.strip()]


def scores(run: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in records(run)}


def cell_of(document: Mapping[str, Any], metric: str, split: str, modality: str) -> Any:
    (found,) = [
        c
        for c in document["cells"]
        if (c["metric"], c["split"], c["modality"]) == (metric, split, modality)
    ]
    return found


def test_two_scripted_judges_agree_as_computed_by_hand(
    judged: tuple[Path, Path], tmp_path: Path
) -> None:
    a_run, b_run = judged
    done = invoke("agreement", str(a_run), str(b_run), "--out", str(tmp_path), "--resamples", "200")
    assert done.returncode == 0, done.stderr
    assert "quadratic-weighted" in done.stdout and "judge-b" in done.stdout
    document = json.loads((tmp_path / "agreement.json").read_text())
    assert document["raters"] == [JUDGE_A, JUDGE_B]
    a, b = scores(a_run), scores(b_run)
    disagreements = sum(a[i]["judge"]["score"] != b[i]["judge"]["score"] for i in a)
    assert 0 < disagreements < len(a)  # the known disagreement: some dialogues, not all
    groups = [(s, m) for s in ("type_a", "type_b") for m in ("multimodal", "unimodal")]
    for metric, intent in (("safety_awareness", "unsafe"), ("helpfulness", "safe")):
        for split, modality in [*groups, ("all", "all")]:
            ids = sorted(
                i
                for i, r in a.items()
                if r["intent"] == intent
                and (split == "all" or (r["split"], r["modality"]) == (split, modality))
            )
            x = [a[i]["judge"]["score"] for i in ids]
            y = [b[i]["judge"]["score"] for i in ids]
            cell = cell_of(document, metric, split, modality)
            (pair,) = cell["pairs"]
            assert (pair["a"], pair["b"], pair["n"], cell["n"]) == (
                JUDGE_A,
                JUDGE_B,
                len(ids),
                len(ids),
            )
            assert pair["confusion"] == confusion(x, y).astype(int).tolist()
            assert pair["quadratic_kappa"]["value"] == pytest.approx(kappa_by_hand(x, y))
            assert pair["spearman_rho"]["value"] == pytest.approx(rho_by_hand(x, y))
            assert cell["krippendorff_alpha_ordinal"]["value"] == pytest.approx(
                alpha_by_hand(list(zip(x, y, strict=True)))
            )
            gaps = [abs(p - q) for p, q in zip(x, y, strict=True)]
            assert pair["exact_agreement"]["value"] == pytest.approx(gaps.count(0) / len(ids))
            assert pair["within_one_agreement"]["value"] == pytest.approx(
                sum(g <= 1 for g in gaps) / len(ids)
            )
            for name in ("quadratic_kappa", "spearman_rho", "exact_agreement"):
                figure = pair[name]
                lo, hi = figure["ci95"]
                assert lo <= figure["value"] + 1e-9 and figure["value"] <= hi + 1e-9


def test_alpha_across_three_raters_with_gaps_and_fixed_seed_intervals() -> None:
    units = {f"d{i}": Unit("type_a", "unimodal", "helpfulness") for i in range(12)}
    one = {f"d{i}": 1 + i % 5 for i in range(12)}
    two = {f"d{i}": min(5, 1 + i % 5 + (i % 4 == 0)) for i in range(12)}
    three = {f"d{i}": 1 + (i + 1) % 5 for i in range(0, 12, 2)}  # half the dialogues
    raters = [Rater("one", one), Rater("two", two), Rater("three", three)]
    cells = agreement(units, raters, resamples=300, seed=7)
    pooled = cells[-1]
    by_unit = [[r.scores[i] for r in raters if i in r.scores] for i in sorted(units)]
    assert pooled.alpha.value == pytest.approx(alpha_by_hand(by_unit))
    assert [(p.a, p.b, p.n) for p in pooled.pairs] == [
        ("one", "two", 12),
        ("one", "three", 6),
        ("two", "three", 6),
    ]
    again = agreement(units, raters, resamples=300, seed=7)[-1]
    assert again.alpha.ci95 == pooled.alpha.ci95 and pooled.alpha.ci95 is not None
    safety = [c for c in cells if c.metric == "safety_awareness"]
    assert [(c.n, c.alpha.value, c.pairs[0].kappa.value) for c in safety] == [(0, None, None)]


def test_labels_are_imported_as_raters(judged: tuple[Path, Path], tmp_path: Path) -> None:
    a_run, _ = judged
    a = scores(a_run)
    ids = sorted(i for i, r in a.items() if r["intent"] == "safe")[:6]
    lines = ["dialogue_id,rater,score,note"]
    lines += [f"{i},alice,{a[i]['judge']['score']},'=same as judge A" for i in ids]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    done = invoke("agreement", str(a_run), "--labels", str(labels), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "agreement.json").read_text())
    assert document["raters"] == [JUDGE_A, "human:alice"]
    (pair,) = cell_of(document, "helpfulness", "all", "all")["pairs"]
    assert pair["n"] == 6 and pair["exact_agreement"]["value"] == 1.0


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("{id},alice,6,", "field score"),
        ("{id},alice,3.5,", "field score"),
        ("nowhere/1,alice,3,", "field dialogue_id"),
        ("{id},,3,", "field rater"),
    ],
)
def test_a_bad_label_line_is_one_error_naming_file_line_and_field(
    judged: tuple[Path, Path], tmp_path: Path, row: str, field: str
) -> None:
    a_run, _ = judged
    first = records(a_run)[0]["id"]
    labels = tmp_path / "labels.csv"
    labels.write_text(f"dialogue_id,rater,score,note\n{first},bob,4,\n{row.format(id=first)}\n")
    done = invoke("agreement", str(a_run), "--labels", str(labels), "--out", str(tmp_path))
    assert done.returncode == 2
    assert f"{labels}:3: {field}" in done.stderr


def test_a_label_file_without_the_columns_is_refused(
    judged: tuple[Path, Path], tmp_path: Path
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,score\nx,3\n")
    done = invoke("agreement", str(judged[0]), "--labels", str(labels))
    assert done.returncode == 2
    assert f"{labels}:1: field dialogue_id: column is missing" in done.stderr


def test_without_the_stats_extra_the_error_says_how_to_install_it(
    judged: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "krippendorff", None)
    done = invoke("agreement", *map(str, judged), "--out", str(tmp_path))
    assert done.returncode == 1
    assert "krippendorff is missing" in done.stderr and "[stats]" in done.stderr


def test_runs_of_other_answers_or_a_lone_run_are_refused(
    judged: tuple[Path, Path], tmp_path: Path
) -> None:
    def other_answers(request: Any) -> str:
        return "another answer" if request.call_kind == "turn" else reply(request)

    with FakeServer(other_answers) as server:
        other = judged_run(server, tmp_path / "other")
    done = invoke("agreement", str(judged[0]), str(other), "--out", str(tmp_path))
    assert done.returncode == 1
    assert "share no scored dialogue" in done.stderr and "mtmcs rejudge" in done.stderr
    alone = invoke("agreement", str(judged[0]), "--out", str(tmp_path))
    assert alone.returncode == 2 and "needs two raters" in alone.stderr


def test_the_intervals_are_the_libraries_figures_over_the_same_resamples() -> None:
    """The bootstrap sums resampled confusion counts instead of calling the libraries on
    every resample: the same resamples (scipy, same seed) through the libraries give the
    same percentile interval."""
    from scipy.stats import bootstrap, spearmanr
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    x = rng.integers(1, 6, 30)
    y = np.clip(x + rng.integers(-1, 2, 30), 1, 5)
    units = {f"d{i:02}": Unit("type_a", "unimodal", "helpfulness") for i in range(30)}
    raters = [
        Rater("x", {f"d{i:02}": int(v) for i, v in enumerate(x)}),
        Rater("y", {f"d{i:02}": int(v) for i, v in enumerate(y)}),
    ]
    (pair,) = agreement(units, raters, resamples=200, seed=11)[-1].pairs  # helpfulness, pooled

    def library(a: Any, b: Any) -> Any:
        kappa = cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
        return np.array([kappa, spearmanr(a, b).statistic])

    result = bootstrap(
        (x, y),
        library,
        paired=True,
        vectorized=False,
        n_resamples=200,
        method="percentile",
        random_state=np.random.default_rng(11),
    )
    for figure, row in zip((pair.kappa, pair.rho), result.bootstrap_distribution, strict=True):
        assert figure.ci95 == pytest.approx(tuple(np.percentile(row, [2.5, 97.5])))
