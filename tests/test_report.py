"""`mtmcs report` over three offline runs: leaderboard, plots, per-dialogue export, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from command import invoke, mtmcs
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.protocol.types import MODALITIES
from mtmcs.report.leaderboard import latex_escape

LIMIT = 2
SPLITS = 2
RUNS = ("random", "refuse", "random-seed1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    options: dict[str, dict[str, Any]] = {
        "random": {"model": "baseline/random"},
        "refuse": {"model": "baseline/refuse"},
        "random-seed1": {"model": "baseline/random", "settings": RunSettings(seed=1)},
    }
    dirs = {}
    for name, extra in options.items():
        out = root / name
        run_benchmark(
            RunConfig(judge="baseline/keyword", dataset="sample", limit=LIMIT, out=out, **extra)
        )
        dirs[name] = out
    return dirs


@pytest.fixture(scope="module")
def report(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = mtmcs("report", *(str(runs[name]) for name in RUNS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def summary(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "summary.json").read_text())
    return data


def test_markdown_has_every_run_and_the_published_rows(runs: dict[str, Path], report: Path) -> None:
    text = (report / "leaderboard.md").read_text()
    assert "baseline/random" in text and "baseline/refuse" in text and "random-seed1" in text
    assert "GPT-5.2 [published]" in text and "published (modality not stated)" in text
    assert "83.66" in text and "90.54" in text and "4.15" in text
    assert "[heuristic judge]" in text
    refuse = summary(runs["refuse"])["type_a"]["multimodal"]
    assert refuse["safe_mcq_accuracy"]["value"] == 0.0
    n = refuse["safe_mcq_accuracy"]["n"]
    assert "| 0.0 [0.0–" in text and f"n={n}" in text
    random = summary(runs["random"])["type_a"]["unimodal"]["tf_accuracy"]
    lo, hi = random["ci95"]
    expected = f"{100 * random['value']:.1f} [{100 * lo:.1f}–{100 * hi:.1f}] n={random['n']}"
    assert expected in text
    # published figures are only in the published sections
    measured = text.split("published (modality not stated)")[0]
    assert "83.66" not in measured


def test_markdown_shows_the_authors_figure_beside_ours(runs: dict[str, Path], report: Path) -> None:
    text = (report / "leaderboard.md").read_text()
    assert "the first letter A–G anywhere is the answer (a refusal reads as 'A')" in text
    assert "compare them with the 'authors' scripts' rows, not with ours" in text
    refuse = summary(runs["refuse"])["type_a"]["multimodal"]
    label = "| baseline/refuse [reference policy]"
    ours = [line for line in text.splitlines() if line.startswith(label)]
    assert len(ours) == 2 * SPLITS * len(MODALITIES)  # one line per reading
    safe = refuse["safe_mcq_accuracy"]
    tf = refuse["tf_accuracy"]
    authors = (
        f"| authors' scripts | {100 * safe['paper_compatible']:.2f} "
        f"n={safe['paper_compatible_n']} |",
        f"| – n=0 ({tf['n']} dropped) |",  # no refusal reads as True/False
    )
    assert all(cell in ours[1] for cell in authors), ours[1]
    assert "| ours | 0.0 [0.0–" in ours[0]
    published = text.split("published (modality not stated)", 1)[1]
    assert "| GPT-5.2 [published] | GPT-5-mini (authors) | authors' scripts | – | – | 83.66 |" in (
        published
    )


def test_csv_has_a_row_per_run_split_and_modality_plus_published(
    runs: dict[str, Path], report: Path
) -> None:
    with (report / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    measured = [row for row in rows if row["source"] == "measured"]
    published = [row for row in rows if row["source"] == "published"]
    assert len(measured) == len(RUNS) * SPLITS * 2
    assert {row["run"] for row in measured} == set(RUNS)
    assert len(published) == 2 and all(row["marker"] == "published" for row in published)
    assert {row["modality"] for row in published} == {"published (modality not stated)"}
    assert all(row["marker"] == "heuristic judge" for row in measured)
    for row in measured:
        stat = summary(runs[row["run"]])[row["split"]][row["modality"]]["helpfulness"]
        assert float(row["helpfulness"]) == pytest.approx(stat["value"])
        assert int(row["helpfulness_n"]) == stat["n"]
        acc = summary(runs[row["run"]])[row["split"]][row["modality"]]["mcq_accuracy"]
        assert float(row["mcq_accuracy"]) == pytest.approx(100 * acc["value"])
        assert float(row["mcq_accuracy_ci_lo"]) == pytest.approx(100 * acc["ci95"][0])
        assert float(row["mcq_accuracy_paper_compatible"]) == pytest.approx(
            100 * acc["paper_compatible"]
        )
        assert int(row["mcq_accuracy_paper_compatible_n"]) == acc["paper_compatible_n"]
    # published figures were computed by the authors' scripts: they sit beside that figure
    type_a = next(row for row in published if row["split"] == "type_a")
    assert (type_a["mcq_accuracy"], type_a["mcq_accuracy_paper_compatible"]) == ("", "83.66")


def test_latex_is_booktabs_and_escaped(report: Path) -> None:
    text = (report / "leaderboard.tex").read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert rule in text
    body = text.split("\\toprule", 1)[1]
    assert "MCQ safe \\%" in body and "safety-awareness" in body
    assert "type\\_a" not in body  # splits shown as "type A"
    assert all(
        "%" not in line.replace("\\%", "") and "_" not in line.replace("\\_", "")
        for line in body.splitlines()
    )
    assert latex_escape("a_b 5% & c") == "a\\_b 5\\% \\& c"


def test_plots_exist_as_valid_png_and_svg(report: Path) -> None:
    for stem in ("tradeoff", "metrics", "modality_gap"):
        png, svg = report / f"{stem}.png", report / f"{stem}.svg"
        assert png.stat().st_size > 10_000 and svg.stat().st_size > 5_000
        with Image.open(png) as image:
            image.verify()
            assert image.format == "PNG"
        assert "<svg" in svg.read_text()[:1000]


def test_dialogue_exports_have_one_row_per_dialogue(runs: dict[str, Path], report: Path) -> None:
    table = pq.read_table(report / "dialogues.parquet")
    expected = len(RUNS) * 4 * LIMIT * SPLITS
    assert table.num_rows == expected
    columns = set(table.column_names)
    for column in ("run", "model", "judge", "judge_kind", "id", "split", "modality", "intent"):
        assert column in columns
    for column in ("turn_1", "reply_3", "judge_score", "mcq_n", "mcq_correct", "tf_0_answer"):
        assert column in columns
    assert "mcq_0_correct" in columns and "tf_1_ground_truth" in columns
    rows = table.to_pylist()
    assert {row["run"] for row in rows} == set(RUNS)
    keys = {(row["run"], row["id"]) for row in rows}
    assert len(keys) == expected
    for name in RUNS:
        records = [json.loads(line) for line in (runs[name] / "dialogues.jsonl").open()]
        assert {r["id"] for r in records} == {row["id"] for row in rows if row["run"] == name}
    unsafe = next(row for row in rows if row["intent"] == "unsafe")
    assert unsafe["tf_n"] == 2 and unsafe["mcq_n"] == 2
    with (report / "dialogues.csv").open() as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == expected
    assert set(csv_rows[0]) == columns


def test_formats_can_be_chosen(runs: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("report", str(runs["refuse"]), "--out", str(tmp_path), "--format", "md,latex")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.md", "leaderboard.tex"]
    bad = invoke("report", str(runs["refuse"]), "--out", str(tmp_path), "--format", "pdf")
    assert bad.returncode == 1 and "unknown report format pdf" in bad.stderr


def test_a_directory_without_summary_or_runs_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("report", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no summary.json" in lines[0] and "empty" in lines[0]
    missing = invoke("report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_malformed_summary_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{"metadata": {"model": "m"}}')
    result = invoke("report", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "metadata has no 'judge'" in result.stderr


def test_expected_rows_of_the_reference_policies(runs: dict[str, Path], report: Path) -> None:
    with (report / "leaderboard.csv").open() as handle:
        expected = [row for row in csv.DictReader(handle) if row["source"] == "expected"]
    cells = {(split, modality) for split in ("type_a", "type_b") for modality in MODALITIES}
    assert {(r["run"], r["split"], r["modality"]) for r in expected} == {
        (policy, *cell) for policy in ("chance", "refuse") for cell in cells
    }
    records = [json.loads(line) for line in (runs["random"] / "dialogues.jsonl").open()]
    mcq = [
        q
        for r in records
        if (r["split"], r["modality"]) == ("type_a", "unimodal")
        for q in r["questions"]
        if q["kind"] == "mcq"
    ]
    by_policy = {
        r["run"]: r for r in expected if (r["split"], r["modality"]) == ("type_a", "unimodal")
    }
    chance, refuse = by_policy["chance"], by_policy["refuse"]
    assert float(chance["mcq_accuracy"]) == pytest.approx(
        100 * sum(1 / len(q["options"]) for q in mcq) / len(mcq)
    )
    assert int(chance["mcq_accuracy_n"]) == len(mcq)
    assert float(chance["tf_accuracy"]) == 50.0 and float(refuse["tf_accuracy"]) == 0.0
    assert float(refuse["mcq_accuracy"]) == 0.0
    # the authors' scripts read the refusal as the answer A, and no refusal as True/False
    share_a = sum(q["ground_truth"] == "A" for q in mcq) / len(mcq)
    assert float(refuse["mcq_accuracy_paper_compatible"]) == pytest.approx(100 * share_a)
    assert (refuse["tf_accuracy_paper_compatible"], refuse["tf_accuracy_paper_compatible_n"]) == (
        "",
        "0",
    )
    assert float(chance["mcq_accuracy_paper_compatible"]) == float(chance["mcq_accuracy"])
    assert chance["safety_awareness"] == "" and chance["mcq_accuracy_ci_lo"] == ""
    text = (report / "leaderboard.md").read_text()
    assert "| chance (uniform random answers) [expected] | none: by construction |" in text
    assert "Rows marked [expected] are not measured" in text
