"""Run files are typed and versioned: what a run writes validates against its model, a run
written before versioning is read, a newer or malformed one is refused by file and field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakeserver import FakeServer
from mtmcs.cli.run_output import metrics_table
from mtmcs.engine.run import run_benchmark
from mtmcs.errors import DataError
from mtmcs.report.leaderboard import HEADER, load_runs, render_csv, render_markdown, run_rows
from mtmcs.report.writer import write_report
from mtmcs.scoring.metrics import CELL_METRICS
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import FORMAT_VERSION, DialogueRecord, StanceRecord, Summary
from test_run_e2e import config, standard_reply

# What summary.json and dialogues.jsonl held before versioning: kept, plus format_version.
METADATA_KEYS = {
    *("model", "defense", "defense_scope", "defense_text", "defense_selector", "judge"),
    *("defense_source", "defense_retrieval"),
    *("judge_kind", "dataset", "revision", "splits", "modalities", "rows", "limit", "variants"),
    *("decoding", "image_placement", "image_order", "rubrics", "package_version"),
    *("started_at", "wall_s", "calls", "complete", "concurrency", "images"),
}
RECORD_KEYS = {
    *("id", "pair_id", "split", "row_id", "modality", "image_variant", "intent"),
    *("unsafe_intent", "turns", "replies", "error", "judge", "questions"),
}


def test_a_run_writes_files_that_validate_against_their_models(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run_benchmark(config(server, tmp_path, "type_b"))
    run = RunDir(tmp_path)

    text = run.summary_path.read_text()
    summary = Summary.model_validate_json(text)
    written = json.loads(text)
    assert summary.format_version == written["format_version"] == FORMAT_VERSION == 1
    assert set(written) == {"format_version", "metadata", "type_b", "dialogues_sha256"}
    digest = hashlib.sha256(run.dialogues_path.read_bytes()).hexdigest()
    assert summary.dialogues_sha256 == digest  # the summary vouches for the dialogues
    assert set(written["metadata"]) == METADATA_KEYS
    assert summary.model_dump(mode="json") == written  # the model holds all of it
    for cell in ("multimodal", "unimodal"):
        assert set(summary.cells("type_b")[cell]) == {m.name for m in CELL_METRICS}
    assert summary.cells("type_b")["multimodal"]["helpfulness"].value == 4.0

    lines = run.dialogues_path.read_text().splitlines()
    records = [DialogueRecord.model_validate_json(line) for line in lines]
    assert len(records) == 4
    for line, record in zip(lines, records, strict=True):
        data = json.loads(line)
        assert data["format_version"] == record.format_version == FORMAT_VERSION
        assert set(data) == {"format_version", *RECORD_KEYS}
        assert record.model_dump(mode="json") == data
    assert run.read_summary() == summary and run.read_dialogues() == records

    run.write_stances([{"id": records[0].id, "stances": ["comply"] * 3, "judge": "j"}])
    (line,) = run.stances_path.read_text().splitlines()
    assert StanceRecord.model_validate_json(line).format_version == FORMAT_VERSION
    assert json.loads(line) == {
        "format_version": 1,
        "id": records[0].id,
        "stances": ["comply"] * 3,
        "judge": "j",
    }


# --- a run written before versioning ---------------------------------------------------------


def old_stat(value: float) -> dict[str, Any]:
    """A figure as summaries wrote it before errors and the authors' figure existed."""
    return {"value": value, "n": 4, "unparseable": 1, "ci95": [value / 2, min(1.0, value * 2)]}


def old_run(root: Path) -> Path:
    """A run directory written by hand in the pre-versioning format: no format_version."""
    cell = {
        name: old_stat(0.5)
        for name in (
            "safe_mcq_accuracy",
            "unsafe_mcq_accuracy",
            "tf_accuracy",
            "safety_awareness",
            "helpfulness",
            "mcq_accuracy",
        )
    }
    summary = {
        "metadata": {
            "model": "openai/old-model",
            "judge": "openai/old-judge",
            "judge_kind": "LLM judge",
            "splits": ["type_a"],
            "modalities": ["unimodal"],
            "wall_s": 12.5,
        },
        "type_a": {"unimodal": cell, "overall": {"mcq_accuracy": old_stat(0.5)}},
    }
    records = [
        {
            "id": f"type_a/000001/unimodal/{intent}",
            "pair_id": "type_a/000001/unimodal",
            "split": "type_a",
            "row_id": 1,
            "modality": "unimodal",
            "image_variant": 0,
            "intent": intent,
            "turns": ["r1", "r2", "r3"],
            "replies": ["a1", "a2", "a3"],
            "error": None,
            "judge": {"score": 4, "explanation": "ok", "raw": "4", "error": None},
            "questions": [
                {
                    "id": f"type_a/000001/unimodal/{intent}/mcq/0",
                    "kind": "mcq",
                    "text": "Which?",
                    "options": ["a", "b"],
                    "ground_truth": "A",
                    "raw": "A",
                    "answer": "A",
                    "correct": True,
                    "error": None,
                }
            ],
        }
        for intent in ("unsafe", "safe")
    ]
    run = root / "old"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "dialogues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    stance = {"id": records[0]["id"], "stances": ["comply", "hedge", "refuse"], "judge": "j"}
    (run / "turn_stances.jsonl").write_text(json.dumps(stance) + "\n")
    return run


