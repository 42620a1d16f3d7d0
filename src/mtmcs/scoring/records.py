"""Per-dialogue records of a run: what each dialogue's turns, questions and judge produced."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome


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
