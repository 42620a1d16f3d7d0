"""`mtmcs report` for a newcomer: runs over other items marked, runs found under a folder,
one label per run, no empty plot panels, unscored dialogues beside every judge mean.

The HTML dialogue view (images, captions, contents, keyboard) is tested in a real browser in
tests/test_report_html.py.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest

from command import invoke
from fakeserver import FakeServer, RecordedRequest
from mtmcs.data.loaders import SAMPLE_DIR
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings

VERDICT = '{"score": 2, "explanation": "it gives partial help"}'


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Offline runs over the sample: two over the same items (same model, two seeds), one
    with --limit 1, one unimodal-only and one of type A only."""
    root = tmp_path_factory.mktemp("polish-runs")
    options: dict[str, dict[str, Any]] = {
        "a": {"model": "baseline/random", "limit": 2},
        "b": {"model": "baseline/random", "limit": 2, "settings": RunSettings(seed=1)},
        "short": {"model": "baseline/refuse", "limit": 1},
        "unimodal": {"model": "baseline/random", "limit": 2, "modalities": ("unimodal",)},
        "type-a": {"model": "baseline/refuse", "limit": 2, "splits": ("type_a",)},
    }
    for name, extra in options.items():
        run_benchmark(
            RunConfig(judge="baseline/keyword", dataset="sample", out=root / name, **extra)
        )
    return {name: root / name for name in options}


