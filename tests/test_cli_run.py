"""The `mtmcs run` command as users run it: exit codes, messages, resume after kill -9 (in a
subprocess where the process itself matters, in process through CliRunner otherwise)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from command import MTMCS, invoke, mtmcs
from datagen import make_dataset, parquet_path, write_parquet_dir
from fakeserver import FakeServer, RecordedRequest
from mtmcs.engine.run import RunConfig, plan_run, run_benchmark
from mtmcs.errors import ConfigError, DataError


def reply(request: RecordedRequest) -> str:
    text = json.dumps(request.body["messages"][-1])
    if "Answer with the letter" in text:
        return "B"
    if "True or False." in text:
        return "False"
    return f"Answer number {len(request.body['messages'])}."


def test_sample_run_prints_metrics_and_a_rerun_makes_no_call(tmp_path: Path) -> None:
    args = (
        "run",
        "--dataset",
        "sample",
        "--model",
        "baseline/random",
        "--judge",
        "baseline/keyword",
        "--limit",
        "2",
        "--out",
        str(tmp_path),
    )
    first = mtmcs(*args)
    assert first.returncode == 0, first.stderr
    assert "safety-awareness" in first.stdout and "not an LLM judge" in first.stdout
    assert "authors' " in first.stdout  # the authors' scripts' figure in every cell
    assert "published figures are comparable with authors', not with ours" in " ".join(
        first.stdout.split()
    )
    assert "model 96 made, 0 from the store" in first.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metadata"]["judge_kind"].startswith("heuristic")
    second = mtmcs(*args)  # up to date: nothing called, read or written
    assert second.returncode == 0, second.stderr
    assert f"{tmp_path} is up to date" in " ".join(second.stdout.split())
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    (tmp_path / "finished.json").unlink()  # then the same command replays the store
    third = mtmcs(*args)
    assert third.returncode == 0, third.stderr
    assert "model 0 made, 96 from the store" in third.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["type_a"] == summary["type_a"]


def test_unreachable_server_fails_fast_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai-compatible/m",
        "--judge",
        "baseline/keyword",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--limit",
        "1",
        "--out",
        str(tmp_path),
        "--max-retries",
        "1",
    )
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_missing_api_key_is_named(tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai/gpt-4o",
        "--judge",
        "baseline/keyword",
        "--out",
        str(tmp_path),
        env={"OPENAI_API_KEY": None},
    )
    assert result.returncode == 2  # a usage mistake
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("role", ["model", "judge"])
def test_a_missing_key_is_reported_before_the_data_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, role: str
) -> None:
    """The providers are created first: a broken dataset is never read, so the key error
    comes first (and at once, however large the dataset)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    broken = write_parquet_dir(tmp_path / "broken", make_dataset(1))
    parquet_path(broken, "type_a").write_bytes(b"not parquet")
    names = {"model": "baseline/random", "judge": "baseline/keyword", role: "openai/gpt-4o"}
    config = RunConfig(**names, dataset=str(broken), out=tmp_path / "run")
    with pytest.raises(DataError):
        plan_run(config)  # what loading the data would have reported
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        run_benchmark(config)
    result = invoke(
        "run",
        "--dataset",
        str(broken),
        *("--model", names["model"], "--judge", names["judge"]),
        *("--out", str(tmp_path / "run")),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "OPENAI_API_KEY" in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_provider_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("run", "--dataset", "sample", "--model", "nosuch/model", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "unknown model 'nosuch/model'" in result.stderr and "Traceback" not in result.stderr


def test_kill_9_then_rerun_loses_at_most_the_calls_in_flight(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(reply, latency=0.05)
    connections = 4
    args = [
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
        str(connections),
        "--out",
        str(tmp_path / "killed"),
    ]
    process = subprocess.Popen(
        [*MTMCS, *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while server.request_count < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    made_before_kill = server.request_count
    assert 20 <= made_before_kill < 48

    resumed = mtmcs(*args)
    assert resumed.returncode == 0, resumed.stderr
    planned = 48
    assert planned <= server.request_count <= planned + connections
    killed = json.loads((tmp_path / "killed" / "summary.json").read_text())

    server.clear()
    clean = mtmcs(*args[:-1], str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    assert server.request_count == planned
    uninterrupted = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert killed["type_a"] == uninterrupted["type_a"]
