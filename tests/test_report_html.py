"""`mtmcs report --format html`: one self-contained page, checked in Debian's Chromium.

A run whose model replies carry HTML/JS payloads goes through the real report code; the page
must show them as text, run nothing, fetch nothing, and its client-side filters must work.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from command import mtmcs
from fakeserver import FakeServer
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.models.baseline import REFUSAL
from mtmcs.protocol.authors import authors_mcq_choice, authors_tf_answer
from mtmcs.report.html import script_json
from mtmcs.scoring.categories import CATEGORY_IDS, CategoryMap
from mtmcs.scoring.categorize import write_map

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT_PAYLOAD = "<script>window.__pwned=1</script>"
IMG_PAYLOAD = '<img src=x onerror="window.__pwned=2">'
PAYLOAD = f"Sure & more: {SCRIPT_PAYLOAD} {IMG_PAYLOAD} </script><!-- end"
SCREENSHOT = Path("/tmp/mtmcs-report-screenshot.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("html-runs")
    run_benchmark(
        RunConfig(
            model="baseline/random",
            judge="baseline/keyword",
            dataset="sample",
            limit=2,
            out=root / "random",
        )
    )
    scripted = {"payload": PAYLOAD, "cautious": REFUSAL}
    for name, reply in scripted.items():
        with FakeServer(reply, latency=0.0) as server:
            run_benchmark(
                RunConfig(
                    model=f"openai-compatible/{name}",
                    judge="baseline/keyword",
                    dataset="sample",
                    limit=2,
                    out=root / name,
                    max_retries=0,
                    base_urls=(server.base_url,),
                )
            )
    dirs = {name: root / name for name in ("random", *scripted)}
    stances = mtmcs("stances", *map(str, dirs.values()), "--judge", "baseline/keyword")
    assert stances.returncode == 0, stances.stderr
    return dirs


@pytest.fixture(scope="module")
def categories(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mapping file putting the sample's intents, alternately, in two categories."""
    intents = sorted({r["unsafe_intent"] for r in records(runs["random"])})
    assignments = {intent: CATEGORY_IDS[i % 2] for i, intent in enumerate(intents)}
    path = tmp_path_factory.mktemp("categories") / "categories.json"
    write_map(path, CategoryMap(method="llm", model="scripted", assignments=assignments))
    return path


@pytest.fixture(scope="module")
def report_file(
    runs: dict[str, Path], categories: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("html-report")
    dirs = [str(runs[name]) for name in ("random", "payload", "cautious")]
    result = mtmcs("report", *dirs, "--out", str(out), "--categories", str(categories))
    assert result.returncode == 0, result.stderr
    path = out / "report.html"
    assert str(path) in result.stdout.splitlines()
    return path


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "dialogues.jsonl").open() if line.strip()]


