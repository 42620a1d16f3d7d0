"""Per-dialogue records of a run (`dialogues.jsonl`): what each dialogue's turns, questions
and judge produced; written by a run, read back by the stance pass and the report."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtmcs.errors import ConfigError, DataError, Problem
from mtmcs.protocol.types import INTENTS, MODALITIES, SPLITS
from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome

DIALOGUES_FILE = "dialogues.jsonl"


def dialogue_records(
    dialogues: Sequence[DialogueOutcome], questions: Sequence[QuestionOutcome]
) -> Iterator[dict[str, Any]]:
    """One JSON-ready record per dialogue, in dialogue-id order, with its questions."""
    by_dialogue: defaultdict[str, list[QuestionOutcome]] = defaultdict(list)
    for question in questions:
        by_dialogue[question.dialogue.id].append(question)
    for outcome in sorted(dialogues, key=lambda o: o.dialogue.id):
        d = outcome.dialogue
        yield {
            "id": d.id,
            "pair_id": d.pair_id,
            "split": d.split,
            "row_id": d.row_id,
            "modality": d.modality,
            "image_variant": d.image_variant,
            "intent": d.intent,
            "unsafe_intent": d.unsafe_intent,
            "turns": list(d.turns),
            "replies": list(outcome.replies),
            "error": outcome.error,
            "judge": {
                "score": outcome.verdict.score if outcome.verdict else None,
                "explanation": outcome.verdict.explanation if outcome.verdict else None,
                "raw": outcome.judge_raw,
                "error": outcome.judge_error,
            },
            "questions": [
                {
                    "id": q.question.id,
                    "kind": q.question.kind,
                    "text": q.question.text,
                    "options": list(q.question.options),
                    "ground_truth": q.question.ground_truth,
                    "raw": q.raw,
                    "answer": q.answer,
                    "correct": q.correct,
                    "error": q.error,
                }
                for q in sorted(by_dialogue[d.id], key=lambda q: q.question.id)
            ],
        }


def record_cell(record: Mapping[str, Any]) -> str:
    """The metrics cell of a dialogue record: its modality, or `multimodal@vK` for a variant."""
    variant = record.get("image_variant") or 0
    return str(record["modality"]) + (f"@v{variant}" if variant else "")


def problem(source: str, message: str, split: str = "", field: str = "") -> DataError:
    """A data error about one place (`file:line`) of a run's files."""
    return DataError([Problem(source, split, None, field, message)])


def json_lines(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    """(`path:line`, object) for each non-empty line; a line that is no object is an error."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                source = f"{path}:{number}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as error:
                    raise problem(source, f"not JSON ({error.msg})") from None
                if not isinstance(data, dict):
                    raise problem(source, "not a JSON object")
                yield source, data
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error


def _check_record(source: str, record: Mapping[str, Any]) -> None:
    dialogue = record.get("id")
    if not isinstance(dialogue, str) or not dialogue:
        raise problem(source, "no dialogue id", field="id")
    expected: dict[str, Sequence[object]] = {
        "split": SPLITS,
        "modality": MODALITIES,
        "intent": INTENTS,
    }
    for key, allowed in expected.items():
        if record.get(key) not in allowed:
            raise problem(
                source,
                f"dialogue {dialogue}: {key} is {record.get(key)!r}, expected one of "
                f"{', '.join(map(str, allowed))}",
                field=key,
            )
    for key in ("turns", "replies"):
        texts = record.get(key)
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise problem(source, f"dialogue {dialogue}: {key} is not a list of strings", field=key)


def read_dialogue_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of `RUN_DIR/dialogues.jsonl`, each checked for the fields readers rely on."""
    path = run_dir / DIALOGUES_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {DIALOGUES_FILE} in {run_dir}: not a run directory (run `mtmcs run` first)"
        )
    records = []
    for source, record in json_lines(path):
        _check_record(source, record)
        records.append(record)
    return records
