"""A newcomer's first hour: Ctrl-C says what happened and loses nothing; a mistake in
`--out` is one line, exit 2, before any work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from command import MTMCS, invoke, mtmcs
from fakeserver import FakeServer


def _run_args(server: FakeServer, out: Path) -> list[str]:
    return [
        "run",
        "--dataset",
        "sample",
        "--split",
        "type_a",
        "--limit",
        "2",
        "--model",
        "openai-compatible/m",
        "--judge",
        "baseline/keyword",
        "--base-url",
        server.base_url,
        "--max-connections",
        "4",
        "--out",
        str(out),
    ]


def test_ctrl_c_prints_one_line_with_the_calls_kept_exits_130_and_a_rerun_resumes(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server("A", latency=0.05)
    args = _run_args(server, tmp_path)
    process = subprocess.Popen(
        [*MTMCS, *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while server.request_count < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    sent = server.request_count
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    match = re.fullmatch(
        r"interrupted after (\d+) calls, all kept in the store; rerun the same command to "
        r"resume\n",
        stderr,
    )
    assert match is not None, stderr
    finished = int(match.group(1))
    assert sent - 4 <= finished < 48 + 16  # at most 4 model calls were in flight

    resumed = mtmcs(*args)
    assert resumed.returncode == 0, resumed.stderr
    stored = re.search(r"model (\d+) made, (\d+) from the store", " ".join(resumed.stdout.split()))
    assert stored is not None
    assert int(stored.group(2)) >= finished  # every finished call came from the store
    assert int(stored.group(1)) + int(stored.group(2)) == 48  # 2 rows: 48 model calls


def test_an_out_under_a_file_is_one_line_and_exit_2_before_any_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server("A")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = invoke(*_run_args(server, blocker / "run"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --out {blocker / 'run'}: cannot write there")
    assert len(result.stderr.strip().splitlines()) == 1
    assert server.request_count == 0


def test_one_name_per_concept_across_commands() -> None:
    """Calls in flight are `--max-connections` for the model a command runs, and
    `--judge-max-connections` / `--guard-max-connections` / `--reward-max-connections` for a
    judge / guard / Immune's reward model; a key is named by `--api-key-env` /
    `--judge-api-key-env` / …; no other spelling exists."""
    from mtmcs.cli.app import COMMANDS

    allowed = {
        "--max-connections",
        "--judge-max-connections",
        "--guard-max-connections",
        "--api-key-env",
        "--judge-api-key-env",
        "--guard-api-key-env",
        "--reward-max-connections",
        "--reward-api-key-env",
    }
    seen: dict[str, set[str]] = {}
    for name in ("run", "stances", "judge-check", "guard", "categorize", "build", "rejudge"):
        command = COMMANDS[name].load(name)
        for parameter in command.params:
            for flag in parameter.opts:
                if any(word in flag for word in ("connection", "concurrency", "key")):
                    seen.setdefault(flag, set()).add(name)
    assert set(seen) <= allowed, seen
    assert seen["--judge-max-connections"] >= {"run", "stances", "judge-check", "rejudge"}
    assert "guard" in seen["--guard-max-connections"]


def test_run_files_get_the_permissions_of_any_other_file(tmp_path: Path) -> None:
    result = invoke(
        *("run", "--dataset", "sample", "--limit", "1", "--split", "type_a"),
        *("--model", "baseline/random", "--judge", "baseline/keyword", "--out", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    plain = tmp_path / "plain"
    plain.write_text("x")
    expected = plain.stat().st_mode & 0o777
    assert expected & 0o044  # group and others may read (umask 022)
    for name in ("summary.json", "dialogues.jsonl"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
