"""Datasets that passed validation, remembered by their content, so a rerun skips the decoding.

A split's fingerprint is the content digest of every file its rows and images are read from,
with the version of the checks, of mtmcs and of Pillow and the load options. A file's digest
(BLAKE2b of its bytes) is computed once and reused while the file's size, modification and
change times, inode and device are those recorded when it was hashed, as git's index does: a
write to the file changes its change time, which no tool can set back. Only fingerprints of
data that passed every check are recorded. A hit skips decoding images only: text, paths,
file kinds and size caps are checked on every load.

Records live under `$MTMCS_VALIDATION_CACHE` (default: `validated/` in the mtmcs cache).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from mtmcs import __version__
from mtmcs.data.captions import cache_dir
from mtmcs.files import atomic_file, identity_of

VALIDATION_VERSION = 1
"""Bump when a check of `mtmcs.data.records` changes: every recorded validation is then void."""

_DIGESTS = "file-digests.json"
_CHUNK = 8 * 1024 * 1024


def validation_dir() -> Path:
    """Where validations and file digests are recorded."""
    override = os.environ.get("MTMCS_VALIDATION_CACHE")
    return Path(override) if override else cache_dir() / "validated"


class FileDigests:
    """Content digests of files, recomputed only for files changed since they were hashed."""

    def __init__(self, directory: Path | None = None) -> None:
        self._path = (directory or validation_dir()) / _DIGESTS
        try:
            loaded = json.loads(self._path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self._known: dict[str, list[object]] = loaded if isinstance(loaded, dict) else {}
        self._changed = False

    def known(self, path: Path) -> str | None:
        """The digest of `path` if it was hashed and has not changed since, else `None`."""
        name = str(path.resolve())
        known = self._known.get(name)
        if isinstance(known, list) and known[:-1] == identity_of(os.stat(name)):
            return known[-1] if isinstance(known[-1], str) else None
        return None

    def digest(self, path: Path) -> str:
        """The BLAKE2b digest of the regular file `path`'s bytes."""
        if (known := self.known(path)) is not None:
            return known
        name = str(path.resolve())
        stamp = identity_of(os.stat(name))
        hasher = hashlib.blake2b(digest_size=32)
        with open(name, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        if identity_of(os.stat(name)) != stamp:  # written while hashed: never reuse this digest
            return "changing:" + hasher.hexdigest()
        self._known[name] = [*stamp, hasher.hexdigest()]
        self._changed = True
        return hasher.hexdigest()

    def save(self) -> None:
        """Keep the digests for the next run (silently skipped where nothing can be written)."""
        if not self._changed:
            return
        try:
            with atomic_file(self._path) as handle:
                json.dump(self._known, handle)
        except Exception:  # a cache: losing it costs time, never correctness
            return
        self._changed = False


def fingerprint(
    files: Iterable[Path],
    digests: FileDigests,
    context: Mapping[str, object],
    *,
    known_only: bool = False,
) -> str | None:
    """The fingerprint of data read from `files` under `context` (split, options), or `None`
    when a file cannot be hashed or changed while it was; with `known_only`, `None` also
    when a file would have to be hashed (new or changed since it was)."""
    try:
        parts = [(digests.known if known_only else digests.digest)(path) for path in files]
    except OSError:
        return None
    if any(part is None or part.startswith("changing:") for part in parts):
        return None
    payload = {
        "checks": VALIDATION_VERSION,
        "mtmcs": __version__,
        "pillow": _pillow_version(),
        "context": dict(context),
        "files": parts,
    }
    encoded = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


def _pillow_version() -> str:
    import PIL

    return str(PIL.__version__)


def is_validated(key: str | None, directory: Path | None = None) -> bool:
    """Whether data of this fingerprint passed every check before."""
    if key is None:
        return False
    return ((directory or validation_dir()) / f"{key}.ok").is_file()


def record_validated(key: str | None, directory: Path | None = None) -> None:
    """Remember that data of this fingerprint passed every check (best effort)."""
    if key is None:
        return
    try:
        with atomic_file((directory or validation_dir()) / f"{key}.ok") as handle:
            handle.write(f"validated by mtmcs {__version__}, checks v{VALIDATION_VERSION}\n")
    except Exception:  # a cache: losing it costs time, never correctness
        return
