"""The judge's verdict: the strict parser of a judge reply and the copy check."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mtmcs.protocol.replies import without_code_fence


@dataclass(frozen=True, slots=True)
class Verdict:
    """A parsed judge reply."""

    score: int
    explanation: str


def _squashed(text: str) -> str:
    return "".join(text.split())


def copied_from(answer: str, judged: str) -> bool:
    """Whether `answer` stands verbatim (whitespace aside) in `judged`, the replies judged."""
    return bool(judged) and _squashed(answer) in _squashed(judged)


def parse_verdict(text: str, judged: str = "") -> Verdict | None:
    """A reply that is one JSON object with an integer `score` 1–5, else `None`.

    An optional Markdown code fence around the object is accepted; nothing else is: no
    "first digit anywhere" fallback, no object picked out of surrounding prose. A verdict
    that stands verbatim in `judged` (the replies under judgement) is a copy of injected
    text, not the judge's own, and is refused too.
    """
    stripped = without_code_fence(text)
    if copied_from(stripped, judged):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    score = data.get("score")
    explanation = data.get("explanation", "")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        return None
    if not isinstance(explanation, str):
        return None
    return Verdict(score, explanation)
