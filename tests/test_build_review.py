"""`mtmcs build` review: decisions that survive rebuilds and moved folders, a sheet with
everything to judge, a page with the variants (in Chromium), two reviewers merged."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from command import invoke
from fakeserver import FakeServer
from mtmcs.build.output import load_scenarios
from mtmcs.build.review import Decision, apply_decisions, cohen_kappa, scenario_digest
from test_build_variants import Builder, build_args, sample_images, token

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/review-page.png")


def read_sheet(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_sheet(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def rows_of(out: Path) -> int:
    return pq.read_table(out / "data" / "type_a-00000-of-00001.parquet").num_rows


@pytest.fixture
def built(fake_server: Callable[..., FakeServer], tmp_path: Path) -> tuple[FakeServer, Path]:
    images = sample_images(tmp_path / "images")
    server = fake_server(Builder({token(p.read_bytes()) for p in images}))
    out = tmp_path / "dataset"
    result = invoke(*build_args(tmp_path / "images", out, server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows_of(out) == 4
    return server, out


def test_decisions_survive_a_rebuild_and_moved_folders(
    built: tuple[FakeServer, Path], tmp_path: Path
) -> None:
    server, out = built
    sheet = read_sheet(out / "review" / "review.csv")
    sheet[0]["decision"] = "drop"
    fixed = json.loads((out / "review" / "scenarios.json").read_text())[1]
    fixed["caption"] = "A reviewer's caption."
    sheet[1]["decision"], sheet[1]["fix_json"] = "fix", json.dumps(fixed)
    decisions = tmp_path / "decisions.csv"
    write_sheet(decisions, sheet)
    applied = invoke("build", "--import-review", str(decisions), "--out", str(out))
    assert applied.returncode == 0, applied.stderr
    assert "3 kept, 1 dropped, 1 fixed, 0 stale" in applied.stdout
    assert rows_of(out) == 3

    rebuilt = invoke(*build_args(tmp_path / "images", out, server))  # decisions re-applied
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert rows_of(out) == 3
    assert "A reviewer's caption." in json.loads((out / "captions.json").read_text()).values()
    again = read_sheet(out / "review" / "review.csv")
    assert [r["decision"] for r in again] == ["drop", "fix", "keep", "keep"]
    report = json.loads((out / "build_report.json").read_text())
    assert report["counts"]["reviewed_dropped"] == 1 and report["counts"]["final"] == 3
    assert [d["item"] for d in report["drops"] if d["stage"] == "review"] == [sheet[0]["key"]]
    recorded = (out / "review" / "decisions.jsonl").read_text()
    assert str(tmp_path) not in recorded  # no folder in the decisions

    moved_images = tmp_path / "elsewhere" / "photos"
    moved_images.parent.mkdir()
    shutil.move(tmp_path / "images", moved_images)
    moved_out = tmp_path / "elsewhere" / "dataset"
    shutil.move(out, moved_out)
    reapplied = invoke("build", "--import-review", str(decisions), "--out", str(moved_out))
    assert reapplied.returncode == 0, reapplied.stdout + reapplied.stderr
    assert rows_of(moved_out) == 3
    requests = len(server.requests)
    moved_build = invoke(*build_args(moved_images, moved_out, server))
    assert moved_build.returncode == 0, moved_build.stdout + moved_build.stderr
    assert len(server.requests) == requests and rows_of(moved_out) == 3
    validated = invoke("data", "validate", "--dataset", str(moved_out))
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_a_changed_scenario_goes_back_to_review(built: tuple[FakeServer, Path]) -> None:
    _, out = built
    scenarios = load_scenarios(out)
    drop = Decision(scenarios[0].key, scenario_digest(scenarios[0]), "drop", sheet="a.csv")
    assert len(apply_decisions(scenarios, [drop]).kept) == 3
    changed = [scenarios[0].model_copy(update={"caption": "Rebuilt."}), *scenarios[1:]]
    applied = apply_decisions(changed, [drop])
    assert len(applied.kept) == 4 and applied.stale == [scenarios[0].key]
    renamed = [scenarios[0].model_copy(update={"key": "renamed.png#0"}), *scenarios[1:]]
    assert len(apply_decisions(renamed, [drop]).kept) == 3  # by content, not by name


def test_the_sheet_shows_everything_to_judge(built: tuple[FakeServer, Path]) -> None:
    _, out = built
    rows = read_sheet(out / "review" / "review.csv")
    scenarios = {s.key: s for s in load_scenarios(out)}
    report = json.loads((out / "build_report.json").read_text())
    for row in rows:
        scenario = scenarios[row["key"]]
        assert row["caption"] == scenario.caption
        assert row["digest"] == scenario_digest(scenario)
        unimodal = scenario.unimodal.type_b
        assert row["unimodal_type_b_unsafe"].splitlines() == [
            f"R1: {unimodal.unsafe_r1}",
            f"R2: {unimodal.r2}",
            f"R3: {unimodal.r3}",
        ]
        assert scenario.multimodal.type_a.unsafe_r3 in row["multimodal_type_a_unsafe"]
        assert row["questions"].count("-> B") == 8  # 2 unsafe MCQs × 2 modalities × 2 splits
        assert row["questions"].count("[TF]") == 8 and "-> True" in row["questions"]
        files = [v["file"] for v in report["variants"] if v["image"] == scenario.image]
        assert row["variants"].split() == files and len(files) == 3


@pytest.fixture
def browser() -> Iterator[Any]:  # after `built`: the sync API holds an event loop while open
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


def test_the_review_page_shows_the_variants(built: tuple[FakeServer, Path], browser: Any) -> None:
    _, out = built
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / "review" / "review.html").as_uri())
    page.wait_for_load_state("load")
    assert page.locator(".card").count() == 4
    variants = page.locator(".card .variants img")
    assert variants.count() == 12  # 3 per scenario
    for image in [*variants.all(), *page.locator("img.main").all()]:
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator(".card h4").all_text_contents()[:2] == ["multimodal", "unimodal"]
    assert "→ B" in page.locator(".card").first.text_content()
    assert not errors
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert SCREENSHOT.stat().st_size > 10_000


def test_two_reviewers_are_merged_with_their_agreement(
    built: tuple[FakeServer, Path], tmp_path: Path
) -> None:
    _, out = built
    sheet = read_sheet(out / "review" / "review.csv")
    first = [dict(r) for r in sheet]
    second = [dict(r) for r in sheet]
    first[0]["decision"] = second[0]["decision"] = "drop"
    second[3]["decision"] = "drop"  # the one conflict
    write_sheet(tmp_path / "alice.csv", first)
    write_sheet(tmp_path / "bob.csv", second)
    merged = invoke(
        *("build", "--merge-review", str(tmp_path / "alice.csv"), str(tmp_path / "bob.csv")),
        *("--out", str(out)),
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    # A: drop keep keep keep, B: drop keep keep drop: p_o = 0.75, p_e = 0.5, kappa = 0.5
    assert "agreement 75.0% (3 of 4), Cohen's kappa 0.500; 1 conflicts" in merged.stdout
    key = sheet[3]["key"]
    assert f"conflict {key}: alice.csv keep, bob.csv drop" in merged.stdout
    assert rows_of(out) == 3  # the agreed drop; the conflict left undecided (kept)
    assert [r["decision"] for r in read_sheet(out / "review" / "review.csv")] == [
        "drop",
        "keep",
        "keep",
        "keep",
    ]


def test_cohen_kappa() -> None:
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == 1.0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"]) == 0.0
    assert cohen_kappa(["keep"] * 3, ["keep"] * 3) is None  # one label only: undefined
    # 20 items: 9 both yes, 6 both no, 2 yes/no, 3 no/yes: p_o 0.75, p_e 0.51 → 0.24 / 0.49
    first = ["y"] * 9 + ["n"] * 6 + ["y"] * 2 + ["n"] * 3
    second = ["y"] * 9 + ["n"] * 6 + ["n"] * 2 + ["y"] * 3
    assert cohen_kappa(first, second) == pytest.approx(0.24 / 0.49)
