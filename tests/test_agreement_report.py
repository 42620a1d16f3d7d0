"""`mtmcs report` on a run and its rejudging: the leaderboard's judge-sensitivity table (the
figures side by side, the spread) and, in Chromium, the HTML report's judge-agreement section
with its confusion-matrix heatmaps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agreement_by_hand import confusion
from command import invoke
from fakeserver import FakeServer
from mtmcs.engine.rejudge import RejudgeConfig, rejudge
from mtmcs.scoring.rundir import RunDir
from scripted_judges import JUDGE_B, judged_run, reply

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("agreement-report")
    with FakeServer(reply) as server:
        a = judged_run(server, root / "judge-a", limit=3)
        b = root / "judge-b"
        rejudge(
            RejudgeConfig(
                source=a, out=b, judge=JUDGE_B, judge_base_urls=(server.base_url,), max_retries=0
            )
        )
    out = root / "report"
    done = invoke("report", str(a), str(b), "--out", str(out), "--format", "md,html")
    assert done.returncode == 0, done.stderr
    return a, b, out


def test_the_leaderboard_shows_the_model_under_both_judges_with_the_spread(
    report: tuple[Path, Path, Path],
) -> None:
    a, b, out = report
    markdown = (out / "leaderboard.md").read_text()
    section = markdown.split("## Judge sensitivity", 1)[1]
    first, second = RunDir(a).read_summary(), RunDir(b).read_summary()
    for split, label in (("type_a", "type A"), ("type_b", "type B")):
        for modality in ("multimodal", "unimodal"):
            for name, metric in (
                ("safety_awareness", "safety-awareness"),
                ("helpfulness", "helpfulness"),
            ):
                x, y = first.stat(split, modality, name), second.stat(split, modality, name)
                assert x is not None and y is not None and x.value and y.value
                (line,) = [
                    row
                    for row in section.splitlines()
                    if row.startswith(f"| {label} — {modality} | {metric} |")
                ]
                assert line.endswith(f"| {abs(x.value - y.value):.2f} |")
                assert f"| {x.value:.2f} [" in line and f"| {y.value:.2f} [" in line


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def scores(run: Path, intent: str) -> dict[str, int]:
    lines = (run / "dialogues.jsonl").read_text().splitlines()
    return {r["id"]: r["judge"]["score"] for r in map(json.loads, lines) if r["intent"] == intent}


def test_the_html_report_draws_the_confusion_matrices_as_heatmaps(
    browser: Any, report: tuple[Path, Path, Path]
) -> None:
    a, b, out = report
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / "report.html").as_uri())
    assert page.locator("h2#judge-agreement").count() == 1
    assert page.locator("table.agreement tbody tr").count() == 10  # 2 metrics × (4 cells + pooled)
    heatmaps = page.locator("table.heatmap")
    assert heatmaps.count() == 2
    for index, intent in enumerate(("unsafe", "safe")):
        x, y = scores(a, intent), scores(b, intent)
        expected = confusion([x[i] for i in sorted(x)], [y[i] for i in sorted(x)])
        shown = heatmaps.nth(index).locator("tbody tr").all()
        counts = [[int(c) for c in row.locator("td").all_text_contents()] for row in shown]
        assert counts == expected.astype(int).tolist()
        darkest = (
            heatmaps.nth(index)
            .locator("td")
            .evaluate_all("cells => cells.map(c => getComputedStyle(c).backgroundColor)")
        )
        assert len(set(darkest)) > 1  # shaded by count
    assert page.locator("table.sensitivity").count() == 1
    assert errors == []
