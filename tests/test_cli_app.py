"""The `mtmcs` command group: every command registered, listed without being imported, and
runnable through both entry points."""

from __future__ import annotations

import subprocess

import pytest

from command import MTMCS, invoke
from mtmcs.cli.app import COMMANDS


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listing_shows_the_first_line_of_each_commands_own_help(name: str) -> None:
    command = COMMANDS[name].load(name)
    assert (command.help or "").strip().splitlines()[0] == COMMANDS[name].summary


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_shows_its_help(name: str) -> None:
    result = invoke(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"mtmcs {name}" in result.stdout or f"{name} [OPTIONS]" in result.stdout


def test_run_help_groups_the_options() -> None:
    result = invoke("run", "--help", env={"COLUMNS": "200"})
    panels = ("Data", "Model", "Judge", "Decoding", "Defence", "Scale-out", "Local models")
    for panel in (*panels, "Output"):
        assert f"─ {panel} ─" in result.stdout, panel


def test_an_unknown_command_is_a_usage_error_naming_the_closest() -> None:
    result = invoke("rn")
    assert result.returncode == 2
    assert "No such command" in result.stderr and "'run'" in result.stderr


def test_python_dash_m_mtmcs_lists_every_command() -> None:
    done = subprocess.run(
        [*MTMCS, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in COMMANDS)
