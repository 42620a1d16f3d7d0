"""A finished run is up to date: the same command again makes no call, reads no store and
writes nothing, while its settings, the code, the data's files and its own are unchanged;
any change of these is a replay from the store, and only a complete run is recorded."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

import mtmcs.engine.finished
import mtmcs.engine.run
from command import invoke
from datagen import (
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    make_dataset,
    write_jsonl_dir,
    write_parquet_dir,
)
from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.engine.finished import FINISHED_FILE
from mtmcs.engine.run import RunConfig, RunResult, run_benchmark
from test_fast_start import captioned, reply, run_config


def config(directory: Path, out: Path, server: FakeServer, **changes: object) -> RunConfig:
    return replace(run_config(directory, out, server), **changes)  # type: ignore[arg-type]


def identities(out: Path) -> dict[str, tuple[int, int]]:
    return {
        path.name: (path.stat().st_mtime_ns, path.stat().st_ino)
        for path in sorted(out.iterdir())
        if path.is_file()
    }


@pytest.fixture
def finished(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> tuple[Path, FakeServer, RunResult]:
    directory = captioned(write_parquet_dir(tmp_path / "dataset", make_dataset(2)), 2)
    server = fake_server(reply)
    first = run_benchmark(config(directory, tmp_path / "run", server))
    assert first.complete and not first.up_to_date
    assert len(server.requests) == 2 * 28
    assert (tmp_path / "run" / FINISHED_FILE).is_file()
    return directory, server, first


def test_the_same_command_again_calls_reads_and_writes_nothing(
    finished: tuple[Path, FakeServer, RunResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, server, first = finished
    out = tmp_path / "run"
    before = identities(out)

    def untouched(*args: object, **kwargs: object) -> None:
        raise AssertionError("opened the store or loaded the data")

    monkeypatch.setattr(mtmcs.engine.run, "Store", untouched)
    monkeypatch.setattr(mtmcs.engine.run, "load_benchmark", untouched)
    again = run_benchmark(config(directory, out, server))
    assert again.up_to_date and again.complete
    assert len(server.requests) == 2 * 28
    assert again.summary == first.summary  # the finished run's, as it was written
    assert again.planned == first.planned
    assert identities(out) == before


@pytest.mark.parametrize(
    "change",
    [
        "data file rewritten",
        "new file beside the data",
        "captions",
        "summary edited",
        "dialogues deleted",
        "code",
        "setting",
    ],
)
def test_any_change_replays_from_the_store(
    finished: tuple[Path, FakeServer, RunResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    directory, server, _ = finished
    out = tmp_path / "run"
    changes: dict[str, object] = {}
    if change == "data file rewritten":
        write_parquet_dir(directory, make_dataset(2))  # the same rows, a new file
    elif change == "new file beside the data":
        (directory / "data" / "README.md").write_text("notes")
    elif change == "captions":
        captions = json.loads((directory / "captions.json").read_text())
        (directory / "captions.json").write_text(json.dumps({**captions, "0": "Another."}))
    elif change == "summary edited":
        summary = json.loads((out / "summary.json").read_text())
        summary["metadata"]["wall_s"] = 0.5
        (out / "summary.json").write_text(json.dumps(summary))
    elif change == "dialogues deleted":
        (out / "dialogues.jsonl").unlink()
    elif change == "code":
        monkeypatch.setattr(mtmcs.engine.finished, "code_digest", lambda: "another version")
    elif change == "setting":
        changes["timeout"] = 60.0
    again = run_benchmark(config(directory, out, server, **changes))
    assert not again.up_to_date and again.complete
    calls = again.summary["metadata"]["calls"]
    assert calls["model"]["made"] == 0
    judged = calls["judge"]["made"]  # a new caption: row 0's multimodal dialogues judged again
    assert judged > 0 if change == "captions" else judged == 0
    assert len(server.requests) == 2 * 28 + judged
    assert json.loads((out / "summary.json").read_text()) == again.summary
    # Recorded afresh: the next run is up to date again.
    assert run_benchmark(config(directory, out, server, **changes)).up_to_date


def test_a_store_changed_since_is_replayed_and_a_lost_answer_asked_again(
    finished: tuple[Path, FakeServer, RunResult], tmp_path: Path
) -> None:
    directory, server, _ = finished
    out = tmp_path / "run"
    db = sqlite3.connect(out / "store.sqlite")
    with db:
        db.execute("DELETE FROM calls WHERE rowid = (SELECT max(rowid) FROM calls)")
    db.close()
    again = run_benchmark(config(directory, out, server))
    assert not again.up_to_date and again.complete
    made = sum(calls["made"] for calls in again.summary["metadata"]["calls"].values())
    assert made == 1
    assert len(server.requests) == 2 * 28 + 1


def test_an_incomplete_run_is_not_recorded(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    directory = captioned(write_parquet_dir(tmp_path / "dataset", make_dataset(2)), 2)
    failing = {"on": True}

    def flaky(request: RecordedRequest) -> str | Reply:
        if failing["on"] and request.call_kind == "tf":
            return Reply(status=500, text="down")
        return reply(request)

    server = fake_server(flaky)
    out = tmp_path / "run"
    first = run_benchmark(config(directory, out, server))
    assert not first.complete
    assert not (out / FINISHED_FILE).exists()
    failing["on"] = False
    second = run_benchmark(config(directory, out, server))
    assert second.complete and not second.up_to_date
    failed = first.summary["metadata"]["calls"]["model"]["failed"]
    assert failed > 0
    assert second.summary["metadata"]["calls"]["model"]["made"] == failed
    assert run_benchmark(config(directory, out, server)).up_to_date


def test_a_jsonl_dataset_with_a_changed_image_file_is_replayed(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    directory = captioned(write_jsonl_dir(tmp_path / "dataset", make_dataset(2)), 2)
    server = fake_server(reply)
    out = tmp_path / "run"
    assert not run_benchmark(config(directory, out, server)).up_to_date
    assert run_benchmark(config(directory, out, server)).up_to_date
    image = sorted((directory / "images").iterdir())[0]
    data = image.read_bytes()
    image.write_bytes(data)  # the same bytes, written again: its change time moved
    again = run_benchmark(config(directory, out, server))
    assert not again.up_to_date and again.complete
    assert len(server.requests) == 2 * 28


def test_data_from_files_not_all_known_leaves_no_record(tmp_path: Path) -> None:
    """A hub dataset on a branch, or one held in memory (`Benchmark.sources` is None)."""
    out = tmp_path / "run"
    out.mkdir()
    mtmcs.engine.finished.record(
        RunConfig(model="baseline/refuse", out=out), None, None, [out / "summary.json"]
    )
    assert not (out / FINISHED_FILE).exists()  # no sources known: no record


def test_the_command_says_the_run_is_up_to_date(
    finished: tuple[Path, FakeServer, RunResult], tmp_path: Path
) -> None:
    directory, server, _ = finished
    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        str(directory),
        "--split",
        "type_a",
        "--model",
        "openai-compatible/test-model",
        "--base-url",
        server.base_url,
        "--judge",
        "openai-compatible/judge",
        "--judge-base-url",
        server.base_url,
        "--max-retries",
        "0",
        "--max-connections",
        "8",
        "--judge-max-connections",
        "4",
        "--out",
        str(out),
    ]
    env = {"OPENAI_API_KEY": "test-key"}
    (out / FINISHED_FILE).unlink()
    first = invoke(*args, env=env)  # replayed from the store, then recorded
    assert first.returncode == 0, first.stderr
    assert "up to date" not in first.stdout
    again = invoke(*args, env=env)
    assert again.returncode == 0, again.stderr
    printed = " ".join(again.stdout.split())
    assert f"{out} is up to date" in printed
    assert "calls when it ran (none now): model 0 made, 48 from the store" in printed
    assert "calls when it ran" not in " ".join(first.stdout.split())
    assert len(server.requests) == 2 * 28
    assert os.path.isfile(out / "summary.json")