def test_a_run_written_before_versioning_is_read_as_version_0(tmp_path: Path) -> None:
    run = RunDir(old_run(tmp_path))
    summary = run.read_summary()
    assert summary.format_version == 0 and summary.metadata.model == "openai/old-model"
    assert summary.stat("type_a", "unimodal", "tf_accuracy") is not None
    assert [r.format_version for r in run.read_dialogues()] == [0, 0]
    assert [r.unsafe_intent for r in run.read_dialogues()] == ["", ""]  # added later
    stances = run.read_stances()
    assert stances is not None and stances[0].format_version == 0
    written = write_report([run.path], tmp_path / "report", ["md", "csv"])
    assert {path.name for path in written} >= {"leaderboard.md", "leaderboard.csv"}
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "openai/old-model" in markdown and "50.0 [25.0–100.0] n=4" in markdown


# --- refused: newer, malformed ---------------------------------------------------------------


def rewrite(path: Path, line: int | None, **changes: Any) -> None:
    """Change fields of a JSON file (line None) or of one line of a JSONL file."""
    if line is None:
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
        return
    lines = path.read_text().splitlines()
    lines[line - 1] = json.dumps({**json.loads(lines[line - 1]), **changes})
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("name", "line"),
    [("summary.json", None), ("dialogues.jsonl", 2), ("turn_stances.jsonl", 1)],
)
def test_a_file_of_a_newer_format_is_refused_naming_it(
    tmp_path: Path, name: str, line: int | None
) -> None:
    run = old_run(tmp_path)
    rewrite(run / name, line, format_version=FORMAT_VERSION + 1, new_field="?")
    with pytest.raises(DataError) as caught:
        write_report([run], tmp_path / "report", ["md", "csv"])
    (problem,) = caught.value.problems
    source = str(run / name) + (f":{line}" if line else "")
    assert problem.source == source and problem.field == "format_version"
    assert "written by a newer mtmcs-bench" in str(problem) and "upgrade" in str(problem)


def test_malformed_files_name_the_file_and_the_field(tmp_path: Path) -> None:
    run = old_run(tmp_path)
    summary_path = run / "summary.json"
    original = summary_path.read_text()
    data = json.loads(original)
    data["type_a"]["unimodal"]["tf_accuracy"]["value"] = "high"
    summary_path.write_text(json.dumps(data))
    with pytest.raises(DataError) as caught:
        load_runs([run])
    (problem,) = caught.value.problems
    assert problem.source == str(summary_path)
    assert problem.field == "type_a.unimodal.tf_accuracy.value"

    summary_path.write_text(original)
    rewrite(summary_path, None, metadata={"model": "m", "splits": ["type_a"]})
    with pytest.raises(DataError, match=r"field metadata\.judge: metadata has no 'judge'"):
        load_runs([run])
    rewrite(summary_path, None, metadata={"model": "m", "judge": "j", "splits": ["type_b"]})
    with pytest.raises(DataError, match=r"summary\.json: no 'type_b' section"):
        load_runs([run])
    summary_path.write_text(original)
    rewrite(summary_path, None, format_version="1")
    with pytest.raises(DataError, match=r"field format_version: '1' is not a format version"):
        load_runs([run])

    dialogues = run / "dialogues.jsonl"
    rewrite(dialogues, 2, intent="maybe")
    with pytest.raises(DataError) as caught:
        RunDir(run).read_dialogues()
    (problem,) = caught.value.problems
    assert (problem.source, problem.field) == (f"{dialogues}:2", "intent")
    assert "dialogue type_a/000001/unimodal/safe:" in problem.message
    dialogues.write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match=r"jsonl:1: field split: dialogue x: the record has no"):
        RunDir(run).read_dialogues()
    dialogues.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"dialogues\.jsonl:1: not a JSON object"):
        RunDir(run).read_dialogues()


# --- one metric registry ---------------------------------------------------------------------


def test_every_table_takes_its_metric_columns_from_the_registry(tmp_path: Path) -> None:
    labels = [m.label for m in CELL_METRICS]
    assert list(HEADER[3:]) == labels
    (run,) = load_runs([old_run(tmp_path)])
    rows = run_rows(run)
    header = render_csv(rows).splitlines()[0].split(",")
    assert [name for name in header if name in {m.name for m in CELL_METRICS}] == [
        m.name for m in CELL_METRICS
    ]
    assert all(label in render_markdown(rows) for label in labels)
    table = metrics_table(run.summary)
    assert [str(column.header) for column in table.columns][1:] == labels
