"""Many endpoints (least outstanding requests) and --dry-run."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from command import invoke
from fakeserver import FakeServer
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from test_run_e2e import standard_reply


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_requests_are_spread_over_replicas_by_least_outstanding_requests(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    fast, slow = fake_server(standard_reply, latency=0.01), fake_server(standard_reply, latency=0.1)
    result = run_benchmark(
        RunConfig(
            model="openai-compatible/m",
            judge="baseline/keyword",
            dataset="sample",
            splits=("type_a",),
            limit=4,
            out=tmp_path,
            max_retries=0,
            base_urls=(fast.base_url, slow.base_url),
            settings=RunSettings(max_connections=8),
        )
    )
    assert result.complete
    assert fast.request_count + slow.request_count == 4 * 24
    assert slow.request_count > 0
    assert fast.request_count > 2 * slow.request_count  # the quicker replica frees up sooner


def test_a_refusing_replica_is_skipped_and_the_run_completes(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    alive = fake_server(standard_reply)
    result = run_benchmark(
        RunConfig(
            model="openai-compatible/m",
            judge="baseline/keyword",
            dataset="sample",
            splits=("type_b",),
            limit=2,
            out=tmp_path,
            max_retries=0,
            base_urls=(dead_url(), alive.base_url),
        )
    )
    assert result.complete and alive.request_count == 2 * 24


def test_dry_run_prints_the_plan_and_calls_nothing(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai-compatible/m",
        "--base-url",
        server.base_url,
        "--judge",
        "openai-compatible/j",
        "--judge-base-url",
        server.base_url,
        "--dry-run",
        "--assume-latency",
        "2",
        "--max-connections",
        "96",
        "--judge-max-connections",
        "16",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    assert "576 model + 96 judge = 672" in result.stdout
    assert "critical path: 4 calls" in result.stdout
    # max(4 × 2 s, 576 × 2 / 96 = 12 s, 96 × 2 / 16 = 12 s) = 12 s; sequential 1,344 s
    assert "at least 12 s (one call at a time: 1,344 s)" in result.stdout
    assert server.request_count == 0 and not (tmp_path / "run").exists()
