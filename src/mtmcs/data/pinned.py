"""Files of public repositories read at pinned commits: downloaded once, checked against the
SHA-256 known in advance, and cached, so a rerun works offline (the authors' rubrics, the
defence texts)."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from mtmcs.errors import ConfigError
from mtmcs.files import atomic_file


def read_file(path: Path) -> bytes:
    """The bytes of `path`; a `ConfigError` naming it when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error


def check_sha256(data: bytes, expected: str, origin: str, pin: str, hint: str = "") -> None:
    """A `ConfigError` unless `data` (read from `origin`) has the SHA-256 `expected`; `pin`
    says which file that is ("the file at commit … of …"), `hint` what to do."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.lower():
        raise ConfigError(
            f"{origin}: checksum mismatch: got {digest}, expected {expected} ({pin}){hint}"
        )


def cached_or_downloaded(
    url: str, path: Path, expected: str, *, pin: str, what: str = "", instead: str
) -> bytes:
    """The file at `url`, from its cached copy at `path` if there is one, else downloaded and
    cached there; either must have the SHA-256 `expected`. A failed download says to save
    the file at `path` by hand, then `instead` (the other ways out); `what` names the file."""
    if path.is_file():
        data = read_file(path)
        check_sha256(data, expected, f"cached file {path}", pin, "; delete it to download it again")
        return data
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = bytes(response.read())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot download {what}{url} ({error}); download it yourself and save it as "
            f"{path}, {instead}"
        ) from error
    check_sha256(data, expected, url, pin)
    try:
        with atomic_file(path, binary=True) as handle:
            handle.write(data)
    except OSError as error:
        raise ConfigError(f"cannot cache {url} as {path}: {error}") from error
    return data
