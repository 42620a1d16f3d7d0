"""Files written whole or not at all: a reader never sees half of one, and a file system that
cannot take one (full, a quota, a file-size limit, read-only) is one `OutputError` line naming
it; CSV cells safe to open in a spreadsheet."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mtmcs.errors import OutputError

NO_ROOM = {
    errno.ENOSPC: ("no space left on device", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno.EFBIG: ("file too large for the file-size limit (ulimit -f)", "raise the limit"),
    errno.EROFS: ("read-only file system", "make it writable"),
}
"""The errors of a file system that cannot take more: what it is, and what to do."""


def no_room(error: OSError) -> bool:
    """Whether `error` says the file system cannot take more (full, quota, size, read-only)."""
    return error.errno in NO_ROOM


def cannot_write(path: Path | str, error: OSError) -> str:
    """One line for a file system that cannot take `path` (see `no_room`), and what to do."""
    what, action = NO_ROOM[error.errno or 0]
    return f"{what} writing {path}; {action} and rerun the same command"


def identity_of(status: os.stat_result) -> list[int]:
    """A file's size, modification and change times, inode and device: any write changes
    the change time, which no tool can set back (git's index relies on the same)."""
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, status.st_dev]


def file_identity(path: Path | str) -> list[int] | None:
    """`identity_of` a file, or `None` when there is none at `path`."""
    try:
        return identity_of(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_PERMISSIONS = 0o666 & ~_umask()
"""The mode a new file gets from `open()` under this process's umask (0644 under 022)."""


@contextmanager
def atomic_file(path: Path, binary: bool = False) -> Iterator[IO[Any]]:
    """A file that replaces `path` once written in full (a temporary file beside it, then a
    rename), with the permissions `open()` would give it; on any error the temporary file
    is removed and `path` is left as it was. A file system that cannot take it (full,
    quota, size limit, read-only) is an `OutputError` naming `path`; any other `OSError` is
    raised as it is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as error:
        if no_room(error):
            raise OutputError(cannot_write(path, error)) from error
        raise
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(descriptor, mode, encoding=None if binary else "utf-8") as handle:
            yield handle
            os.fchmod(handle.fileno(), _PERMISSIONS)  # as open() would make it, not 0600
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and no_room(error):
            raise OutputError(cannot_write(path, error)) from error
        raise


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """`data` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        handle.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> str:
    """One JSON object per line, atomically; the SHA-256 of the bytes written (hex)."""
    digest = hashlib.sha256()
    with atomic_file(path, binary=True) as handle:
        for record in records:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
            digest.update(line)
            handle.write(line)
    return digest.hexdigest()


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
