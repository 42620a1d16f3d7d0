"""API keys never leak; two runs never corrupt one store; bad data never touches the store."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from command import MTMCS, invoke, mtmcs
from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.data.loaders import SAMPLE_DIR
from mtmcs.engine.store import Store
from mtmcs.errors import StoreError
from test_run_e2e import kind_of, standard_reply

SECRET = "sk-PLANTED-SECRET-7f3a9c2e5b1d"


def every_byte_under(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def test_a_planted_api_key_appears_in_no_output_store_summary_or_error(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def echoing(request: RecordedRequest) -> str | Reply:
        assert request.headers["authorization"] == f"Bearer {SECRET}"  # it is really sent
        if kind_of(request) == "tf":  # a server that echoes the credentials in its errors
            return Reply(status=500, error_message=f"bad key {request.headers['authorization']}")
        return standard_reply(request)

    server = fake_server(echoing)
    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        "sample",
        "--split",
        "type_a",
        "--limit",
        "1",
        "--model",
        "openai-compatible/m",
        "--base-url",
        server.base_url,
        "--judge",
        "openai-compatible/judge",
        "--judge-base-url",
        server.base_url,
        "--api-key-env",  # OPENAI_API_KEY goes to another host only when named for it
        "OPENAI_API_KEY",
        "--judge-api-key-env",
        "OPENAI_API_KEY",
        "--max-retries",
        "0",
        "--out",
        str(out),
    ]
    result = mtmcs(*args, env={"OPENAI_API_KEY": SECRET})
    assert result.returncode == 3  # incomplete: the TF calls failed
    assert "redacted" in (out / "summary.json").read_text()  # the cause is kept, key masked
    debug = mtmcs(
        "--debug",
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai/gpt-4o",
        "--judge",
        "openai-compatible/judge",
        "--judge-base-url",
        "http://127.0.0.1:9/v1",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--limit",
        "1",
        "--out",
        str(tmp_path / "dead"),
        env={"OPENAI_API_KEY": SECRET},
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr

    leaked = [
        name
        for name, text in [
            ("stdout", result.stdout),
            ("stderr", result.stderr),
            ("debug stdout", debug.stdout),
            ("debug stderr", debug.stderr),
        ]
        if SECRET in text
    ]
    assert leaked == []
    assert SECRET.encode() not in every_byte_under(tmp_path)


def test_second_run_on_a_busy_store_stops_with_a_clear_error(tmp_path: Path) -> None:
    holder = Store(tmp_path / "store.sqlite")
    try:
        with pytest.raises(StoreError, match="busy"):
            Store(tmp_path / "store.sqlite")
        result = invoke(
            "run",
            "--dataset",
            "sample",
            "--model",
            "baseline/random",
            "--judge",
            "baseline/keyword",
            "--limit",
            "1",
            "--out",
            str(tmp_path),
        )
        assert result.returncode == 1
        assert "busy" in result.stderr and "Traceback" not in result.stderr
    finally:
        holder.close()
    Store(tmp_path / "store.sqlite").close()  # free again once the holder is gone


def test_two_concurrent_runs_leave_one_intact_store(tmp_path: Path) -> None:
    args = [
        "run",
        "--dataset",
        "sample",
        "--model",
        "baseline/random",
        "--judge",
        "baseline/keyword",
        "--out",
        str(tmp_path),
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = [
        subprocess.Popen(
            [*MTMCS, *args],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] in (0, 1)
    assert all(code == 0 or "busy" in err for code, err in results)
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (576 + 96,)


def test_invalid_data_on_rerun_leaves_the_store_untouched(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    shutil.copytree(SAMPLE_DIR, dataset)
    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        str(dataset),
        "--model",
        "baseline/random",
        "--judge",
        "baseline/keyword",
        "--limit",
        "2",
        "--out",
        str(out),
    ]
    assert invoke(*args).returncode == 0
    before = hashlib.sha256(every_byte_under(out)).hexdigest()

    (dataset / "data" / "type_b-00000-of-00001.parquet").write_bytes(b"PAR1 truncated")
    result = invoke(*args)
    assert result.returncode == 2
    assert "type_b-00000-of-00001.parquet" in result.stderr and "Traceback" not in result.stderr
    assert hashlib.sha256(every_byte_under(out)).hexdigest() == before
