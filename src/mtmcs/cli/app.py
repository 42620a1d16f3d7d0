"""The `mtmcs` command group: every command registered by name and summary, its module
imported only when it runs, so `mtmcs --help` imports no numpy, Pillow, pyarrow or torch.

Errors end here: ours (`MtmcsError`, also raised by concurrent tasks in a group, and a
full or read-only file system) as one clear line and an exit code (2 for invalid
data or a usage mistake, 1 otherwise), usage errors as typer shows them (2), anything else
as a traceback (1); `--debug` shows tracebacks of ours too. Every traceback goes through
the redaction of API keys.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from mtmcs.cli.console import errors, interrupted_line
from mtmcs.errors import DataError, MtmcsError, OutputError, UsageError


@dataclass(frozen=True)
class Entry:
    """A command: the module under `mtmcs.cli` that defines it, the name of its function
    (or `typer.Typer` of subcommands) there, and the line `mtmcs --help` shows for it."""

    module: str
    attribute: str
    summary: str

    def load(self, name: str) -> Any:
        """The command as typer builds it (this imports its module)."""
        target = getattr(importlib.import_module(f"mtmcs.cli.{self.module}"), self.attribute)
        if not isinstance(target, typer.Typer):
            single = typer.Typer(add_completion=False)
            single.command(name)(target)
            target = single
        return typer.main.get_command(target)


COMMANDS: dict[str, Entry] = {
    "run": Entry("run", "run", "Run (or resume) the benchmark on one model and print its metrics."),
    "data": Entry("data", "app", "Inspect and validate a dataset."),
    "report": Entry(
        "report",
        "report",
        "Leaderboard (Markdown, CSV, LaTeX), breakdowns, plots, a per-dialogue export and HTML.",
    ),
    "guard": Entry(
        "guard",
        "guard",
        "Run a guard model over each dialogue's user side after R1, R2, R3; score it.",
    ),
    "build": Entry(
        "build",
        "build",
        "Build a dataset in the official schema from a folder of images (resumable).",
    ),
    "judge-check": Entry(
        "judge_check",
        "judge_check",
        "Judge fixed low-scoring dialogues clean and with injected text; report score moves.",
    ),
    "rejudge": Entry(
        "rejudge",
        "rejudge_run",
        "Judge a finished run again with another judge, into a new run directory.",
    ),
    "agreement": Entry(
        "agreement",
        "agreement",
        "Agreement of judges (and human raters) on the same dialogues: kappa, alpha, rho.",
    ),
    "label": Entry(
        "label",
        "label",
        "Write a self-contained page for labelling a run's dialogues by hand (CSV export).",
    ),
    "compare": Entry(
        "compare",
        "compare",
        "Paired difference of two runs on the same items: B − A, clustered 95% interval, p.",
    ),
    "power": Entry(
        "power",
        "power",
        "Rows (or variants, or samples) needed to detect a difference, from measured runs.",
    ),
    "stances": Entry(
        "stances",
        "stances",
        "Classify each assistant turn as refuse, hedge or comply (ours, not the paper's).",
    ),
    "categorize": Entry(
        "categorize",
        "categorize",
        "Assign each distinct unsafe intent one of our ten harm categories.",
    ),
    "sweep": Entry(
        "sweep",
        "sweep",
        "Run every model of a plan under every defence (resumable), then one report.",
    ),
    "export": Entry(
        "export", "export", "Write a finished run as an inspect_ai log, for `inspect view`."
    ),
    "list": Entry("catalog", "app", "List what can be named: models, defences, guards, datasets."),
    "serve": Entry(
        "serve",
        "serve",
        "Start `vllm serve` on 127.0.0.1 with the model card's settings; Ctrl-C stops it.",
    ),
}


class _StandIn(TyperCommand):
    """A registered command not imported yet: its name and summary, for the help listing."""


class Commands(TyperGroup):
    """The root group: lists the registered commands from their summaries and imports a
    command's module only when the command is looked up to run (or to show its help)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, entry in COMMANDS.items():
            self.commands.setdefault(name, _StandIn(name, help=entry.summary))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _StandIn) and not self._listing:
            command = self.commands[cmd_name] = COMMANDS[cmd_name].load(cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True  # list the summaries; import no command
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            errors.print(interrupted_line(interrupt), highlight=False)
            raise typer.Exit(130) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command and exit with its code, our errors as one line (see the module)."""
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            sys.exit(code if isinstance(code, int) else 0)
        except typer.Exit as exit_:
            sys.exit(exit_.exit_code)
        except typer.Abort as abort:
            errors.print(interrupted_line(abort), highlight=False)
            sys.exit(130)
        except typer.TyperException as error:  # usage errors: typer's own click exceptions
            show = getattr(error, "show", None)
            if show is None:
                _print_traceback()
                sys.exit(1)
            show()
            sys.exit(getattr(error, "exit_code", 2))
        except Exception as error:
            ours = _ours(error)
            if ours is None or state["debug"]:
                _print_traceback()
            else:
                from mtmcs.keys import redact  # not for `--help`
                from mtmcs.protocol.text import printable

                errors.print("[red]error:[/]", end=" ")
                errors.print(
                    printable(redact(str(ours))), markup=False, highlight=False, soft_wrap=True
                )
            sys.exit(2 if isinstance(ours, DataError | UsageError) else 1)


app = typer.Typer(
    cls=Commands,
    help="MTMCS-Bench: multi-turn multimodal contextual safety.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
state = {"debug": False}


def _show_version(value: bool) -> None:
    if value:
        from mtmcs import __version__

        typer.echo(f"mtmcs-bench {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    state["debug"] = debug


def _ours(error: BaseException) -> MtmcsError | None:
    """The error to report as one line, or `None` for a traceback: ours; a file system that
    cannot take more (full, quota, file-size limit, read-only) wherever it was written to;
    the first of a group of concurrent tasks' errors when each of them is one of these."""
    from mtmcs.files import cannot_write, no_room  # not for `--help`

    if isinstance(error, MtmcsError):
        return error
    if isinstance(error, OSError) and no_room(error):
        return OutputError(cannot_write(error.filename or "a temporary or output file", error))
    if isinstance(error, BaseExceptionGroup):
        found = [_ours(inner) for inner in error.exceptions]
        return found[0] if all(found) else None
    return None


def _print_traceback() -> None:
    from mtmcs.keys import redact

    sys.stderr.write(redact(traceback.format_exc()))


def main() -> None:
    """Entry point of the `mtmcs` command (and of `python -m mtmcs`)."""
    app()
