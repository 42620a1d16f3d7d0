"""Dialogue records back into outcomes, and the run's figures computed from them.

A record (`mtmcs.scoring.runfiles.DialogueRecord`, a line of `dialogues.jsonl`) holds all a
dialogue's outcome holds but the image; the inspect task keeps one per sample and computes its
metrics from them with `mtmcs.scoring.metrics.compute_metrics`, the function `mtmcs run` uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from mtmcs.protocol.judge import Verdict
from mtmcs.protocol.types import MODALITIES, SPLITS
from mtmcs.scoring.metrics import Stat, compute_metrics
from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome
from mtmcs.scoring.records import record_answers, record_dialogue
from mtmcs.scoring.runfiles import DialogueRecord


def record_outcomes(
    record: DialogueRecord,
) -> tuple[DialogueOutcome, tuple[QuestionOutcome, ...]]:
    """The dialogue outcome and question outcomes a record was written from (no image)."""
    dialogue = record_dialogue(record, record.row_id if record.row_id is not None else -1)
    judge = record.judge
    verdict = None if judge.score is None else Verdict(judge.score, judge.explanation or "")
    outcome = DialogueOutcome(
        dialogue,
        tuple(record.replies),
        verdict,
        judge.raw,
        error=record.error,
        judge_error=judge.error,
        masked_raw=judge.masked_raw,
    )
    return outcome, tuple(record_answers(record, dialogue))


def record_figures(records: Sequence[DialogueRecord]) -> dict[str, dict[str, dict[str, Stat]]]:
    """The figures `mtmcs run` computes (split → cell → metric → `Stat`) over `records`,
    for the splits and modalities they hold."""
    dialogues: list[DialogueOutcome] = []
    questions: list[QuestionOutcome] = []
    for record in records:
        outcome, answered = record_outcomes(record)
        dialogues.append(outcome)
        questions += answered
    splits = [s for s in SPLITS if any(r.split == s for r in records)]
    modalities = [m for m in MODALITIES if any(r.modality == m for r in records)]
    return compute_metrics(questions, dialogues, splits, modalities)


GROUPED_CELLS = ("variant_consistency",)
"""Cells whose figures are grouped under the cell's name, not each under its own name."""


def flat_figures(
    figures: Mapping[str, Mapping[str, Mapping[str, Stat]]],
) -> Iterator[tuple[str, str, float]]:
    """(group, `split/cell/metric`, value) of every figure (split → cell → metric → `Stat`)
    that has a value; the group is the figure's name (`safe_mcq_accuracy`), or the cell's
    for `GROUPED_CELLS`."""
    for split, cells in figures.items():
        for cell, stats in cells.items():
            for name, stat in stats.items():
                if stat.value is not None:
                    group = cell if cell in GROUPED_CELLS else name
                    yield group, f"{split}/{cell}/{name}", stat.value
