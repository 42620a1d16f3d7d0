"""A full disk, a damaged store and a run killed between its final writes: one line each,
naming the file and what to do, never a traceback; nothing already computed is lost, and
`report` never reads a summary with the dialogues of another run."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from command import Invoked, invoke
from mtmcs.engine.store import CallRecord, Store
from mtmcs.errors import ConfigError, OutputError, StoreError
from mtmcs.files import write_json
from mtmcs.scoring.rundir import RunDir

RUN = ("run", "--dataset", "sample", "--model", "baseline/random", "--judge", "baseline/keyword")
GARBAGE = bytes(range(256)) * 16  # one 4 KiB page of it


def mtmcs_with(hook: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`mtmcs ARGS…` in a subprocess after `hook` (Python run first: it patches what the
    fault needs, e.g. a file-size limit set once the store is open)."""
    program = (
        "import os, resource, signal, sys\n"
        f"{hook}\n"
        "from mtmcs.cli.app import main\n"
        "sys.argv = ['mtmcs', *sys.argv[1:]]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=180,
        check=False,
    )


def file_size_limit_from(module: str, name: str, limit: int) -> str:
    """A hook: from when `module` calls `name` (a class or function it imports), files may
    grow to `limit` bytes only; a write beyond it fails with EFBIG, as on a full disk."""
    return (
        f"import {module} as patched\n"
        f"original = patched.{name}\n"
        "def limited(*args, **kwargs):\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))\n"
        "    return original(*args, **kwargs)\n"
        f"patched.{name} = limited\n"
    )


