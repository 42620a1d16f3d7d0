"""Per-dialogue records of a run (`dialogues.jsonl`): what each dialogue's turns, questions
and judge produced; written by a run, read back by the stance pass and the report (the
record type is `mtmcs.scoring.runfiles.DialogueRecord`, the file `RunDir.dialogues_path`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtmcs.protocol.types import Dialogue, Question
from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome
from mtmcs.scoring.rundir import DIALOGUES_FILE, RunDir
from mtmcs.scoring.runfiles import DialogueRecord, JudgeRecord, QuestionRecord

__all__ = [
    "DIALOGUES_FILE",
    "dialogue_records",
    "read_dialogue_records",
    "record_answers",
    "record_cell",
    "record_dialogue",
]


def dialogue_records(
    dialogues: Sequence[DialogueOutcome], questions: Sequence[QuestionOutcome]
) -> Iterator[DialogueRecord]:
    """One record per dialogue, in dialogue-id order, with its questions."""
    by_dialogue: defaultdict[str, list[QuestionOutcome]] = defaultdict(list)
    for question in questions:
        by_dialogue[question.dialogue.id].append(question)
    for outcome in sorted(dialogues, key=lambda o: o.dialogue.id):
        d, verdict = outcome.dialogue, outcome.verdict
        yield DialogueRecord(
            id=d.id,
            pair_id=d.pair_id,
            split=d.split,
            row_id=d.row_id,
            modality=d.modality,
            image_variant=d.image_variant,
            intent=d.intent,
            unsafe_intent=d.unsafe_intent,
            turns=tuple(d.turns),
            replies=tuple(outcome.replies),
            error=outcome.error,
            judge=JudgeRecord(
                score=verdict.score if verdict else None,
                explanation=verdict.explanation if verdict else None,
                raw=outcome.judge_raw,
                masked_raw=outcome.masked_raw,
                error=outcome.judge_error,
            ),
            questions=tuple(
                QuestionRecord(
                    id=q.question.id,
                    kind=q.question.kind,
                    text=q.question.text,
                    options=tuple(q.question.options),
                    ground_truth=q.question.ground_truth,
                    raw=q.raw,
                    answer=q.answer,
                    correct=q.correct,
                    error=q.error,
                )
                for q in sorted(by_dialogue[d.id], key=lambda q: q.question.id)
            ),
        )


def record_dialogue(record: DialogueRecord, row_id: int) -> Dialogue:
    """The dialogue `record` was written from, without its image, as row `row_id` (the
    record's own; the caller decides what stands in for a record written without one)."""
    r1, r2, r3 = record.turns
    return Dialogue(
        id=record.id,
        pair_id=record.pair_id,
        split=record.split,
        row_id=row_id,
        modality=record.modality,
        intent=record.intent,
        turns=(r1, r2, r3),
        image_id=None,
        questions=tuple(
            Question(q.id, q.kind, q.text, tuple(q.options), q.ground_truth)
            for q in record.questions
        ),
        image_variant=record.image_variant,
        unsafe_intent=record.unsafe_intent,
    )


def record_answers(record: DialogueRecord, dialogue: Dialogue) -> list[QuestionOutcome]:
    """The answers `record` holds to `dialogue`'s questions (`record_dialogue` of it), as
    the run scored them."""
    return [
        QuestionOutcome(question, dialogue, q.raw, q.answer, error=q.error)
        for question, q in zip(dialogue.questions, record.questions, strict=True)
    ]


def record_cell(record: Mapping[str, Any]) -> str:
    """The metrics cell of a dialogue record: its modality, or `multimodal@vK` for a variant."""
    variant = record.get("image_variant") or 0
    return str(record["modality"]) + (f"@v{variant}" if variant else "")


def read_dialogue_records(run_dir: Path) -> list[dict[str, Any]]:
    """The checked records of `RUN_DIR/dialogues.jsonl` in their JSON form (read through
    `RunDir`: a record of a newer format is refused, an older one read when it validates)."""
    return [record.model_dump(mode="json") for record in RunDir(run_dir).read_dialogues()]