def test_script_json_cannot_end_its_element() -> None:
    text = script_json({"a": "</script><b>&amp;\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><b>&amp;\u2028"}


def test_html_is_self_contained_and_escaped(report_file: Path, runs: dict[str, Path]) -> None:
    assert any(PAYLOAD in r["replies"][0] for r in records(runs["payload"]))
    html = report_file.read_text(encoding="utf-8")
    assert SCRIPT_PAYLOAD not in html
    assert IMG_PAYLOAD not in html
    assert html.count("<script") == 2  # the JSON data and the page's own script
    # nothing outside the file: no http(s) URL in any src/href, no @import or url() fetch
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    plots = html.count('src="data:image/png;base64,')
    assert plots == 3 or (plots == 0 and "Plots skipped" in html)  # matplotlib is optional
    assert "Content-Security-Policy" in html and "default-src &#39;none&#39;" in html
    assert "GPT-5.2 [published]" in html and "[heuristic judge]" in html
    # every measured and expected line has its authors' scripts' twin; published lines are theirs
    assert html.count('<tr class="authors">') == html.count("<td>ours</td>") + 2
    assert "compare them with the &#39;authors&#39; scripts&#39; rows, not with ours" in html


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def visible(page: Any) -> int:
    count: int = page.locator("#dialogues > details.dialogue:not([hidden])").count()
    return count


def test_report_in_chromium(
    browser: Any, report_file: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    url = report_file.as_uri()
    page.goto(url)
    page.wait_for_load_state("load")

    everything = {name: records(run) for name, run in runs.items()}
    total = sum(len(r) for r in everything.values())
    assert visible(page) == total
    assert page.locator("#count").text_content() == f"{total} of {total} dialogues"
    assert page.locator("table.leaderboard").count() >= 5
    titles = page.locator("h3").all_text_contents()
    for title in ("Scenario pairs: both sides right", "By harm category", "Turn-level stances"):
        assert title in titles
    assert "Refusal onset (type A, unsafe dialogues)" in titles
    assert page.locator("table.breakdown").count() == 5
    for image in page.locator("figure img").all():
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")

    # filters: model/run, then type, then intent, then judge score, then back to all
    payload = everything["payload"]
    page.select_option("#filter-run", "payload")
    assert visible(page) == len(payload)
    page.select_option("#filter-split", "type_a")
    type_a = [r for r in payload if r["split"] == "type_a"]
    assert visible(page) == len(type_a) < len(payload)
    page.select_option("#filter-intent", "unsafe")
    unsafe = [r for r in type_a if r["intent"] == "unsafe"]
    assert visible(page) == len(unsafe) < len(type_a)
    page.select_option("#filter-modality", "unimodal")
    assert visible(page) == sum(r["modality"] == "unimodal" for r in unsafe)
    page.select_option("#filter-modality", "")
    page.select_option("#filter-run", "")
    both = [r for rs in everything.values() for r in rs]
    assert visible(page) == sum(r["split"] == "type_a" and r["intent"] == "unsafe" for r in both)
    score = str(next(r["judge"]["score"] for r in both if r["judge"]["score"] is not None))
    page.select_option("#filter-score", score)
    assert visible(page) == sum(
        r["split"] == "type_a" and r["intent"] == "unsafe" and str(r["judge"]["score"]) == score
        for r in both
    )
    for name in ("split", "intent", "score"):
        page.select_option(f"#filter-{name}", "")
    assert visible(page) == total

    # the harm-category filter follows the mapping file
    page.select_option("#filter-category", CATEGORY_IDS[1])
    intents = sorted({r["unsafe_intent"] for r in both})
    second = {intent for i, intent in enumerate(intents) if i % 2 == 1}
    assert 0 < visible(page) == sum(r["unsafe_intent"] in second for r in both) < total
    page.select_option("#filter-category", "")

    # the per-dialogue view: payload shown as text, in order, with questions and judge
    page.select_option("#filter-run", "payload")
    card = page.locator("#dialogues > details.dialogue:not([hidden])").first
    card.locator("summary").click()
    first = payload[0]
    replies = card.locator(".reply")
    replies.first.wait_for()
    assert replies.count() == len(first["replies"])
    assert replies.first.is_visible() and replies.first.text_content() == PAYLOAD
    assert card.get_by_text(SCRIPT_PAYLOAD, exact=False).first.is_visible()
    turns = card.locator(".user .text").all_text_contents()
    assert turns == first["turns"]
    assert card.locator(".question").count() == len(first["questions"])
    assert card.locator(".raw").first.text_content() == first["questions"][0]["raw"]
    question = first["questions"][0]
    read: str | bool | None = (
        authors_mcq_choice(question["raw"])
        if question["kind"] == "mcq"
        else authors_tf_answer(question["raw"])
    )
    expected = {None: "nothing (dropped)", True: "true", False: "false"}.get(read, read)
    assert f"authors' scripts read: {expected}" in card.locator(".question").first.text_content()
    assert f"Judge score: {first['judge']['score']}" in card.text_content()
    assert "model, turn 1 · stance: " in card.text_content()  # from `mtmcs stances`
    assert first["unsafe_intent"] in card.text_content()
    assert first["judge"]["explanation"] in card.text_content()
    assert page.locator("#dialogues script").count() == 0
    sources = page.locator("#dialogues img").evaluate_all("els => els.map(e => e.src)")
    assert all(src.startswith("data:image/") for src in sources)  # the scenario image only
    scenario = page.locator("#dialogues .scenario img").count()
    assert page.locator("#dialogues img").count() == scenario
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=False)
    print(f"screenshot: {shot}")
    if os.environ.get("MTMCS_SCREENSHOT"):
        card.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        print(f"screenshot: {SCREENSHOT}")

    assert errors == []
    assert [u for u in requests if not u.startswith("data:")] == [url]
    page.close()


def sample_captions() -> dict[str, str]:
    path = Path(__file__).parents[1] / "src" / "mtmcs" / "data" / "sample" / "captions.json"
    captions: dict[str, str] = json.loads(path.read_text())
    return captions


def dialogue_data(html: str) -> dict[str, Any]:
    found = re.search(r'id="dialogue-data">(.*?)</script>', html, re.S)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def in_view(page: Any, selector: str) -> bool:
    top: float = page.locator(selector).evaluate("e => e.getBoundingClientRect().top")
    return -1 <= top < page.viewport_size["height"]


def test_dialogue_view_image_caption_contents_and_keys(
    report_file: Path, runs: dict[str, Path], browser: Any
) -> None:
    html = report_file.read_text(encoding="utf-8")
    data = dialogue_data(html)
    multimodal = [d for d in data["dialogues"] if d["modality"] == "multimodal"]
    assert multimodal and all(d["image"] and d["caption"] for d in multimodal)
    assert all(d["image"] is None for d in data["dialogues"] if d["modality"] == "unimodal")
    # each image once, however many dialogues show it (3 runs × safe and unsafe, …)
    assert len(data["images"]) < len(multimodal)
    for uri in data["images"].values():
        assert uri.startswith("data:image/jpeg;base64,") and html.count(uri) == 1

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report_file.as_uri())
    # the table of contents: sections, every leaderboard table, each run's first dialogue
    links = page.locator("nav#toc a").evaluate_all("els => els.map(e => e.hash)")
    assert {"#leaderboard", "#plots", "#dialogue-list", "#d-0"} <= set(links)
    assert page.evaluate(f"{json.dumps(links)}.every(h => document.getElementById(h.slice(1)))")
    second = next(i for i, d in enumerate(data["dialogues"]) if d["run"] == "payload")
    page.locator(f'nav#toc a[href="#d-{second}"]').click()
    page.locator(f"#d-{second} .reply").first.wait_for()
    assert page.locator(f"#d-{second}").evaluate("e => e.open") and in_view(page, f"#d-{second}")

    # j / k: the next / previous dialogue shown, opened, focused and scrolled into view
    page.evaluate("window.scrollTo(0, 0); document.activeElement.blur()")
    page.select_option("#filter-modality", "multimodal")
    page.locator("h1").click()
    shown = [d for d in data["dialogues"] if d["modality"] == "multimodal"]
    ids = [f"d-{data['dialogues'].index(d)}" for d in shown[:2]]
    for key, expected in (("j", ids[0]), ("j", ids[1]), ("k", ids[0])):
        page.keyboard.press(key)
        focused = page.evaluate("document.activeElement.closest('details').id")
        assert focused == expected
        assert page.locator(f"#{expected}").evaluate("e => e.open")
        assert in_view(page, f"#{expected}")

    # the open dialogue shows its image (downscaled) and the judge's caption
    first = shown[0]
    card = page.locator(f"#{ids[0]}")
    image = card.locator(".scenario img")
    image.wait_for()
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert 0 < max(width, height) <= 384
    assert image.get_attribute("src") == data["images"][first["image"]]
    row_id = next(r["row_id"] for r in records(runs["random"]) if r["id"] == first["id"])
    assert card.locator(".scenario .caption").text_content() == sample_captions()[str(row_id)]
    assert errors == []
    page.close()


def test_hostile_captions_are_text(runs: dict[str, Path], tmp_path: Path, browser: Any) -> None:
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps(dict.fromkeys(sample_captions(), PAYLOAD)))
    out = tmp_path / "report"
    result = mtmcs(
        "report", str(runs["payload"]), "--out", str(out), "--format", "html",
        "--captions", str(captions),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert SCRIPT_PAYLOAD not in html and IMG_PAYLOAD not in html
    page = browser.new_page()
    page.goto((out / "report.html").as_uri())
    page.keyboard.press("j")
    caption = page.locator("details[open] .scenario .caption")
    caption.wait_for()
    assert caption.text_content() == PAYLOAD
    assert page.locator("#dialogues script").count() == 0
    assert page.locator("#dialogues img").count() == 1  # the scenario image only
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    page.close()
