"""Files written whole or not at all: a reader never sees half of one; CSV cells safe to open
in a spreadsheet."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file that replaces `path` once written in full (a temporary file beside it, then a
    rename); on any error the temporary file is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(descriptor, mode, encoding=None if binary else "utf-8") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """`data` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, atomically."""
    with atomic_file(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)."""


def csv_cell(value: Any) -> Any:
    """One CSV cell, safe to open in a spreadsheet: `None` is empty; text starting with `=`,
    `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, so a spreadsheet
    shows it as text instead of evaluating it; numbers (int, float) are written as they are
    (a spreadsheet reads `-0.5` as a number, never as a formula). Only the type decides: text
    that looks like a negative number (`"-1"`) is quoted like any other text."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """`csv_cell` of every value: what every CSV writer of ours writes."""
    return [csv_cell(value) for value in values]
