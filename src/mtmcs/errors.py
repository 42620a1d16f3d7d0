"""One error hierarchy; every message says what went wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class MtmcsError(Exception):
    """Base of every error the `mtmcs` command reports as one clear line."""


class ConfigError(MtmcsError):
    """A bad option, a missing API key or an unknown model name."""


class UsageError(ConfigError):
    """A mistake in how the command was called, found before any work (an unset API-key
    variable, a malformed base URL): the command exits 2, as for a usage error."""


class ProviderError(MtmcsError):
    """A model provider cannot be used (unreachable server, rejected credentials)."""


class StoreError(MtmcsError):
    """The result store cannot be opened or written."""


class OutputError(MtmcsError):
    """An output file cannot be written (a full disk, a quota, a read-only file system)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a dataset, located by file, split, row id and field."""

    source: str
    split: str
    row_id: int | str | None
    field: str
    message: str

    def __str__(self) -> str:
        parts = [self.split] if self.split else []
        if self.row_id is not None:
            parts.append(f"row {self.row_id}")
        if self.field:
            parts.append(f"field {self.field}")
        where = f" {' '.join(parts)}:" if parts else ""
        return f"{self.source}:{where} {self.message}"


class DataError(MtmcsError):
    """Invalid data; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(str(problem) for problem in self.problems[:50])
        more = f"\n… and {count - 50} more" if count > 50 else ""
        super().__init__(f"{count} problem(s) in the data:\n{lines}{more}")
