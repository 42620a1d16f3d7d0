"""Where `datasets` put its Arrow conversion of parquet files, remembered, so that a later load
of the same files reads that conversion directly and never imports `datasets` (0.8 s and
about 100 MB here, pandas included).

A conversion is remembered under the identity (`mtmcs.files.identity_of`) of every parquet
file it was made from, the split and the version of `datasets`; it is used only while each
of its Arrow files has the identity it had when `datasets` returned it. Any change, and any
record that cannot be read, means the load goes through `datasets` as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from mtmcs.data.validated import validation_dir
from mtmcs.files import atomic_file, file_identity

_CONVERSIONS = "arrow-conversions.json"


def _identities(paths: Sequence[Path]) -> list[list[object]] | None:
    """Each file's resolved name and identity; `None` when one of them is missing."""
    identities: list[list[object]] = []
    for path in paths:
        if (identity := file_identity(path)) is None:
            return None
        identities.append([str(path.resolve()), identity])
    return identities


def _key(parquet: Sequence[Path], split: str) -> str | None:
    identities = _identities(parquet)
    if identities is None:
        return None
    try:
        version = metadata.version("datasets")
    except metadata.PackageNotFoundError:
        return None
    payload = {"datasets": version, "split": split, "parquet": identities}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _load(path: Path) -> dict[str, object]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def known_conversion(parquet: Sequence[Path], split: str) -> list[Path] | None:
    """The Arrow files `datasets` made of these parquet files, if it did and none of them
    (parquet or Arrow) changed since; else `None`."""
    key = _key(parquet, split)
    known = _load(validation_dir() / _CONVERSIONS).get(key or "")
    if not isinstance(known, list) or not known:
        return None
    files = []
    for entry in known:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            return None
        name, identity = entry
        if file_identity(name) != identity:
            return None
        files.append(Path(name))
    return files


def remember_conversion(parquet: Sequence[Path], split: str, arrow: Sequence[Path]) -> None:
    """Remember the Arrow files `datasets` made of these parquet files (best effort)."""
    key = _key(parquet, split)
    identities = _identities(arrow)
    if key is None or not identities:
        return
    path = validation_dir() / _CONVERSIONS
    known = {  # conversions whose files are gone are forgotten
        other: files
        for other, files in _load(path).items()
        if isinstance(files, list) and files and file_identity(str(files[0][0])) is not None
    }
    known[key] = identities
    try:
        with atomic_file(path) as handle:
            json.dump(known, handle)
    except Exception:  # a cache: losing it costs time, never correctness
        return
