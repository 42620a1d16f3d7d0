"""Strict parsers for MCQ letters and TF verdicts.

A reply parses only when it clearly states one answer; refusals, several letters and empty
text are unparseable (`None`) and count as wrong. Never "the first letter anywhere".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_MARKUP = re.compile(r"[*_`#]+")
_SPACE = re.compile(r"\s+")
_LEAD = r"(?:(?:so|thus|therefore),?\s+)?(?:the\s+)?(?:correct\s+|final\s+|best\s+)?"
_WORD = r"(?:answer|option|choice)"
# A bare letter, any case: "C", "c", "C.", "(C)", "[C]".
_BARE = re.compile(r"^[(\[]?([A-Za-z])[)\].:]?$")
# "Answer: C", "The answer is (C).", "Option C": the words in any case, then the letter.
_STATED = re.compile(rf"^{_LEAD}{_WORD}(?:\s+is)?\s*[:\-]?\s*[(\[]?([A-Za-z])[)\]]?(.*)$", re.I)
# Two or more letters offered together: "A or C", "A, C", "B/C".
_LETTER_LIST = re.compile(r"\b[A-Z]\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?[A-Z]\b")
# "C) option text", "C. option text", "(C) option text".
_LEADING = re.compile(r"^[(\[]?([A-Z])(?:[)\]]|[.:]\s)\s*\S")
_TF_BARE = re.compile(r"^(true|false)[.!]?$")
_TF_STATED = re.compile(
    rf"^(?:{_LEAD}answer\s*(?:is)?\s*[:\-]?\s*|the\s+statement\s+is\s+|it\s+is\s+|this\s+is\s+)?"
    r"(true|false)\b(?![\s\-]*(?:or|/)\s*(?:true|false))"
)


def _clean(text: str) -> str:
    return _SPACE.sub(" ", _MARKUP.sub("", text)).strip()


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).strip()


def _stated_letter(letter: str, tail: str) -> str | None:
    """The letter after "Answer:" when it stands alone ("The answer is a bit…" is not A)."""
    if not tail or tail[0] in ".,:;)":
        return letter.upper()
    if letter.isupper() and tail[0].isspace():
        return letter
    return None


def parse_mcq(text: str, options: Sequence[str]) -> str | None:
    """The option letter a reply states, or `None` when unparseable.

    Accepts `C`, `c`, `C.`, `(C)`, `Answer: C`, `The answer is C`, `**C**`, `C) text`
    and an option's full text; rejects refusals, several letters and empty replies.
    """
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]
    cleaned = _clean(text)
    if not cleaned:
        return None
    if _LETTER_LIST.search(cleaned):
        return None
    letter: str | None = None
    if match := _BARE.match(cleaned):
        letter = match.group(1).upper()
    elif match := _STATED.match(cleaned):
        letter = _stated_letter(match.group(1), match.group(2))
    elif match := _LEADING.match(cleaned):
        letter = match.group(1)
    else:
        wanted = _normalise(cleaned)
        hits = [letters[i] for i, option in enumerate(options) if _normalise(option) == wanted]
        letter = hits[0] if len(hits) == 1 else None
    return letter if letter is not None and letter in letters else None


def parse_tf(text: str) -> bool | None:
    """The verdict a reply states (`True`, `**False**`, `The statement is false.`) or `None`."""
    cleaned = _clean(text).lower()
    if not cleaned:
        return None
    match = _TF_BARE.match(cleaned) or _TF_STATED.match(cleaned)
    if match is None:
        return None
    return match.group(1) == "true"
