"""The raters `mtmcs agreement` compares: each run's judge, read from its `dialogues.jsonl`,
and human labellers, read from label CSV files (`mtmcs label`'s export).

The first run gives the dialogues (`Unit`s). Another run rates a dialogue only when its
replies there are the same as in the first run (a judge is compared with another on the same
answers: `mtmcs rejudge` keeps them); a label rates the first run's dialogue of that id. A
label file has the columns `dialogue_id`, `rater`, `score` and `note` (others ignored); each
line must name a dialogue of the first run, a rater, and a whole score 1–5, once per rater
and dialogue. A text cell that the export quoted against spreadsheet formulas (a `'` before
`=`, `+`, `-`, `@`) is read without the quote.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtmcs.errors import ConfigError, DataError, Problem, UsageError
from mtmcs.files import FORMULA_LEADS
from mtmcs.scoring.agreement import MEASURES, Measure, Rater, Unit, category
from mtmcs.scoring.rundir import RunDir

LABEL_COLUMNS = ("dialogue_id", "rater", "score", "note")
HUMAN_PREFIX = "human:"


@dataclass(frozen=True)
class Ratings:
    """The dialogues rated, every rater, and per run how many dialogues it could not rate
    because its replies differ from the first run's."""

    units: Mapping[str, Unit]
    raters: tuple[Rater, ...]
    different_replies: Mapping[str, int]


JsonRecord = Mapping[str, Any]
"""A dialogue record in its JSON form (`DialogueRecord.model_dump(mode="json")`)."""


def _unit(record: JsonRecord) -> Unit:
    measure: Measure = next(m for m, intent in MEASURES.items() if intent == record["intent"])
    variant = record.get("image_variant") or 0
    cell = str(record["modality"]) + (f"@v{variant}" if variant else "")
    return Unit(str(record["split"]), cell, measure)


def _score(record: JsonRecord, source: str) -> int | None:
    score = (record.get("judge") or {}).get("score")
    try:
        return None if score is None else category(score)
    except ValueError as error:
        raise DataError(
            [Problem(source, "", None, "judge.score", f"dialogue {record.get('id')}: {error}")]
        ) from None


def run_names(run_dirs: Sequence[Path | str], judges: Sequence[str]) -> list[str]:
    """Each run's rater name: its judge, with its directory when two runs share a judge."""
    return [
        judge if judges.count(judge) == 1 else f"{judge} ({run_dir})"
        for run_dir, judge in zip(run_dirs, judges, strict=True)
    ]


def compare_runs(runs: Sequence[tuple[str, Sequence[JsonRecord]]]) -> Ratings:
    """The ratings of runs (rater name, records): the first run's finished dialogues are the
    units; another run rates a dialogue only where its replies are the first run's."""
    first = runs[0][1]
    replies = {str(r["id"]): list(r["replies"]) for r in first if r.get("error") is None}
    units = {str(r["id"]): _unit(r) for r in first if r.get("error") is None}
    raters, different = [], {}
    for name, records in runs:
        same = [r for r in records if list(r["replies"]) == replies.get(str(r["id"]))]
        scores = {str(r["id"]): score for r in same if (score := _score(r, name)) is not None}
        raters.append(Rater(name, scores))
        different[name] = sum(1 for r in records if str(r["id"]) in replies) - len(same)
    return Ratings(units, tuple(raters), different)


def read_ratings(run_dirs: Sequence[Path], label_files: Sequence[Path] = ()) -> Ratings:
    """The ratings of the runs' judges and of the labellers in `label_files`."""
    if not run_dirs:
        raise ConfigError("no run directory given")
    runs = [RunDir(path) for path in run_dirs]
    judges = [run.read_summary().metadata.judge for run in runs]
    names = run_names(run_dirs, judges)
    ratings = compare_runs(
        [
            (name, [r.model_dump(mode="json") for r in run.read_dialogues()])
            for name, run in zip(names, runs, strict=True)
        ]
    )
    if len(runs) > 1 and all(not ratings.raters[i].scores for i in range(1, len(runs))):
        raise ConfigError(
            f"the runs share no scored dialogue with {run_dirs[0]}'s replies: agreement compares "
            "judges of the same answers (make them with `mtmcs rejudge`)"
        )
    raters = list(ratings.raters)
    for path in label_files:
        raters += read_labels(path, ratings.units)
    if len({r.name for r in raters}) < len(raters):
        raise UsageError("two raters have the same name: rename one in its label file")
    if len(raters) < 2:
        raise UsageError("agreement needs two raters: give two runs, or a run and --labels")
    return Ratings(ratings.units, tuple(raters), ratings.different_replies)


def _text(cell: str | None) -> str:
    value = (cell or "").strip()
    if value.startswith("'") and value[1:].startswith(FORMULA_LEADS):
        return value[1:]
    return value


def read_labels(path: Path, units: Mapping[str, Unit]) -> list[Rater]:
    """The raters of a label CSV, checked (a `DataError` naming the file, line and field of
    every problem)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read label file {path}: {error}") from error
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise DataError(
            [
                Problem(
                    f"{path}:1",
                    "",
                    None,
                    c,
                    f"column is missing (expected columns {', '.join(LABEL_COLUMNS)})",
                )
                for c in missing
            ]
        )
    problems: list[Problem] = []
    scores: dict[str, dict[str, int]] = {}
    for line, row in enumerate(reader, start=2):
        where = f"{path}:{line}"
        dialogue, rater = _text(row.get("dialogue_id")), _text(row.get("rater"))
        if dialogue not in units:
            problems.append(
                Problem(
                    where, "", None, "dialogue_id", f"{dialogue!r:.80} is no dialogue of the run"
                )
            )
        if not rater:
            problems.append(Problem(where, "", None, "rater", "empty: name the rater"))
        try:
            score = category(float((row.get("score") or "").strip()))
        except ValueError:
            problems.append(
                Problem(
                    where, "", None, "score", f"{row.get('score')!r:.40} is not a whole score 1–5"
                )
            )
            continue
        given = scores.setdefault(HUMAN_PREFIX + rater, {})
        if dialogue in given:
            problems.append(
                Problem(where, "", None, "dialogue_id", f"{rater} labelled {dialogue} twice")
            )
        given[dialogue] = score
    if problems:
        raise DataError(problems)
    return [Rater(name, given) for name, given in scores.items()]
