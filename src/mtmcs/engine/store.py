"""The SQLite store: every finished call recorded once, keyed by a hash of its request.

A store that cannot go on is one `StoreError` line naming it: damaged (checked at open with
`PRAGMA quick_check`, about 25 ms per 40,000 calls, and on every read and write) or on a
file system that cannot take more. A damaged store is never deleted or overwritten, and the
calls already recorded in a full one are kept: the rerun makes none of them again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mtmcs.errors import StoreError
from mtmcs.files import cannot_write, no_room
from mtmcs.models.base import ChatRequest, Completion

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    item TEXT NOT NULL,
    output TEXT,
    finish_reason TEXT,
    parsed TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    latency_s REAL,
    error TEXT,
    created_at REAL NOT NULL,
    trace TEXT,
    CHECK ((output IS NULL) <> (error IS NULL))
);
CREATE INDEX IF NOT EXISTS calls_item ON calls (model, item);
"""
DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
"""The result codes of a file that is no sound SQLite database."""
COLUMNS = (
    "key, model, kind, item, output, finish_reason, parsed, input_tokens, output_tokens, "
    "latency_s, error, created_at, trace"
)


def request_key(model: str, item: str, request: ChatRequest) -> str:
    """Content hash of a call: model, item, messages (images by id) and decoding settings.

    The item id (dialogue or question) is part of the key, so the safe and unsafe dialogue of
    a pair stay independent samples even where their first turns are identical.
    """
    payload: dict[str, Any] = {
        "model": model,
        "item": item,
        "messages": [
            [m.role, m.text, m.image_id] + (["after"] if m.image_order == "after" else [])
            for m in request.messages
        ],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
    }
    if request.reasoning_effort is not None:  # absent otherwise: earlier keys stay valid
        payload["reasoning_effort"] = request.reasoning_effort
    if request.extra_body:  # likewise
        payload["extra_body"] = [list(pair) for pair in request.extra_body]
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A finished call: either an output or an error, never both."""

    key: str
    model: str
    kind: str
    item: str
    output: str | None
    finish_reason: str | None
    parsed: Any
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    error: str | None
    trace: tuple[tuple[str, str], ...] = ()

    @classmethod
    def answered(
        cls,
        key: str,
        item: str,
        model: str,
        kind: str,
        completion: Completion,
        parsed: Any,
        latency_s: float,
    ) -> CallRecord:
        """The record of a call the model answered."""
        return cls(
            key,
            model,
            kind,
            item,
            completion.text,
            completion.finish_reason,
            parsed,
            completion.input_tokens,
            completion.output_tokens,
            latency_s,
            None,
            completion.trace,
        )

    @classmethod
    def failed(
        cls, key: str, item: str, model: str, kind: str, cause: str, latency_s: float
    ) -> CallRecord:
        """The record of a call that got no answer, with its cause."""
        return cls(key, model, kind, item, None, None, None, None, None, latency_s, cause)


class Store:
    """Results of calls in one SQLite file (WAL, one writer: the engine's event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _exclusive_lock(path.with_name(path.name + ".lock"))
        except OSError as error:
            raise self._failure(error, "open") from error
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            (check,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
            if check == "ok":
                self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            failure = self._failure(error, "open")
            self.close()
            raise failure from error
        if check != "ok":
            self.close()
            detail = " ".join(str(check).replace("*** in database main ***", "").split())
            raise self._damaged(f"database disk image is malformed: {detail}")

    def _damaged(self, reason: object) -> StoreError:
        """The error of a damaged store: never deleted or overwritten, so said what to do."""
        return StoreError(
            f"the result store {self.path} is damaged ({reason}); move it aside to start "
            "afresh, or restore it from a backup"
        )

    def _failure(self, error: OSError | sqlite3.Error | ValueError, doing: str) -> StoreError:
        """One line for what stopped a read or write of the store, and what to do."""
        code = _primary(error)
        if isinstance(error, ValueError) or code in DAMAGED:
            return self._damaged(error)
        if isinstance(error, OSError):
            if no_room(error):
                return StoreError(cannot_write(error.filename or self.path, error))
            return StoreError(f"cannot {doing} the result store {self.path}: {error.strerror}")
        if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
            why = "" if code == sqlite3.SQLITE_FULL else " (a full disk or a size limit?)"
            kept = self._answered()
            return StoreError(
                f"cannot {doing} the result store {self.path}: {error}{why}; free space and "
                "rerun the same command"
                + (f" — the {kept} answered calls in it are kept" if kept is not None else "")
            )
        return StoreError(f"cannot {doing} the result store {self.path}: {error}")

    def _answered(self) -> int | None:
        """How many answered calls the store holds (`None` when it cannot say)."""
        try:
            (count,) = self._db.execute("SELECT count(*) FROM calls WHERE error IS NULL").fetchone()
        except sqlite3.Error:
            return None
        return int(count)

    def get(self, key: str) -> CallRecord | None:
        """The successful record of a call, or `None` (failed calls are retried)."""
        try:
            row = self._db.execute(
                "SELECT key, model, kind, item, output, finish_reason, parsed, input_tokens, "
                "output_tokens, latency_s, error FROM calls WHERE key = ? AND error IS NULL",
                (key,),
            ).fetchone()
            return None if row is None else _record(row)
        except (sqlite3.Error, ValueError) as error:
            raise self._failure(error, "read") from error

    def put(self, record: CallRecord) -> None:
        """Record a finished call; a success replaces an earlier failure of the same call."""
        parsed = json.dumps(record.parsed) if record.parsed is not None else None
        try:
            self._db.execute(
                f"INSERT OR REPLACE INTO calls ({COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key,
                    record.model,
                    record.kind,
                    record.item,
                    record.output,
                    record.finish_reason,
                    parsed,
                    record.input_tokens,
                    record.output_tokens,
                    record.latency_s,
                    record.error,
                    time.time(),
                    json.dumps(record.trace) if record.trace else None,
                ),
            )
        except sqlite3.Error as error:
            raise self._failure(error, "write to") from error

    def merge(self, other: Path) -> None:
        """Take in the records of another store file of the same format.

        An answer replaces a recorded failure of the same call; a failure never replaces
        anything.
        """
        columns = COLUMNS
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns.split(", ")[1:])
        try:
            self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    f"INSERT INTO calls ({columns}) SELECT {columns} FROM other.calls "
                    f"WHERE error IS NULL ON CONFLICT(key) DO UPDATE SET {updates} "
                    "WHERE calls.error IS NOT NULL"
                )
                self._db.execute(
                    f"INSERT OR IGNORE INTO calls ({columns}) SELECT {columns} FROM other.calls "
                    "WHERE error IS NOT NULL"
                )
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")  # nothing of a merge that failed half-way
                self._db.execute("DETACH DATABASE other")
        except sqlite3.Error as error:
            if _primary(error) in DAMAGED and self._sound():
                raise StoreError(
                    f"cannot merge {other} into {self.path}: {other} is damaged ({error}); "
                    "rerun the same command"
                ) from error
            raise self._failure(error, f"merge {other} into") from error

    def _sound(self) -> bool:
        """Whether this store passes `PRAGMA quick_check`."""
        try:
            (check,) = self._db.execute("PRAGMA main.quick_check(1)").fetchone()
        except sqlite3.Error:
            return False
        return bool(check == "ok")

    def close(self) -> None:
        """Close the database and let other runs use it."""
        if hasattr(self, "_db"):
            self._db.close()
        if hasattr(self, "_lock"):
            self._lock.close()


def _primary(error: BaseException) -> int:
    """The primary SQLite result code of an error (0 for other errors)."""
    return int(getattr(error, "sqlite_errorcode", 0)) & 0xFF


def _record(row: tuple[Any, ...]) -> CallRecord:
    """A stored row as a record (its parsed value decoded from JSON)."""
    key, model, kind, item, output, finish_reason, parsed, tokens_in, tokens_out, latency, error = (
        row
    )
    return CallRecord(
        key,
        model,
        kind,
        item,
        output,
        finish_reason,
        json.loads(parsed) if parsed is not None else None,
        tokens_in,
        tokens_out,
        latency,
        error,
    )


def _exclusive_lock(path: Path) -> IO[bytes]:
    """Hold an advisory lock so that a second run on the same store stops at once."""
    handle = path.open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(
            f"the store {path.with_suffix('')} is busy: another mtmcs run is using it; wait for "
            "it to finish or choose another --out"
        ) from None
    return handle