def one_error_line(result: subprocess.CompletedProcess[str] | Invoked) -> str:
    """The single line a failed command printed (asserting there is one, no traceback)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def calls_line(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("calls:")]
    return line


# --- a full disk ----------------------------------------------------------------------------


def test_a_full_disk_while_calls_are_stored_is_one_line_and_the_rerun_resumes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    hook = file_size_limit_from("mtmcs.engine.run", "Store", 512 * 1024)
    full = mtmcs_with(hook, *RUN, "--out", str(out))
    line = one_error_line(full)
    assert f"cannot write to the result store {out / 'store.sqlite'}: disk I/O error" in line
    assert "free space and rerun the same command — the " in line
    kept = int(line.split(" — the ")[1].split()[0])
    assert kept > 0
    assert not (out / "summary.json").exists()

    rerun = invoke(*RUN, "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    stored = sum(map(int, re.findall(r"(\d+) from the store", calls_line(rerun.stdout))))
    assert stored == kept  # every answered call of the first run came from the store


def test_a_full_disk_at_the_final_writes_is_one_line_and_loses_no_call(tmp_path: Path) -> None:
    out = tmp_path / "run"
    hook = file_size_limit_from("mtmcs.engine.run", "RunDir", 64 * 1024)  # the final writes
    full = mtmcs_with(hook, *RUN, "--out", str(out))
    line = one_error_line(full)
    assert line == (
        "error: file too large for the file-size limit (ulimit -f) writing "
        f"{out / 'dialogues.jsonl'}; raise the limit and rerun the same command — the 672 "
        f"answered calls are kept in {out / 'store.sqlite'}: the rerun makes none of them again"
    )
    assert sorted(p.name for p in out.iterdir()) == ["store.sqlite", "store.sqlite.lock"]

    rerun = invoke(*RUN, "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert calls_line(rerun.stdout).startswith(
        "calls: model 0 made, 576 from the store, 0 failed; judge 0 made, 96 from the store"
    )
    RunDir(out).read_summary()


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (errno.ENOSPC, "no space left on device writing {}; free space and rerun"),
        (errno.EDQUOT, "disk quota exceeded writing {}; free space or raise the quota and"),
        (errno.EROFS, "read-only file system writing {}; make it writable and rerun"),
    ],
)
def test_an_output_file_the_file_system_cannot_take_is_an_output_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, said: str
) -> None:
    path = tmp_path / "summary.json"
    path.write_text("the earlier one\n")

    def refused(source: str, target: str) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OutputError) as raised:
        write_json(path, {"a": 1})
    assert said.format(path) in str(raised.value)
    assert path.read_text() == "the earlier one\n"  # left as it was
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left


def test_a_store_at_its_size_limit_says_database_or_disk_is_full_and_keeps_its_calls(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "store.sqlite")
    record = CallRecord("k0", "m", "turn", "d", "reply", "stop", None, 1, 1, 0.1, None)
    store.put(record)
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()  # the real SQLITE_FULL
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError) as raised:
        for number in range(1, 200):
            store.put(
                CallRecord(f"k{number}", "m", "turn", "d", "x" * 500, "stop", None, 1, 1, 0, None)
            )
    message = str(raised.value)
    assert message.startswith(
        f"cannot write to the result store {tmp_path / 'store.sqlite'}: database or disk is full;"
        " free space and rerun the same command — the "
    )
    store.close()
    again = Store(tmp_path / "store.sqlite")
    assert again.get("k0") == record
    again.close()


# --- a damaged store ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of two rows (112 calls in its store)."""
    out = tmp_path_factory.mktemp("small") / "run"
    result = invoke(*RUN, "--limit", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def overwrite_middle(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(GARBAGE)


def truncate_half(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def not_a_database(path: Path) -> None:
    path.write_text("these are my notes, not a store\n" * 200)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (overwrite_middle, "database disk image is malformed"),
        (truncate_half, "database disk image is malformed"),
        (not_a_database, "file is not a database"),
    ],
)
def test_a_damaged_store_is_one_line_and_is_left_as_it_is(
    small_run: Path, tmp_path: Path, damage: Callable[[Path], None], reason: str
) -> None:
    out = tmp_path / "run"
    shutil.copytree(small_run, out)
    store = out / "store.sqlite"
    damage(store)
    damaged = store.read_bytes()

    result = invoke(*RUN, "--limit", "2", "--out", str(out))
    line = one_error_line(result)
    assert line.startswith(f"error: the result store {store} is damaged ({reason}")
    assert line.endswith("; move it aside to start afresh, or restore it from a backup")
    assert store.read_bytes() == damaged  # never deleted nor overwritten

    store.rename(out / "store.sqlite.damaged")  # what the line says to do: then it runs
    assert invoke(*RUN, "--limit", "2", "--out", str(out)).returncode == 0


def test_a_stored_row_with_a_mangled_value_is_a_damaged_store_on_reading(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = Store(path)
    store.put(CallRecord("k", "m", "mcq", "d", "A", "stop", "A", 1, 1, 0.1, None))
    store.close()
    with sqlite3.connect(path) as db:  # the page is sound, the value in it is not
        db.execute("UPDATE calls SET parsed = '{\"unfinished' WHERE key = 'k'")
    db.close()
    store = Store(path)
    with pytest.raises(StoreError, match=f"the result store {path} is damaged \\(Unterminated"):
        store.get("k")
    store.close()


def test_merging_a_damaged_store_names_it_and_takes_in_nothing(
    small_run: Path, tmp_path: Path
) -> None:
    shard = tmp_path / "shard.sqlite"
    shutil.copy(small_run / "store.sqlite", shard)
    overwrite_middle(shard)
    store = Store(tmp_path / "store.sqlite")
    with pytest.raises(StoreError) as raised:
        store.merge(shard)
    assert str(raised.value) == (
        f"cannot merge {shard} into {tmp_path / 'store.sqlite'}: {shard} is damaged (database "
        "disk image is malformed); rerun the same command"
    )
    store.merge(small_run / "store.sqlite")  # the store itself is sound and takes a good one
    store.close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT count(*) FROM calls").fetchone() == (112,)
    db.close()


# --- the final writes of a run --------------------------------------------------------------

KILLED_BEFORE_SUMMARY = (
    "from mtmcs.scoring.rundir import RunDir\n"
    "RunDir.write_summary = lambda self, summary: os.kill(os.getpid(), signal.SIGKILL)\n"
)


def test_a_run_killed_between_its_final_writes_is_refused_by_report_until_rerun(
    small_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(small_run, out)  # a finished run of two rows
    killed = mtmcs_with(KILLED_BEFORE_SUMMARY, *RUN, "--limit", "3", "--out", str(out))
    assert killed.returncode == -signal.SIGKILL
    # the dialogues of three rows beside the summary of two
    assert (out / "dialogues.jsonl").read_bytes() != (small_run / "dialogues.jsonl").read_bytes()
    assert (out / "summary.json").read_bytes() == (small_run / "summary.json").read_bytes()

    report = invoke("report", str(out), "--out", str(tmp_path / "report"), "--format", "md")
    assert one_error_line(report) == (
        f"error: {out / 'summary.json'} and {out / 'dialogues.jsonl'} are not from the same run "
        "(a run stopped between writing them, or one was replaced or edited since); rerun "
        f"`mtmcs run` with the same arguments and --out {out}: it resumes from the store, no "
        "call made is made again"
    )

    rerun = invoke(*RUN, "--limit", "3", "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert " 0 made, 144 from the store" in calls_line(rerun.stdout)  # the killed run's calls
    report = invoke("report", str(out), "--out", str(tmp_path / "report"), "--format", "md")
    assert report.returncode == 0, report.stderr
    assert RunDir(out).read_summary().metadata.limit == 3


def test_the_summary_vouches_for_the_dialogues_written_with_it(small_run: Path) -> None:
    run = RunDir(small_run)
    summary = run.read_summary()
    assert summary.dialogues_sha256 is not None
    lines = run.dialogues_path.read_bytes().splitlines(keepends=True)
    try:
        run.dialogues_path.write_bytes(b"".join(lines[:-1]))  # one record lost
        with pytest.raises(ConfigError, match="are not from the same run"):
            run.read_summary()
        run.dialogues_path.unlink()  # a summary copied alone is read
        assert run.read_summary() == summary
    finally:
        run.dialogues_path.write_bytes(b"".join(lines))
    assert run.read_summary() == summary


def test_a_summary_written_before_the_stamp_is_read_unchecked(
    small_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(small_run, out)
    run = RunDir(out)
    unstamped = run.read_summary().model_copy(update={"dialogues_sha256": None})
    run.write_summary(unstamped)
    assert "dialogues_sha256" not in run.summary_path.read_text()
    run.dialogues_path.write_text("")  # any dialogues: nothing to check them against
    assert run.read_summary() == unstamped
