"""Where the commands print: results to stdout (wide when piped), progress and errors to stderr."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console() if sys.stdout.isatty() else Console(width=120)
errors = Console(stderr=True)
