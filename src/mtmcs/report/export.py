"""Per-dialogue table over every run's `dialogues.jsonl`, as parquet and CSV.

One row per dialogue. Columns: the run (`run`, `run_dir`, `model`, `judge`, `judge_kind`),
the dialogue (`id` … `intent`, `unsafe_intent`, `harm_category` with `--categories`,
`error`), its turns and replies (`turn_1`, `reply_1`, …), the judge (`judge_score`,
`judge_explanation`, `judge_error`), question totals (`mcq_n`, `mcq_correct`, `tf_n`,
`tf_correct`, unparseable/failed counts) and, per question, named by its id within the
dialogue (e.g. `mcq_2`, `tf_0`): `<q>_answer`, `<q>_ground_truth`, `<q>_correct`,
`<q>_error`. Questions a dialogue lacks are empty. In the CSV, text cells that a spreadsheet
would read as a formula are quoted (`mtmcs.files.csv_cell`).

Every string read here (dialogues, stances, the summary, the run's name and label) passes
through `mtmcs.keys.redact` on the way in, so no output of `mtmcs report` holds an API key
known at report time, in any form `redact` knows, even from run files written without it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mtmcs.files import csv_cell
from mtmcs.keys import redact, redaction
from mtmcs.report.leaderboard import RunSummary
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import Summary
from mtmcs.scoring.stance_summary import RunStances, run_stances

RUN_COLUMNS = ("run", "run_dir", "model", "judge", "judge_kind")
DIALOGUE_COLUMNS = (
    "id",
    "pair_id",
    "split",
    "row_id",
    "modality",
    "image_variant",
    "intent",
    "unsafe_intent",
)
QUESTION_FIELDS = ("answer", "ground_truth", "correct", "error")
CategoryLookup = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class RunRecords:
    """A run with its dialogue records (the JSON form of checked `DialogueRecord`s) and its
    turn stances (None before `mtmcs stances`)."""

    run: RunSummary
    dialogues: list[dict[str, Any]]
    stances: RunStances | None


def read_run_records(run: RunSummary) -> RunRecords:
    """A run's checked `dialogues.jsonl` and `turn_stances.jsonl`, read once for every output,
    with the run: every string in them redacted (`redact_strings`)."""
    run_dir = RunDir(run.path)
    dialogues = [record.model_dump(mode="json") for record in run_dir.read_dialogues()]
    records = run_dir.read_stances()
    stances = None if records is None else run_stances(str(run_dir.stances_path), records)
    clean = redaction()
    if clean is None:  # no key known: nothing to look for
        return RunRecords(run, dialogues, stances)
    memo: dict[str, str] = {}
    if stances is not None:
        stances = RunStances(
            redact_strings(stances.judge, clean, memo),
            {redact_strings(k, clean, memo): v for k, v in stances.stances.items()},
        )
    return RunRecords(
        redacted_run(run, clean, memo), redact_strings(dialogues, clean, memo), stances
    )


def redacted_run(
    run: RunSummary, clean: Callable[[str], str], memo: dict[str, str] | None = None
) -> RunSummary:
    """`run` with its name, label and every string of its summary redacted by `clean`."""
    memo = {} if memo is None else memo
    dumped = run.summary.model_dump(mode="json")
    cleaned = redact_strings(dumped, clean, memo)
    summary = run.summary if cleaned == dumped else Summary.model_validate(cleaned, strict=False)
    return replace(
        run,
        name=redact_strings(run.name, clean, memo),
        alias=redact_strings(run.alias, clean, memo),
        summary=summary,
    )


def redact_strings(value: Any, clean: Callable[[str], str], memo: dict[str, str]) -> Any:
    """JSON-like `value` with every string in it, mapping keys included, passed through
    `clean` (each distinct string once: `memo`). Two keys that become one after redaction
    (failure causes differing only in a key) are merged, counts added."""
    if isinstance(value, str):
        cleaned = memo.get(value)
        if cleaned is None:
            cleaned = memo[value] = clean(value)
        return cleaned
    if isinstance(value, list | tuple):
        return [redact_strings(item, clean, memo) for item in value]
    if isinstance(value, dict):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            key, item = redact_strings(key, clean, memo), redact_strings(item, clean, memo)
            before = result.get(key)
            both_counts = all(type(n) is int for n in (before, item))
            result[key] = before + item if key in result and both_counts else item
        return result
    return value


def flatten(
    run: RunSummary, record: Mapping[str, Any], category_of: CategoryLookup | None = None
) -> dict[str, Any]:
    """One dialogue record as a flat row (with its harm category when a lookup is given)."""
    row: dict[str, Any] = {
        "run": run.name,
        "run_dir": redact(str(run.path)),
        "model": run.model,
        "judge": run.judge,
        "judge_kind": run.judge_kind,
    }
    row.update({key: record.get(key) for key in DIALOGUE_COLUMNS})
    row["harm_category"] = (
        category_of(str(record.get("unsafe_intent") or "")) if category_of else None
    )
    row["error"] = record.get("error")
    for index, turn in enumerate(record.get("turns") or [], start=1):
        row[f"turn_{index}"] = turn
    for index, reply in enumerate(record.get("replies") or [], start=1):
        row[f"reply_{index}"] = reply
    judge = record.get("judge") or {}
    row["judge_score"] = judge.get("score")
    row["judge_explanation"] = judge.get("explanation")
    row["judge_error"] = judge.get("error")
    questions = record.get("questions") or []
    for kind in ("mcq", "tf"):
        chosen = [q for q in questions if q.get("kind") == kind]
        answered = [q for q in chosen if q.get("error") is None]
        row[f"{kind}_n"] = len(answered)
        row[f"{kind}_correct"] = sum(bool(q.get("correct")) for q in answered)
        row[f"{kind}_unparseable"] = sum(q.get("answer") is None for q in answered)
        row[f"{kind}_failed"] = len(chosen) - len(answered)
    prefix = f"{record['id']}/"
    for question in questions:
        qid = str(question.get("id", ""))
        name = (qid[len(prefix) :] if qid.startswith(prefix) else qid).replace("/", "_")
        for key in QUESTION_FIELDS:
            row[f"{name}_{key}"] = question.get(key)
    return row


def dialogue_table(
    runs: Sequence[RunRecords], category_of: CategoryLookup | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (fixed ones first, per-question ones sorted) and one row per dialogue."""
    rows = [flatten(r.run, record, category_of) for r in runs for record in r.dialogues]
    fixed = [*RUN_COLUMNS, *DIALOGUE_COLUMNS, "harm_category", "error"]
    turns = sorted(
        {key for row in rows for key in row if key.startswith(("turn_", "reply_"))},
        key=lambda key: (key.split("_")[0] == "reply", int(key.rsplit("_", 1)[1])),
    )
    totals = [f"{k}_{s}" for k in ("mcq", "tf") for s in ("n", "correct", "unparseable", "failed")]
    judge = ["judge_score", "judge_explanation", "judge_error"]
    known = {*fixed, *turns, *totals, *judge}
    questions = sorted({key for row in rows for key in row} - known)
    return [*fixed, *turns, *judge, *totals, *questions], rows


def write_exports(
    runs: Sequence[RunRecords],
    out: Path,
    formats: Sequence[str],
    category_of: CategoryLookup | None = None,
) -> list[Path]:
    """`dialogues.parquet` and/or `dialogues.csv` in `out`; the paths written."""
    columns, rows = dialogue_table(runs, category_of)
    written = []
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
        path = out / "dialogues.parquet"
        pq.write_table(table, path)
        written.append(path)
    if "csv" in formats:
        path = out / "dialogues.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            for row in rows:
                writer.writerow({key: csv_cell(value) for key, value in row.items()})
        written.append(path)
    return written
