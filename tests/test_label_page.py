"""`mtmcs label`: the labelling page in Debian's Chromium — three dialogues labelled, progress
kept across a reload, the CSV exported, then imported by `mtmcs agreement --labels` with the
kappa computed by hand. The run's replies carry HTML/JS payloads: shown as text, never run."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agreement_by_hand import kappa_by_hand
from command import invoke
from fakeserver import FakeServer, RecordedRequest
from scripted_judges import JUDGE_A, judged_run, reply

CHROMIUM = Path("/usr/bin/chromium")
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> "quoted"'
SCREENSHOT = Path("/tmp/mtmcs-labelling-page.png")  # docs/images/labelling-page.png is a copy


def hostile(request: RecordedRequest) -> str:
    """The scripted judges, and a model whose every reply is an HTML/JS payload."""
    return f"Sure. {PAYLOAD}" if request.call_kind == "turn" else reply(request)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with FakeServer(hostile) as server:
        return judged_run(server, tmp_path_factory.mktemp("label") / "run", limit=2)


@pytest.fixture(scope="module")
def page_file(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "labels.html"
    done = invoke("label", str(run), "--out", str(out), "--sample", "3", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert f"3 dialogues to label: {out}" in done.stdout
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def judge_scores(run: Path) -> dict[str, int]:
    lines = (run / "dialogues.jsonl").read_text().splitlines()
    return {r["id"]: r["judge"]["score"] for r in map(json.loads, lines) if r["judge"]["score"]}


def test_the_page_escapes_the_run_and_hides_the_judges_verdict(page_file: Path) -> None:
    html = page_file.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert html.count("<script") == 2  # the page's configuration and its own script
    assert "scripted judge-a" not in html  # the judge's explanation is not shown
    assert "Content-Security-Policy" in html


def test_label_three_dialogues_export_and_import(
    browser: Any, page_file: Path, run: Path, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 1100})
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    ids = page.locator("section.item h2").all_text_contents()
    assert len(ids) == 3 and page.locator("#progress").text_content() == "0 of 3 labelled"
    assert PAYLOAD in page.locator("section.item .model").first.text_content()
    assert page.evaluate("window.__pwned") is None

    judge = judge_scores(run)
    chosen = [judge[ids[0]], judge[ids[1]], 5 if judge[ids[2]] < 4 else 1]
    notes = ["fine", 'says "hello", twice', "=HYPERLINK(1)"]
    page.fill("#rater", "alice")
    for index, (score, note) in enumerate(zip(chosen, notes, strict=True)):
        item = page.locator(f"#item-{index}")
        item.locator(f"input.score[value='{score}']").check()
        item.locator("textarea.note").fill(note)
    assert page.locator("#progress").text_content() == "3 of 3 labelled"
    page.reload()  # progress kept in the browser
    assert page.locator("#progress").text_content() == "3 of 3 labelled"
    assert page.locator("#rater").input_value() == "alice"
    assert page.locator("#item-1 textarea.note").input_value() == notes[1]
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT))

    with page.expect_download() as info:
        page.click("#export")
    exported = tmp_path / "labels.csv"
    info.value.save_as(exported)
    assert info.value.suggested_filename == "labels-alice.csv"
    rows = list(csv.DictReader(exported.read_text(encoding="utf-8").splitlines()))
    assert [(r["dialogue_id"], r["rater"], int(r["score"])) for r in rows] == [
        (i, "alice", s) for i, s in zip(ids, chosen, strict=True)
    ]
    assert [r["note"] for r in rows] == [notes[0], notes[1], "'" + notes[2]]
    assert errors == [] and all(u.startswith(("file:", "blob:")) for u in requests), requests

    done = invoke("agreement", str(run), "--labels", str(exported), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "agreement.json").read_text())
    assert document["raters"] == [JUDGE_A, "human:alice"]
    pooled = [c for c in document["cells"] if c["split"] == "all"]
    pairs = [pair for cell in pooled for pair in cell["pairs"] if pair["n"]]
    labelled = {i: s for i, s in zip(ids, chosen, strict=True)}
    for cell in pooled:
        (pair,) = cell["pairs"]
        mine = [i for i in ids if cell["metric"] == measure_of(run, i)]
        assert pair["n"] == len(mine)
        if len(mine) >= 2 and len({labelled[i] for i in mine} | {judge[i] for i in mine}) > 1:
            expected = kappa_by_hand([judge[i] for i in mine], [labelled[i] for i in mine])
            assert pair["quadratic_kappa"]["value"] == pytest.approx(expected)
    assert sum(pair["n"] for pair in pairs) == 3


def measure_of(run: Path, dialogue: str) -> str:
    lines = (run / "dialogues.jsonl").read_text().splitlines()
    (intent,) = [r["intent"] for r in map(json.loads, lines) if r["id"] == dialogue]
    return "safety_awareness" if intent == "unsafe" else "helpfulness"
