"""Run the `mtmcs` command: in a subprocess, offline, as users run it (`mtmcs`), or in this
process through typer's `CliRunner` (`invoke`: the same app, exit codes and messages, a
fraction of the time; for tests of messages and exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from typer.testing import CliRunner

from mtmcs.cli import app

MTMCS = [sys.executable, "-m", "mtmcs"]


def mtmcs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`mtmcs ARGS…` with HF_HUB_OFFLINE=1 and `env` on top of this process's environment."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [*MTMCS, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Invoked:
    """What an in-process `mtmcs` printed and its exit code (named as a subprocess's)."""

    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Invoked:
    """`mtmcs ARGS…` in this process, with HF_HUB_OFFLINE=1 and `env` (a `None` value unsets
    a variable) for the duration of the call."""
    result = CliRunner().invoke(app, list(args), env={"HF_HUB_OFFLINE": "1", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Invoked(result.exit_code, result.stdout, result.stderr)
