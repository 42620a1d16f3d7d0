"""Sweep plans: one TOML file names the models, the defences and the settings they share;
`mtmcs sweep PLAN` runs every model under every defence, each run in its own directory, then
writes one report over them. A plan::

    out = "runs/paper-table3"          # the runs' parent directory (default runs/<plan name>)

    [run]                              # `mtmcs run` options shared by every run
    dataset = "official"
    judge = "openai/gpt-5-mini"

    [[models]]
    name = "openai-compatible/Qwen/Qwen3-VL-8B-Instruct"
    base_url = ["http://127.0.0.1:8000/v1"]
    api_key_env = "QWEN_KEY"           # the NAME of the variable holding the key, never a key

    defences = ["none", "dpp", { name = "adashield-a", adashield_selector = "judge" }]

Every key of `[run]`, of a model and of a defence table is an `mtmcs run` option, spelt with
`_` or `-` (`max_connections` is `--max-connections`): a list repeats the option, `true` /
`false` is `--flag` / `--no-flag`. So a plan takes every option the command takes, checked
the same way. `out`, `model` and `defense` are the sweep's to set. Relative paths are read
from the current directory, as on the command line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtmcs.errors import UsageError

UNDEFENDED = "none"
"""The name a plan gives the model without a defence."""

RESERVED = ("out", "model", "defense", "defence")
"""Options the sweep sets itself, per run."""

PLAN_KEYS = ("out", "run", "models", "defences", "report_formats")
Value = str | int | float | bool


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One run of a sweep: its model, defence (`None`: undefended), its `mtmcs run`
    arguments (without `--out`) and its directory."""

    model: str
    defence: str | None
    arguments: tuple[str, ...]
    out: Path

    @property
    def command_line(self) -> tuple[str, ...]:
        """The full `mtmcs run` arguments of this run."""
        return (*self.arguments, "--out", str(self.out))


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked plan: its file, where the runs go, the runs in order, the report formats."""

    path: Path
    out: Path
    runs: tuple[SweepRun, ...]
    report_formats: tuple[str, ...] = ()

    @property
    def report_dir(self) -> Path:
        """Where the sweep's report goes."""
        return self.out / "report"


def _problem(path: Path, where: str, message: str) -> UsageError:
    return UsageError(f"{path}: {where}: {message}")


def option_arguments(options: Mapping[str, Any], path: Path, where: str) -> list[str]:
    """`mtmcs run` arguments for a table of options (see the module docstring)."""
    arguments: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if key.replace("-", "_") in RESERVED:
            raise _problem(path, where, f"{key!r} is set by the sweep for each run; remove it")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool):
                arguments.append(flag if item else "--no-" + flag[2:])
            elif isinstance(item, str | int | float):
                arguments += [flag, str(item)]
            else:
                raise _problem(
                    path, where, f"{key!r} must be text, a number, true/false or a list of these"
                )
    return arguments


def _defences(raw: object, path: Path) -> Iterator[tuple[str | None, list[str]]]:
    """Each defence of the plan: its name (`None` undefended) and its own arguments."""
    if not isinstance(raw, list) or not raw:
        raise _problem(path, "defences", "must be a non-empty list of names or tables")
    for index, entry in enumerate(raw):
        where = f"defences[{index}]"
        options: dict[str, Any] = {}
        if isinstance(entry, dict):
            options = dict(entry)
            entry = options.pop("name", None)
        if not isinstance(entry, str) or not entry:
            raise _problem(path, where, "needs a name ('none' for the undefended model)")
        arguments = option_arguments(options, path, where)
        if entry == UNDEFENDED:
            if arguments:
                raise _problem(path, where, "'none' takes no options")
            yield None, []
        else:
            yield entry, ["--defense", entry, *arguments]


def run_dir_name(model: str, defence: str | None) -> str:
    """A run's directory name: the model with `/` as `__`, then `+<defence>` if defended."""
    return model.replace("/", "__") + (f"+{defence}" if defence else "")


def parse_plan(text: str, path: Path) -> Plan:
    """The plan in `text` (TOML) read from `path`, checked: every problem is a `UsageError`
    naming the file and the entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _problem(path, "TOML", str(error)) from None
    unknown = sorted(set(data) - set(PLAN_KEYS))
    if unknown:
        raise _problem(path, "top level", f"unknown keys {unknown}; a plan has {PLAN_KEYS}")
    shared = data.get("run", {})
    if not isinstance(shared, dict):
        raise _problem(path, "run", "must be a table of `mtmcs run` options")
    shared_arguments = option_arguments(shared, path, "run")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise _problem(path, "models", "needs at least one [[models]] table with a name")
    out = Path(str(data.get("out") or Path("runs") / path.stem))
    defences = list(_defences(data.get("defences", [UNDEFENDED]), path))
    runs: list[SweepRun] = []
    for index, entry in enumerate(models):
        where = f"models[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _problem(path, where, "needs a name (provider/model)")
        options = dict(entry)
        name = options.pop("name")
        model_arguments = option_arguments(options, path, where)
        for defence, defence_arguments in defences:
            runs.append(
                SweepRun(
                    model=name,
                    defence=defence,
                    arguments=(
                        "--model",
                        name,
                        *shared_arguments,
                        *model_arguments,
                        *defence_arguments,
                    ),
                    out=out / run_dir_name(name, defence),
                )
            )
    seen = [run.out for run in runs]
    if len(set(seen)) != len(seen):
        raise _problem(path, "models", "a model is listed twice")
    formats = data.get("report_formats", [])
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise _problem(path, "report_formats", "must be a list of formats, e.g. ['md', 'html']")
    return Plan(path, out, tuple(runs), tuple(formats))


def load_plan(path: Path) -> Plan:
    """The checked plan in the TOML file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the sweep plan {path}: {error}") from None
    return parse_plan(text, path)
