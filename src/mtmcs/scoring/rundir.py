"""A run directory: the names of its files, and their typed, versioned reading and writing.

Runs write through `RunDir` and reports read through it. A run writes `dialogues.jsonl`
first and `summary.json` last, stamped with the SHA-256 of the dialogues written: reading
the summary checks that the `dialogues.jsonl` beside it is that one, so a run stopped between
the two writes, or a file replaced or edited since, is refused with one line saying to rerun
(the stance pass reads `dialogues.jsonl` alone, unchecked). Reading checks each record's
`format_version` first: a newer one is refused with one line naming the file ("written by
a newer mtmcs-bench: upgrade"); a record without one (written before versioning) is read as
version 0 when it validates; anything that does not validate is a `DataError` naming the
file (and line) and the field. Writes are atomic (`mtmcs.files`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from mtmcs.errors import ConfigError, DataError, Problem
from mtmcs.files import write_json, write_jsonl
from mtmcs.scoring.runfiles import (
    FORMAT_VERSION,
    DialogueRecord,
    StanceRecord,
    Summary,
    Versioned,
)

SUMMARY_FILE = "summary.json"
DIALOGUES_FILE = "dialogues.jsonl"
STANCES_FILE = "turn_stances.jsonl"
STORE_FILE = "store.sqlite"

Record = TypeVar("Record", bound=Versioned)


@dataclass(frozen=True, slots=True)
class RunDir:
    """A run directory: `summary.json`, `dialogues.jsonl`, `turn_stances.jsonl` (after
    `mtmcs stances`) and the call store `store.sqlite`."""

    path: Path

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def dialogues_path(self) -> Path:
        return self.path / DIALOGUES_FILE

    @property
    def stances_path(self) -> Path:
        return self.path / STANCES_FILE

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    # --- writing ----------------------------------------------------------------------------

    def write_summary(self, summary: Summary) -> None:
        """`summary.json`, indented, atomically."""
        write_json(self.summary_path, summary.model_dump(mode="json"))

    def write_run(self, summary: Summary, records: Iterable[DialogueRecord]) -> Summary:
        """`dialogues.jsonl`, then `summary.json` stamped with its digest (the summary last:
        it vouches for the dialogues beside it); the summary as written."""
        digest = write_jsonl(self.dialogues_path, (r.model_dump(mode="json") for r in records))
        stamped = summary.model_copy(update={"dialogues_sha256": digest})
        self.write_summary(stamped)
        return stamped

    def write_stances(self, records: Iterable[StanceRecord | Mapping[str, Any]]) -> None:
        """`turn_stances.jsonl`, one record per line, atomically (a plain mapping is checked
        against `StanceRecord` first)."""
        write_jsonl(
            self.stances_path,
            (
                (
                    r
                    if isinstance(r, StanceRecord)
                    else StanceRecord.model_validate(r, strict=False)
                ).model_dump(mode="json")
                for r in records
            ),
        )

    # --- reading ----------------------------------------------------------------------------

    def read_summary(self) -> Summary:
        """The checked `summary.json` (`ConfigError` when this is no finished run)."""
        if not self.path.exists():
            raise ConfigError(f"run directory {self.path} does not exist")
        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a directory (expected a run directory)")
        path = self.summary_path
        if not path.is_file():
            raise ConfigError(
                f"no {SUMMARY_FILE} in {self.path}: not a finished run "
                f"(run `mtmcs run --out {self.path}`)"
            )
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _problem(str(path), f"not readable JSON ({error})") from error
        if not isinstance(data, dict):
            raise _problem(str(path), "not a JSON object: not an mtmcs summary")
        summary = _validate(Summary, str(path), text, data, "the summary")
        self._check_pair(summary)
        return summary

    def _check_pair(self, summary: Summary) -> None:
        """Refuse a `dialogues.jsonl` other than the one written with `summary` (not checked
        when the summary predates the stamp or the dialogues are absent)."""
        if summary.dialogues_sha256 is None or not self.dialogues_path.is_file():
            return
        digest = hashlib.sha256()
        try:
            with self.dialogues_path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as error:
            raise ConfigError(f"cannot read {self.dialogues_path}: {error.strerror}") from error
        if digest.hexdigest() != summary.dialogues_sha256:
            raise ConfigError(
                f"{self.summary_path} and {self.dialogues_path} are not from the same run (a "
                "run stopped between writing them, or one was replaced or edited since); rerun "
                f"`mtmcs run` with the same arguments and --out {self.path}: it resumes from "
                "the store, no call made is made again"
            )

    def read_dialogues(self) -> list[DialogueRecord]:
        """The checked records of `dialogues.jsonl` (`ConfigError` when it is missing)."""
        if not self.dialogues_path.is_file():
            raise ConfigError(
                f"no {DIALOGUES_FILE} in {self.path}: not a run directory (run `mtmcs run` first)"
            )
        return list(_read_lines(DialogueRecord, self.dialogues_path))

    def read_stances(self) -> list[StanceRecord] | None:
        """The checked records of `turn_stances.jsonl`, or `None` before `mtmcs stances`."""
        if not self.stances_path.is_file():
            return None
        return list(_read_lines(StanceRecord, self.stances_path))


def _problem(source: str, message: str, field: str = "") -> DataError:
    return DataError([Problem(source, "", None, field, message)])


def check_version(source: str, data: Mapping[str, Any]) -> int:
    """The `format_version` of a record (0 when it has none); a newer one than this package
    reads is refused."""
    version = data.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise _problem(
            source, f"{version!r} is not a format version (a whole number ≥ 0)", "format_version"
        )
    if version > FORMAT_VERSION:
        raise _problem(
            source,
            f"written by a newer mtmcs-bench (format version {version}; this one reads up to "
            f"{FORMAT_VERSION}): upgrade mtmcs-bench to read it",
            "format_version",
        )
    return version


def _validate(
    model: type[Record], source: str, text: str, data: Mapping[str, Any], subject: str
) -> Record:
    """`text` (whose parsed form is `data`) as a `model`, its version checked first."""
    version = check_version(source, data)
    try:
        record = model.model_validate_json(text)
    except ValidationError as error:
        raise _invalid(source, error, data, subject) from None
    return record if version else record.model_copy(update={"format_version": 0})


def _invalid(
    source: str, error: ValidationError, data: Mapping[str, Any], subject: str
) -> DataError:
    """Every validation error as a problem naming the field (and the dialogue, when known)."""
    dialogue = data.get("id")
    about = f"dialogue {dialogue}: " if isinstance(dialogue, str) and dialogue else ""
    problems = []
    for item in error.errors(include_url=False):
        loc = item["loc"]
        field = ".".join(str(part) for part in loc)
        if item["type"] == "missing":
            parent = ".".join(str(part) for part in loc[:-1]) or subject
            message = f"{parent} has no '{loc[-1]}'"
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            if loc and item["type"] != "model_type":
                message += f" (got {item['input']!r:.80})"
        problems.append(Problem(source, "", None, field, about + message))
    return DataError(problems)


def _read_lines(model: type[Record], path: Path) -> Iterator[Record]:
    """Each non-empty line of a JSONL run file as a `model`, checked."""
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield _read_line(model, f"{path}:{number}", line)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error


def _read_line(model: type[Record], source: str, line: str) -> Record:
    try:  # the usual case: one parse, then the version
        record = model.model_validate_json(line)
    except ValidationError:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise _problem(source, f"not JSON ({error.msg})") from None
        if not isinstance(data, dict):
            raise _problem(source, "not a JSON object") from None
        return _validate(model, source, line, data, "the record")
    if "format_version" not in record.model_fields_set:
        return record.model_copy(update={"format_version": 0})
    if record.format_version > FORMAT_VERSION:
        check_version(source, {"format_version": record.format_version})
    return record
