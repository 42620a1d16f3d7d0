"""`mtmcs sweep PLAN.toml`: every model of a plan under every defence, then one report.

Each run is `mtmcs run` itself, with the plan's options (`mtmcs.sweeps`), so it resumes
from its own store, checks its options and prints its table as the command does. Every
run's options are parsed before the first run starts: a mistake in the plan stops the
sweep before any call. A run that fails (an endpoint down, a missing key) does not stop the
others; the sweep lists it at the end and exits 1, or 3 when runs are only incomplete (some
calls failed): rerunning the same command retries what is missing and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from mtmcs.cli.console import console, errors
from mtmcs.errors import MtmcsError, UsageError
from mtmcs.sweeps import Plan, SweepRun, load_plan


def _command(name: str) -> TyperCommand:
    from mtmcs.cli.app import COMMANDS

    command: TyperCommand = COMMANDS[name].load(name)
    return command


def check_plan_arguments(plan: Plan) -> None:
    """Parse every run's arguments as `mtmcs run` would: a bad option is a `UsageError`
    naming the plan and the run, before anything runs."""
    run_command = _command("run")
    for run in plan.runs:
        try:
            run_command.make_context("mtmcs run", list(run.command_line))
        except typer.TyperException as error:  # typer's own click: a usage error
            format_message = getattr(error, "format_message", None)
            message = format_message() if format_message is not None else str(error)
            raise UsageError(f"{plan.path}: run {run.out.name}: {message}") from None


def _title(index: int, plan: Plan, run: SweepRun) -> str:
    defence = run.defence or "no defence"
    return f"[{index}/{len(plan.runs)}] {run.model}, {defence} → {run.out}"


def _run(run_command: TyperCommand, run: SweepRun, extra: list[str]) -> Any:
    """`mtmcs run` for one run of the plan: its exit code (0 or None when complete)."""
    return run_command.main(
        [*run.command_line, *extra], prog_name="mtmcs run", standalone_mode=False
    )


def sweep(
    plan_file: Annotated[
        Path, typer.Argument(metavar="PLAN", help="The sweep plan (TOML; see docs/sweeps.md).")
    ],
    dry_run: Annotated[
        bool,
        typer.Option(help="Print each run's planned calls and time estimate; call nothing."),
    ] = False,
) -> None:
    """Run every model of a plan under every defence (resumable), then one report."""
    plan = load_plan(plan_file)
    check_plan_arguments(plan)
    run_command = _command("run")
    failed: list[tuple[SweepRun, str]] = []
    incomplete: list[SweepRun] = []
    for index, run in enumerate(plan.runs, 1):
        console.rule(_title(index, plan, run))
        try:
            code = _run(run_command, run, ["--dry-run"] if dry_run else [])
        except MtmcsError as error:
            errors.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
            failed.append((run, str(error).splitlines()[0]))
            continue
        if code not in (None, 0):
            incomplete.append(run)
    if dry_run:
        return
    done = [run.out for run in plan.runs if (run.out / "summary.json").is_file()]
    if done:
        console.rule(f"report of {len(done)} runs → {plan.report_dir}")
        formats = [f"--format={value}" for value in plan.report_formats]
        _command("report").main(
            [*map(str, done), "--out", str(plan.report_dir), *formats],
            prog_name="mtmcs report",
            standalone_mode=False,
        )
    for run, cause in failed:
        errors.print(f"failed: {run.out.name}: {cause}", markup=False, soft_wrap=True)
    for run in incomplete:
        errors.print(f"incomplete: {run.out.name} (some calls failed)", soft_wrap=True)
    if failed or incomplete:
        errors.print("rerun the same command to resume: finished calls are not made again")
        raise typer.Exit(1 if failed else 3)
