"""What a run produced for each dialogue and question (values the metrics are computed from)."""

from __future__ import annotations

from dataclasses import dataclass

from mtmcs.protocol.judge import Verdict
from mtmcs.protocol.types import Dialogue, Question


@dataclass(frozen=True, slots=True)
class QuestionOutcome:
    """A question's answer: the parsed value (`None` when unparseable) or the call's error."""

    question: Question
    dialogue: Dialogue
    raw: str | None
    answer: str | bool | None
    error: str | None = None

    @property
    def correct(self) -> bool:
        """Right answer; an unparseable answer is wrong."""
        return (
            self.error is None
            and self.answer is not None
            and (self.answer == self.question.ground_truth)
        )


@dataclass(frozen=True, slots=True)
class DialogueOutcome:
    """A dialogue's replies and its judge verdict (`None` when unscored), or the error;
    `judge_raw` is the judge's reply to the replies as they are, `masked_raw` its reply to
    them with verdict-like text masked (only when they held some; its verdict counts)."""

    dialogue: Dialogue
    replies: tuple[str, ...]
    verdict: Verdict | None
    judge_raw: str | None
    error: str | None = None
    judge_error: str | None = None
    masked_raw: str | None = None
