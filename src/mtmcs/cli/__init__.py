"""The `mtmcs` command: one module per command, each imported only when its command runs.

`app` is the typer application (for `typer.testing.CliRunner`), `main` the entry point.
"""

from mtmcs.cli.app import app, main

__all__ = ["app", "main"]
