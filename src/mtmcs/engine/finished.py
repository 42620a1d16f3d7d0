"""A finished run recognised as up to date, so that running its command again does nothing.

When a run ends with every call answered, `finished.json` records what its files were
computed from: a digest of its inputs (the run's settings, the code of mtmcs, the versions
of Python and of the libraries that read the data and compute the figures, the text of its
defence) and the identity of every file involved: the data's files and the directories
listed to find them (`Benchmark.sources`), the captions, the store and the run's own files.
A file's identity is its size, modification and change times, inode and device
(`mtmcs.files.identity_of`): a write changes the change time, which no tool can set back.

The same command on the same directory (a copy of it is another run) is up to date while
the inputs digest is the same and no recorded file changed, appeared or disappeared; its
files then stand as they are and no call, store read or data load is made. Anything else (a
hub dataset on a branch, a changed file, a failed call, a data error) leaves no record, so
the run goes the usual way: every call looked up in the store, every answer parsed again.
Any run that does not take this shortcut deletes the record before it writes anything.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import mtmcs
from mtmcs.files import atomic_file, file_identity

if TYPE_CHECKING:
    from mtmcs.engine.run import RunConfig

FINISHED_FILE = "finished.json"
RECORD_VERSION = 1
LIBRARIES = ("datasets", "numpy", "pillow", "pyarrow", "pydantic")
"""The libraries whose version can change what a run reads or computes."""


def code_digest() -> str:
    """The digest of every file of the installed mtmcs package (caches aside)."""
    root = Path(mtmcs.__file__).parent
    hasher = hashlib.blake2b(digest_size=32)
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            hasher.update(str(path.relative_to(root)).encode() + b"\0")
            hasher.update(path.read_bytes())
    return hasher.hexdigest()


def inputs_digest(config: RunConfig, defence_sha256: str | None) -> str:
    """The digest of everything but files that defines a run's results."""
    settings = {key: value for key, value in asdict(config).items() if key != "out"}
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    payload = {
        "record": RECORD_VERSION,
        "config": settings,
        "defence_sha256": defence_sha256,
        "code": code_digest(),
        "mtmcs": mtmcs.__version__,
        "python": platform.python_version(),
        "libraries": versions,
    }
    encoded = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


def _watched(
    out: Path, sources: Iterable[Path], captions: Path | None, written: Iterable[Path]
) -> dict[str, list[int] | None]:
    store = out / "store.sqlite"
    paths = [*sources, *([captions] if captions is not None else []), store, *written]
    watched = {str(path.resolve()): file_identity(path) for path in paths}
    for suffix in ("-wal", "-journal"):  # present only while a store is open or was left so
        watched[str(store.resolve()) + suffix] = None
    return watched


def finished_path(out: Path) -> Path:
    """Where a run directory's record of its finished run is."""
    return out / FINISHED_FILE


def forget(out: Path) -> None:
    """Delete the record: the run directory is about to change."""
    try:
        finished_path(out).unlink()
    except (FileNotFoundError, NotADirectoryError):
        return


def record(
    config: RunConfig,
    defence_sha256: str | None,
    sources: Iterable[Path] | None,
    written: Iterable[Path],
) -> None:
    """Record a finished run whose calls were all answered (nothing when its data's files
    are not all known, `sources` `None`). Best effort: without it the rerun replays."""
    if sources is None:
        return
    content = {
        "record": RECORD_VERSION,
        "out": str(config.out.resolve()),  # a copy of the directory is not this run
        "inputs": inputs_digest(config, defence_sha256),
        "watched": _watched(config.out, sources, config.captions, written),
    }
    try:
        with atomic_file(finished_path(config.out)) as handle:
            json.dump(content, handle, indent=1)
    except Exception:  # a shortcut: losing it costs time, never correctness
        return


def is_up_to_date(config: RunConfig, defence_sha256: Callable[[], str | None]) -> bool:
    """Whether the run directory holds a finished run of these inputs whose files, the
    data's and its own, are all as they were when it finished (`defence_sha256`: the
    digest of the defence's text, asked for only when there is a record)."""
    try:
        content = json.loads(finished_path(config.out).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(content, Mapping) or content.get("record") != RECORD_VERSION:
        return False
    if content.get("out") != str(config.out.resolve()):
        return False
    watched = content.get("watched")
    if not isinstance(watched, Mapping) or not watched:
        return False
    for name, known in watched.items():
        if file_identity(Path(name)) != known:
            return False
    return bool(content.get("inputs") == inputs_digest(config, defence_sha256()))
