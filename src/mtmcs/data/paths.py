"""Files a dataset names: inside its directory, regular, size-checked before they are read.

A path taken from the data is resolved (symlinks followed) and must stay inside the dataset
directory; the file must be a regular one (a FIFO, a device, a socket or a directory is never
opened: opening a FIFO blocks, reading a device never ends) no larger than a cap, and it is
read with that cap, so a file that grows after the check still costs at most cap + 1 bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_IMAGE_BYTES = 50 * 1024 * 1024
"""Largest image file read (50 MB): far above what a provider takes (OpenAI 20 MB, Anthropic
5 MB), far below what would strain memory with a few images decoded at once."""

MAX_CAPTIONS_BYTES = 64 * 1024 * 1024
"""Largest captions file read (64 MB; the official one is well under 1 MB)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def megabytes(size: int) -> str:
    """A byte count as a user reads it ('61.2 MB')."""
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size} bytes"


def file_problem(mode: int, size: int, cap: int | None) -> str | None:
    """Why a file of this `stat` mode and size may not be read (`cap`: no cap), or `None`."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a file")
        return f"is {kind}, not a regular file"
    if cap is not None and size > cap:
        return f"is {megabytes(size)}, over the {megabytes(cap)} cap"
    return None


def regular_file(path: Path, cap: int | None = None) -> str | None:
    """Why `path` (symlinks followed) is not a regular file of at most `cap` bytes, or `None`
    (a phrase to follow the path). Only `stat` is called: nothing is opened."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be examined ({error.strerror})"
    return file_problem(status.st_mode, status.st_size, cap)


def dataset_file(root: Path, value: object, cap: int) -> Path | str:
    """The regular file of at most `cap` bytes that `value`, a path relative to the dataset
    directory `root`, names (resolved), or why it is refused. Nothing is opened."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return "expected a relative path to an image file"
    candidate = Path(value)
    if candidate.is_absolute() or ".." in candidate.parts:
        return f"{value!r} must be a path inside the dataset directory (no absolute or '..')"
    try:
        resolved = (root / candidate).resolve(strict=True)
    except FileNotFoundError:
        return f"file not found: {root / candidate}"  # the message tests and users know
    except (OSError, RuntimeError) as error:  # a symlink loop, a path too long, …
        return f"{value!r} cannot be resolved ({error})"
    if not resolved.is_relative_to(root.resolve()):
        return f"{value!r} resolves to {resolved}, outside the dataset directory"
    if (reason := regular_file(resolved, cap)) is not None:
        return f"{value!r} {reason}"
    return resolved


def read_capped(path: Path, cap: int) -> bytes | str:
    """The bytes of the regular file `path`, or why they cannot be read (a phrase to follow
    the path): at most `cap` + 1 bytes are read, and the open neither blocks nor follows a
    final symlink (in case the file was swapped after it was checked)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    with open(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if (reason := file_problem(status.st_mode, status.st_size, cap)) is not None:
            return reason
        try:
            data = handle.read(cap + 1)
        except OSError as error:
            return f"cannot be read ({error.strerror})"
    if len(data) > cap:
        return f"grew over the {megabytes(cap)} cap while it was read"
    return data