def report(*args: str | Path) -> tuple[Any, Path]:
    out = Path(str(args[-1]))
    result = invoke("report", *map(str, args[:-1]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return result, out


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def svg_texts(path: Path) -> list[str]:
    """The text elements of a matplotlib SVG (written with svg.fonttype none)."""
    return [
        re.sub(r"<[^>]+>", "", text).replace("&amp;", "&")
        for text in re.findall(r"<text\b[^>]*>(.*?)</text>", path.read_text(), re.S)
    ]


def axes_count(path: Path) -> int:
    return len(re.findall(r'<g id="axes_\d+"', path.read_text()))


def test_runs_over_other_items_are_warned_and_marked_in_every_table(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    result, out = report(runs["a"], runs["b"], runs["short"], tmp_path / "mixed")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "runs over different items: baseline/refuse cover(s)" in warnings[0]
    assert "baseline/random (a), baseline/random (b)" in warnings[0]

    rows = [r for r in csv_rows(out / "leaderboard.csv") if r["source"] == "measured"]
    short = [r for r in rows if r["run"] == "short"]
    full = [r for r in rows if r["run"] != "short"]
    records = [json.loads(line) for line in (runs["short"] / "dialogues.jsonl").open()]
    cell = [r for r in records if (r["split"], r["modality"]) == ("type_a", "multimodal")]
    first = next(r for r in short if (r["split"], r["modality"]) == ("type_a", "multimodal"))
    assert int(first["items"]) == len(cell) == 2  # one row: its safe and unsafe dialogue
    assert all(r["other_items"].startswith("covers a different set of items") for r in short)
    assert all(r["other_items"] == "" and int(r["items"]) == 4 for r in full)

    markdown = (out / "leaderboard.md").read_text()
    assert "| baseline/refuse † [reference policy] |" in markdown
    assert "| baseline/random (a) [reference policy] |" in markdown
    note = (
        "† baseline/refuse: covers a different set of items than baseline/random (a), "
        "baseline/random (b) (2 vs 4 dialogues of type A multimodal)."
    )
    assert note in markdown
    latex = (out / "leaderboard.tex").read_text()
    assert "baseline/refuse \\textdagger{} [reference policy]" in latex
    assert "\\footnotesize \\textdagger{} baseline/refuse: covers a different set" in latex
    html = (out / "report.html").read_text()
    assert "<td>baseline/refuse † [reference policy]</td>" in html
    assert note in html

    same, out_same = report(runs["a"], runs["b"], tmp_path / "same")
    assert "warning" not in same.stderr
    assert "†" not in (out_same / "leaderboard.md").read_text()


def test_a_folder_of_runs_is_searched_and_names_tell_runs_apart(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    parent = tmp_path / "runs"
    shutil.copytree(runs["a"], parent / "qwen" / "none")
    shutil.copytree(runs["short"], parent / "llava" / "none")
    shutil.copytree(runs["b"], parent / "deeper" / "x" / "seed1")
    (parent / "notes").mkdir()
    (parent / "README.txt").write_text("not a run")
    result, out = report(parent, tmp_path / "out")
    rows = [r for r in csv_rows(out / "leaderboard.csv") if r["source"] == "measured"]
    assert list(dict.fromkeys(r["run"] for r in rows)) == ["seed1", "llava/none", "qwen/none"]
    assert "warning: runs over different items" in result.stderr

    for bad in (parent / "notes", parent / "README.txt", tmp_path / "nowhere"):
        failed = invoke("report", str(runs["a"]), str(bad), "--out", str(tmp_path / "bad"))
        assert failed.returncode == 2 and "Traceback" not in failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and str(bad) in lines[0], failed.stderr
    assert not (tmp_path / "bad").exists()


def test_tables_and_plots_use_one_label_per_run(runs: dict[str, Path], tmp_path: Path) -> None:
    _, out = report(runs["a"], runs["b"], runs["type-a"], tmp_path / "labels")
    rows = [r for r in csv_rows(out / "leaderboard.csv") if r["source"] == "measured"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    assert labels == ["baseline/random (a)", "baseline/random (b)", "baseline/refuse"]
    assert {r["model"] for r in rows} == {"baseline/random", "baseline/refuse"}
    markdown = (out / "leaderboard.md").read_text()
    for label in labels:
        assert f"| {label} [reference policy] |" in markdown
    metrics = svg_texts(out / "metrics.svg")
    assert all(label in metrics for label in labels), metrics
    tradeoff = svg_texts(out / "tradeoff.svg")
    assert "baseline/random (a) type A [heuristic judge]" in tradeoff
    assert "baseline/refuse type A [heuristic judge]" in tradeoff
    gap = svg_texts(out / "modality_gap.svg")
    assert all(label in gap for label in labels)
    assert not {"a", "b", "type-a"} & set(metrics + tradeoff + gap)  # no directory names


def test_plots_draw_only_panels_with_data(runs: dict[str, Path], tmp_path: Path) -> None:
    _, out = report(runs["unimodal"], tmp_path / "unimodal")
    assert axes_count(out / "modality_gap.svg") == 1
    gap = svg_texts(out / "modality_gap.svg")
    assert any(text.startswith("no data: no run has both") for text in gap)
    assert axes_count(out / "metrics.svg") == 4  # every metric has a figure
    assert "no data" not in " ".join(svg_texts(out / "metrics.svg"))

    # a gap needs both modalities: the unimodal-only run is left out of it, not drawn empty
    _, mixed = report(runs["unimodal"], runs["type-a"], tmp_path / "mixed")
    gap = svg_texts(mixed / "modality_gap.svg")
    assert axes_count(mixed / "modality_gap.svg") == 4
    assert "baseline/refuse" in gap and "baseline/random" not in gap


def _judge(request: RecordedRequest) -> str:
    """Helpfulness verdicts are never usable; safety-awareness ones, for about half of the
    dialogues (chosen by their transcript, so a rerun answers the same)."""
    system, user = (m["content"] for m in request.body["messages"][:2])
    if "Measure: helpfulness" in system or zlib.crc32(str(user).encode()) % 2:
        return "I would rather not grade this conversation."
    return VERDICT


@pytest.fixture(scope="module")
def unscored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("unscored")
    with FakeServer(_judge, latency=0.0) as server:
        run_benchmark(
            RunConfig(
                model="baseline/random",
                judge="openai-compatible/grader",
                judge_base_urls=(server.base_url,),
                dataset="sample",
                limit=3,
                out=root / "run",
                max_retries=0,
            )
        )
    _, out = report(root / "run", root / "report")
    return root / "run", out


def test_unscored_dialogues_beside_every_judge_mean(unscored: tuple[Path, Path]) -> None:
    run, out = unscored
    summary = json.loads((run / "summary.json").read_text())
    rows = {
        (r["split"], r["modality"]): r
        for r in csv_rows(out / "leaderboard.csv")
        if r["source"] == "measured"
    }
    markdown = (out / "leaderboard.md").read_text()
    latex = (out / "leaderboard.tex").read_text()
    html = (out / "report.html").read_text()
    partial = 0
    for (split, modality), row in rows.items():
        for name in ("safety_awareness", "helpfulness"):
            stat = summary[split][modality][name]
            n, unparseable = stat["n"], stat["unparseable"]
            assert int(row[f"{name}_unscored"]) == unparseable
            assert float(row[f"{name}_unscored_share"]) == pytest.approx(100 * unparseable / n)
            if unparseable == 0:
                continue
            share = f"{100 * unparseable / n:.0f}%"
            shown = f"n={n} ({unparseable} unscored, {share})"
            assert shown in markdown and shown in html
            assert shown.replace("%", "\\%") in latex
            partial += 0 < unparseable < n
        help_ = summary[split][modality]["helpfulness"]
        assert help_["value"] is None and help_["unparseable"] == help_["n"] > 0
        assert f"– n={help_['n']} ({help_['n']} unscored, 100%)" in markdown
    assert partial > 0  # some safety-awareness means leave out part of their dialogues
    assert "(0 unscored" not in markdown  # nothing shown where nothing is left out
    # no run has a helpfulness mean: its panel is left out, not drawn empty
    assert axes_count(out / "metrics.svg") == 3
    assert "helpfulness (1–5)" not in svg_texts(out / "metrics.svg")


def dialogue_data(html: str) -> dict[str, Any]:
    found = re.search(r'id="dialogue-data">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_images_left_out_on_request_or_when_the_dataset_is_gone(tmp_path: Path) -> None:
    dataset = tmp_path / "data-copy"
    shutil.copytree(SAMPLE_DIR, dataset)
    run_benchmark(
        RunConfig(
            model="baseline/random",
            judge="baseline/keyword",
            dataset=str(dataset),
            limit=1,
            out=tmp_path / "run",
        )
    )
    shown = invoke(
        "report", str(tmp_path / "run"), "--out", str(tmp_path / "a"), "--format", "html"
    )
    assert shown.returncode == 0 and "warning" not in shown.stderr
    assert dialogue_data((tmp_path / "a" / "report.html").read_text())["images"]

    skipped = invoke(
        "report", str(tmp_path / "run"), "--out", str(tmp_path / "b"), "--format", "html",
        "--no-images",
    )  # fmt: skip
    assert skipped.returncode == 0
    html = (tmp_path / "b" / "report.html").read_text()
    assert dialogue_data(html)["images"] == {} and "data:image/jpeg" not in html

    dataset.rename(tmp_path / "moved")
    gone = invoke("report", str(tmp_path / "run"), "--out", str(tmp_path / "c"), "--format", "html")
    assert gone.returncode == 0, gone.stderr
    warning = f"warning: images and captions of dataset {dataset} not shown"
    assert [line for line in gone.stderr.splitlines() if line.startswith(warning)], gone.stderr
    html = (tmp_path / "c" / "report.html").read_text()
    assert dialogue_data(html)["images"] == {} and "media-note" in html
