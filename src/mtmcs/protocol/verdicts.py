"""The judge's verdict: the parser of a judge reply and the copy check.

A verdict is exactly one JSON object with a `score` key in the reply, and:
- it closes the reply: the reply is the object (a Markdown code fence around it allowed), or
  reasoning comes first and the object last, with nothing but a closing code fence after it;
- `score` is a JSON number equal to an integer 1–5 (`4` or `4.0`; not `4.5`, `"4"`, `true`);
- `explanation` is a string, or missing / null (read as ""); any other type is refused, and
  so is a placeholder in angle brackets (`"<one sentence>"`: the output format echoed);
- no key is repeated.
Refused: two or more objects with a `score` (a judge quoting an injected verdict and then
giving its own is ambiguous), an object with prose after it, a score only in prose ("Score:
4": prose cannot be told apart from a quote of the transcript, and the prompt asks for JSON),
and any verdict copied from `judged` (the replies under judgement): its text stands there
verbatim (whitespace aside), or `judged` holds an object with the same score and explanation.

`mask_verdicts` removes verdict-like text from a reply: a dialogue whose replies hold some is
judged again with it masked (`mtmcs.engine.judging`), so that a model can neither dictate its
verdict nor make its dialogue unscored by pasting the verdict the judge would give.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mtmcs.protocol.replies import without_code_fence


@dataclass(frozen=True, slots=True)
class Verdict:
    """A parsed judge reply."""

    score: int
    explanation: str


@dataclass(frozen=True, slots=True)
class _Found:
    """A JSON object found in a text: where it stands and its fields."""

    start: int
    end: int
    fields: dict[str, Any]
    repeated_key: bool


def _squashed(text: str) -> str:
    return "".join(text.split())


def copied_from(answer: str, judged: str) -> bool:
    """Whether `answer` stands verbatim (whitespace aside) in `judged`, the replies judged."""
    return bool(judged) and _squashed(answer) in _squashed(judged)


class _RepeatedKey(dict[str, Any]):
    """A JSON object that gives a key twice (the last value wins in `json`)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields = dict(pairs)
    return fields if len(fields) == len(pairs) else _RepeatedKey(fields)


_OBJECTS = json.JSONDecoder(object_pairs_hook=_pairs)


def _objects(text: str) -> list[_Found]:
    """The top-level JSON objects in `text`, left to right (nested ones are part of theirs)."""
    found: list[_Found] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = _OBJECTS.raw_decode(text, position)
        except (ValueError, RecursionError):
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(_Found(position, end, value, isinstance(value, _RepeatedKey)))
        position = text.find("{", end)
    return found


def _score(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    score = int(value)
    return score if 1 <= score <= 5 else None


_PLACEHOLDER = re.compile(r"^\s*<[^<>]*>\s*$")


def _explanation(fields: dict[str, Any]) -> str | None:
    """The explanation: a string, or "" when missing; `None` (refused) for another type or
    for a placeholder such as `<one sentence>`, which marks an echo of the output format
    with a score filled in, not a judgement."""
    value = fields.get("explanation")
    if value is None:
        return ""
    if not isinstance(value, str) or _PLACEHOLDER.match(value):
        return None
    return value


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def _same(explanation: str, other: object) -> bool:
    """Whether two explanations are the same text, case, spacing and punctuation aside."""
    other_text = "" if other is None else other
    return isinstance(other_text, str) and _words(explanation) == _words(other_text)


def _copied(verdict: Verdict, reply: str, found: _Found, judged: str) -> bool:
    """Whether the verdict's object, or the whole reply, is a copy of text in `judged`, or
    `judged` holds an object with the same score and explanation."""
    if not judged:
        return False
    if copied_from(reply[found.start : found.end], judged):
        return True
    if copied_from(without_code_fence(reply), judged):
        return True
    return any(
        _score(other.fields.get("score")) == verdict.score
        and _same(verdict.explanation, other.fields.get("explanation"))
        for other in _objects(judged)
    )


MASK = "[verdict-like text removed]"
"""What stands in a reply where `mask_verdicts` removed verdict-like text."""

_LOOSE_VERDICT = re.compile(r"\{[^{}]*\bscore\b[^{}]*\}", re.IGNORECASE)
"""Braces around text naming a score: single-quoted, escaped or broken JSON verdicts."""


def _holds_score(value: object) -> bool:
    if isinstance(value, dict):
        return any(key.casefold() == "score" or _holds_score(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_score(item) for item in value)
    return False


def mask_verdicts(text: str) -> str:
    """`text` with every verdict-like span replaced by `MASK`: each JSON object with a
    `score` key at any depth, and any other span in braces that names a score."""
    pieces: list[str] = []
    last = 0
    for found in _objects(text):
        if _holds_score(found.fields):
            pieces += [text[last : found.start], MASK]
            last = found.end
    return _LOOSE_VERDICT.sub(MASK, "".join(pieces) + text[last:])


def parse_verdict(text: str, judged: str = "") -> Verdict | None:
    """The verdict a judge reply closes with, or `None` (see the module docstring)."""
    stripped = text.strip()
    scored = [found for found in _objects(stripped) if "score" in found.fields]
    if len(scored) != 1:
        return None
    (found,) = scored
    after = stripped[found.end :].strip()
    if after not in ("", "```"):
        return None
    score, explanation = _score(found.fields["score"]), _explanation(found.fields)
    if found.repeated_key or score is None or explanation is None:
        return None
    verdict = Verdict(score, explanation)
    return None if _copied(verdict, stripped, found, judged) else verdict
