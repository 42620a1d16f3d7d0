"""`mtmcs export RUN_DIR --format inspect --out FILE.eval`: a finished run as an inspect log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from mtmcs.cli.console import console
from mtmcs.errors import ConfigError, UsageError
from mtmcs.extras import install_hint

ExportFormat = Literal["inspect"]
SUFFIXES = (".eval", ".json")


def export(
    run_dir: Annotated[
        Path, typer.Argument(help="A finished run directory (summary.json, dialogues.jsonl).")
    ],
    out: Annotated[
        Path, typer.Option(help="The log to write: FILE.eval (inspect's format) or FILE.json.")
    ],
    format: Annotated[
        ExportFormat, typer.Option(help="inspect: an inspect_ai log, for `inspect view`.")
    ] = "inspect",
) -> None:
    """Write a finished run as an inspect_ai log, for `inspect view`.

    One scored sample per dialogue (messages, question answers, judge verdict) and the run's
    figures as the log's metrics.
    """
    if out.suffix not in SUFFIXES:
        raise UsageError(f"--out {out}: an inspect log ends in .eval or .json")
    try:
        from mtmcs.interop.inspect_export import export_run
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "inspect_ai":
            raise
        raise ConfigError(f"--format inspect needs inspect_ai: {install_hint('inspect')}") from None
    log = export_run(run_dir, out)
    console.print(
        f"wrote {out}: {len(log.samples or [])} dialogues of {log.eval.model}; browse it with "
        f"`inspect view start --host 127.0.0.1 --log-dir {out.parent}`",
        soft_wrap=True,
        highlight=False,
    )
