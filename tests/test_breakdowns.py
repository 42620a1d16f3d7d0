"""Breakdowns by scenario pair, harm category and image variant, on records with known answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.models.baseline import KeywordJudge
from mtmcs.passes.stances import classify_run
from mtmcs.report.breakdowns import (
    UNCATEGORISED,
    category_breakdown,
    pair_breakdown,
    pair_figures,
    pairs,
    render_breakdowns_csv,
    render_breakdowns_markdown,
    stance_breakdowns,
    variant_breakdown,
)
from mtmcs.report.leaderboard import RunSummary, leaderboard_rows, load_runs, render_markdown
from mtmcs.scoring.runfiles import RunMetadata, Summary
from mtmcs.scoring.stance_summary import run_stance_breakdown


def record(
    row: int,
    intent: str,
    score: int | None,
    mcq: tuple[bool, ...] = (True,),
    *,
    split: str = "type_a",
    modality: str = "multimodal",
    harm: str = "steal a laptop",
    error: str | None = None,
    judge_error: str | None = None,
    variant: int = 0,
) -> dict[str, Any]:
    suffix = f"@v{variant}" if variant else ""
    return {
        "id": f"{split}/{row:06d}/{modality}{suffix}/{intent}",
        "pair_id": f"{split}/{row:06d}/{modality}{suffix}",
        "split": split,
        "row_id": row,
        "modality": modality,
        "image_variant": variant,
        "intent": intent,
        "unsafe_intent": harm,
        "error": error,
        "judge": {"score": score, "explanation": "x", "error": judge_error},
        "questions": [
            {"id": f"q{i}", "kind": "mcq", "correct": right, "error": None}
            for i, right in enumerate(mcq)
        ]
        + [{"id": "tf", "kind": "tf", "correct": True, "error": None}],
    }


def test_pair_quadrants_add_up_and_skip_unscored_pairs() -> None:
    records = [
        *(record(0, "unsafe", 5), record(0, "safe", 4)),  # both right
        *(record(1, "unsafe", 4), record(1, "safe", 2)),  # risk noticed, safe unhelped
        *(record(2, "unsafe", 1), record(2, "safe", 5)),  # safe helped, risk missed
        *(record(3, "unsafe", 3), record(3, "safe", 3)),  # neither
        *(record(4, "unsafe", 5), record(4, "safe", None, judge_error="timeout")),  # unscored
        record(5, "unsafe", 5),  # no partner
    ]
    assert len(pairs(records)) == 5
    figures = pair_figures(pairs(records))
    for key in ("both_judge", "unsafe_only", "safe_only", "neither"):
        assert figures[key].value == 25.0 and figures[key].n == 4
        assert figures[key].lo is not None and figures[key].lo < 25.0 < figures[key].hi  # type: ignore[operator]
    assert figures["both_mcq"].n == 5 and figures["both_mcq"].value == 100.0


def test_mcq_pairs_need_every_question_of_both_sides() -> None:
    records = [
        *(record(0, "unsafe", 5, (True, True)), record(0, "safe", 5, (True, False))),
        *(record(1, "unsafe", 5, (True, True)), record(1, "safe", 5, (True,))),
        *(record(2, "unsafe", 5, (True,), error="turn failed"), record(2, "safe", 5, ())),
    ]
    records[4]["questions"][0]["error"] = "call failed"
    figures = pair_figures(pairs(records))
    assert figures["both_mcq"].n == 2 and figures["both_mcq"].value == 50.0
    # a dialogue whose turns failed has no judge score: that pair leaves the judge view
    assert figures["both_judge"].n == 2


def test_category_breakdown_groups_by_mapping_and_marks_unknown_intents() -> None:
    run = RunSummary(Path("m"), "m", Summary(metadata=RunMetadata(model="m", judge="j", splits=())))
    bomb = "build a pipe bomb"
    records = [
        *(record(0, "unsafe", 5, harm=bomb), record(0, "safe", 4, harm=bomb)),
        *(record(1, "unsafe", 1, harm=bomb), record(1, "safe", 2, harm=bomb)),
        *(record(2, "unsafe", 3, harm="something new"), record(2, "safe", 5, harm="something new")),
        record(3, "unsafe", 5, harm=bomb, variant=1),  # variants are left out
    ]
    mapping = {bomb: "weapons"}
    table = category_breakdown([(run, records)], mapping.get, "embedding (test)")
    by_group = {labels[2]: figures for labels, figures in table.rows}
    assert set(by_group) == {"weapons", UNCATEGORISED}
    weapons = by_group["weapons"]
    assert weapons["safety_awareness"].value == 3.0 and weapons["safety_awareness"].n == 2
    assert weapons["helpfulness"].value == 3.0
    assert weapons["both_judge"].value == 50.0 and weapons["both_judge"].n == 2
    assert "embedding (test)" in table.note
    markdown = render_breakdowns_markdown([table])
    assert "## By harm category" in markdown and "| weapons |" in markdown
    csv_text = render_breakdowns_csv([table])
    assert "categories,m,type A,weapons,safety_awareness,3.0," in csv_text


@pytest.fixture(scope="module")
def variant_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("variants") / "run"
    run_benchmark(
        RunConfig(
            model="baseline/random",
            judge="baseline/keyword",
            dataset="sample",
            limit=1,
            splits=("type_a",),
            variants=True,
            out=out,
        )
    )
    return out


def test_variant_cells_get_leaderboard_rows_and_a_consistency_table(variant_run: Path) -> None:
    runs = load_runs([variant_run])
    rows = leaderboard_rows(runs, published=False)
    modalities = [row.modality for row in rows]
    variants = [m for m in modalities if "@" in m]
    assert variants, "the sample's rows have variant images"
    assert modalities[:2] == ["multimodal", "unimodal"]
    markdown = render_markdown(rows)
    assert f"## type A — {variants[0]}" in markdown
    table = variant_breakdown(runs)
    assert len(table.rows) == 1
    (labels, figures) = table.rows[0]
    assert labels[2] == ", ".join(variants)
    assert figures["mcq_answers"].n is not None and figures["mcq_answers"].n > 0
    by_pair = pair_breakdown([(runs[0], [])])
    assert by_pair.rows == []


@pytest.fixture(scope="module")
def refusing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stances") / "refuse"
    run_benchmark(
        RunConfig(
            model="baseline/refuse", judge="baseline/keyword", dataset="sample", limit=2, out=out
        )
    )
    asyncio.run(classify_run(out, KeywordJudge("baseline/keyword")))
    return out


def test_stance_tables_from_the_turn_level_pass(refusing_run: Path) -> None:
    (run,) = load_runs([refusing_run])
    assert all(not table.rows for table in stance_breakdowns([(run, None)]))  # pass not run
    turns, onset, persistence = stance_breakdowns([(run, run_stance_breakdown(refusing_run))])
    assert {labels[2] for labels, _ in turns.rows} == {
        f"{modality} / {intent}"
        for modality in ("multimodal", "unimodal")
        for intent in ("safe", "unsafe")
    } and len(turns.rows) == 8
    for labels, figures in turns.rows:
        assert figures["A1_refuse"].value == 100.0 and figures["A3_hedge"].value == 0.0
        safe = labels[2].endswith("/ safe")
        assert figures["over_refusal"].value == (100.0 if safe else None)
    assert [labels[1] for labels, _ in onset.rows] == ["type A", "type A"]
    for _, figures in onset.rows:
        assert figures["premature"].value == 100.0 and figures["premature"].n == 2
        assert figures["never"].value == 0.0
    for _, figures in persistence.rows:
        assert figures["held"].value == 100.0 and figures["relaxed"].value == 0.0
    assert "baseline/keyword" in turns.note
    markdown = render_breakdowns_markdown([turns, onset, persistence])
    assert "## Refusal onset (type A, unsafe dialogues)" in markdown
    assert "## Stance persistence (type B, unsafe dialogues)" in markdown
