"""Where the commands print: results to stdout (wide when piped), progress and errors to stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console() if sys.stdout.isatty() else Console(width=120)
errors = Console(stderr=True)


def call_progress() -> Progress:
    """Progress bars of calls made (description, bar, done/total, elapsed) on stderr."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=not errors.is_terminal,
    )
