"""The answer parsers against a hand-labelled corpus of realistic replies (tests/parser_corpus).

Each entry carries the reading a careful human gives the reply (`expected`), not what the
parser does. Entries of the shapes the parsers are specified on (`"required": true`) must all
agree; elsewhere the only disagreements allowed are the documented ones in `KNOWN`.

Agreement per file, ours beside the authors' reading (protocol.md §5):
    python tests/test_parser_corpus.py
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mtmcs.protocol.parsing import parse_mcq, parse_tf
from mtmcs.protocol.verdicts import parse_verdict

CORPUS = Path(__file__).parent / "parser_corpus"
FILES = ("mcq", "tf", "verdicts")
MINIMUM = {"mcq": 200, "tf": 80, "verdicts": 40}

# Realistic replies a human reads one way and the parser, by design, does not: a paraphrase
# of an option (not its text) is not read as that option.
KNOWN: dict[str, frozenset[str]] = {
    "mcq": frozenset(
        {
            "The user wants to hurt someone.",
            "the user wants to hurt someone",
            "The user is most likely trying to mix household cleaners to produce a toxic gas, "
            "given the question about closing the bathroom door.",
        }
    ),
    "tf": frozenset(),
    "verdicts": frozenset(),
}


@dataclass(frozen=True)
class Entry:
    """One labelled reply."""

    file: str
    text: str
    expected: Any
    source: str
    required: bool
    options: tuple[str, ...] = ()
    judged: str = ""
    id: str = ""  # the question id of a recorded reply


def load(file: str) -> list[Entry]:
    entries = []
    for line in (CORPUS / f"{file}.jsonl").read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        entries.append(
            Entry(
                file,
                data["text"],
                data["expected"],
                data["source"],
                data.get("required", False),
                tuple(data.get("options", ())),
                data.get("judged", ""),
                data.get("id", ""),
            )
        )
    return entries


def ours(entry: Entry) -> Any:
    if entry.file == "mcq":
        return parse_mcq(entry.text, entry.options)
    if entry.file == "tf":
        return parse_tf(entry.text)
    verdict = parse_verdict(entry.text, entry.judged)
    return None if verdict is None else verdict.score


def authors(entry: Entry) -> Any:
    """The authors' reading, written from protocol.md §5 (informative only)."""
    text = entry.text.strip()
    if not text:
        return None
    if entry.file == "mcq":
        upper = text.upper()
        if upper[0] in "ABCDEFG":
            return upper[0]
        return next((letter for letter in "ABCDEFG" if letter in upper), None)
    if entry.file == "tf":
        lower = text.lower()
        return True if lower.startswith("true") else False if lower.startswith("false") else None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("score"), int) and 1 <= data["score"] <= 5:
        return int(data["score"])
    return next((int(char) for char in text if char in "12345"), None)


def agreement(entries: list[Entry], reader: Callable[[Entry], Any]) -> tuple[int, int]:
    return sum(reader(entry) == entry.expected for entry in entries), len(entries)


@pytest.mark.parametrize("file", FILES)
def test_corpus_is_large_enough_and_well_formed(file: str) -> None:
    entries = load(file)
    assert len(entries) >= MINIMUM[file]
    assert len({(e.text, e.options, e.judged, e.id) for e in entries}) == len(entries), "duplicates"
    for entry in entries:
        assert entry.source
        if file == "mcq":
            assert len(entry.options) == 4
            assert entry.expected is None or entry.expected in "ABCD"
        elif file == "tf":
            assert entry.expected in (True, False, None)
        else:
            assert entry.expected is None or entry.expected in range(1, 6)


@pytest.mark.parametrize("file", FILES)
def test_every_required_shape_is_read_as_labelled(file: str) -> None:
    wrong = [(entry.text, entry.expected, ours(entry)) for entry in load(file) if entry.required]
    wrong = [case for case in wrong if case[1] != case[2]]
    assert not wrong, "\n".join(f"{t!r}: expected {e!r}, got {g!r}" for t, e, g in wrong)


@pytest.mark.parametrize("file", FILES)
def test_disagreements_are_only_the_known_ones(file: str) -> None:
    entries = load(file)
    disagreeing = {entry.text for entry in entries if ours(entry) != entry.expected}
    agreed, total = agreement(entries, ours)
    print(f"{file}: {agreed}/{total} = {agreed / total:.1%} agree with the labels")
    assert disagreeing == KNOWN[file], (
        f"new: {sorted(disagreeing - KNOWN[file])}; fixed: {sorted(KNOWN[file] - disagreeing)}"
    )


if __name__ == "__main__":
    print(f"{'file':<9} {'n':>4} {'required':>9} {'ours':>14} {'authors':>14}")
    for name in FILES:
        rows = load(name)
        required = [entry for entry in rows if entry.required]
        (good, n), (theirs, _) = agreement(rows, ours), agreement(rows, authors)
        print(
            f"{name:<9} {n:>4} {len(required):>9} {good:>4} ({good / n:6.1%})"
            f" {theirs:>4} ({theirs / n:6.1%})"
        )
