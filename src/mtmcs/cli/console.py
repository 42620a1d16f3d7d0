"""Where the commands print: results to stdout (wide when piped), progress and errors to stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console() if sys.stdout.isatty() else Console(width=120)
errors = Console(stderr=True)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a command was calling models, after `calls` finished calls (each one
    already kept in the command's store)."""

    def __init__(self, calls: int) -> None:
        super().__init__(calls)
        self.calls = calls


def interrupted_line(interrupt: BaseException | None) -> str:
    """What the command says when Ctrl-C stops it (`interrupt`: what was raised, if known)."""
    while interrupt is not None and not isinstance(interrupt, Interrupted):
        interrupt = interrupt.__cause__ or interrupt.__context__
    done = "" if interrupt is None else f" after {interrupt.calls} calls, all kept in the store"
    return f"interrupted{done}; rerun the same command to resume"


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
