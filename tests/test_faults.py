"""Faults: throttling, server errors, broken connections, bad bodies, slow servers, bad judges.

For each fault the run finishes, failed calls are recorded as errors with their cause and
excluded from the metrics, a rerun retries only them, and no error text or empty string is
ever scored as an answer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest

from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.engine.run import RunConfig, RunResult, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.models.transport import DeadlineTransport
from test_run_e2e import kind_of, standard_reply

TF_CALLS_PER_ROW = 4  # 2 TF items × 2 modalities


def run(
    server: FakeServer,
    out: Path,
    *,
    max_retries: int = 1,
    timeout: float = 5.0,
    connections: int = 8,
    limit: int = 1,
) -> RunResult:
    return run_benchmark(
        RunConfig(
            model="openai-compatible/test-model",
            judge="openai-compatible/judge",
            dataset="sample",
            splits=("type_a",),
            limit=limit,
            out=out,
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=max_retries,
            timeout=timeout,
            settings=RunSettings(max_connections=connections, judge_max_connections=connections),
        )
    )


def stored(out: Path) -> list[tuple[str, str | None, str | None]]:
    with sqlite3.connect(out / "store.sqlite") as db:
        return db.execute("SELECT kind, output, error FROM calls").fetchall()


FAULTS: dict[str, tuple[Reply, str]] = {
    "429 with Retry-After": (Reply(status=429, headers={"Retry-After": "0.05"}), "HTTP 429"),
    "429 without Retry-After": (Reply(status=429), "HTTP 429"),
    "500": (Reply(status=500, error_message="internal"), "HTTP 500"),
    "502": (Reply(status=502, error_message="bad gateway"), "HTTP 502"),
    "503": (Reply(status=503, error_message="overloaded"), "HTTP 503"),
    "connection reset": (Reply(fault="reset"), "connection to"),
    "read timeout": (Reply(text="late", delay=3.0), "timed out"),
    "slow drip": (Reply(text="dripping", fault="drip", drip_interval=0.02), "timed out"),
    "malformed JSON body": (Reply(raw_body='{"choices": [{"mess'), "malformed"),
    "empty completion": (Reply(text=""), "empty completion"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_persistent_fault_is_retried_boundedly_recorded_and_retried_on_rerun(
    fake_server: Callable[..., FakeServer], tmp_path: Path, fault: str
) -> None:
    reply, cause = FAULTS[fault]
    attempts: defaultdict[str, int] = defaultdict(int)

    def responder(request: RecordedRequest) -> str | Reply:
        if kind_of(request) == "tf":
            attempts[str(request.body["messages"])] += 1
            return reply
        return standard_reply(request)

    server = fake_server(responder)
    first = run(server, tmp_path, max_retries=1, timeout=1.0)

    calls = first.summary["metadata"]["calls"]["model"]
    assert not first.complete
    assert calls["failed"] == TF_CALLS_PER_ROW and calls["made"] == 24 - TF_CALLS_PER_ROW
    assert any(cause in text for text in calls["causes"]), calls["causes"]
    retried = fault not in ("malformed JSON body", "empty completion")
    assert sorted(attempts.values()) == [2 if retried else 1] * TF_CALLS_PER_ROW
    for modality in ("multimodal", "unimodal"):
        tf = first.summary["type_a"][modality]["tf_accuracy"]
        assert (tf["n"], tf["errors"], tf["value"]) == (0, 2, None)
        assert first.summary["type_a"][modality]["unsafe_mcq_accuracy"]["n"] == 2
    for kind, output, error in stored(tmp_path):
        assert (output is None) != (error is None)
        if kind == "tf":
            assert output is None and cause in error  # never an answer

    healthy = fake_server(standard_reply)
    second = run(healthy, tmp_path)
    assert second.complete
    assert [kind_of(r) for r in healthy.requests] == ["tf"] * TF_CALLS_PER_ROW
    assert second.summary["type_a"]["unimodal"]["tf_accuracy"]["n"] == 2


def test_transient_429s_honour_retry_after_and_leave_no_trace(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    seen: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def responder(request: RecordedRequest) -> str | Reply:
        if kind_of(request) != "mcq":
            return standard_reply(request)
        key = str(request.body["messages"])  # MCQ prompts are unique per call
        with lock:
            seen[key].append(time.monotonic())
            first = len(seen[key]) == 1
        return Reply(status=429, headers={"Retry-After": "1"}) if first else "B"

    server = fake_server(responder)
    result = run(server, tmp_path, max_retries=2)
    assert result.complete
    waits = [times[1] - times[0] for times in seen.values()]
    assert [len(times) for times in seen.values()] == [2] * 8
    assert len(waits) == 8  # every MCQ was throttled once, then answered
    assert min(waits) >= 0.95
    assert result.summary["metadata"]["concurrency"]["model"]["rate_limited_responses"] == 8
    assert all(error is None for _, _, error in stored(tmp_path))


def test_length_cut_completion_is_kept_as_an_answer_with_its_finish_reason(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def responder(request: RecordedRequest) -> str | Reply:
        if kind_of(request) == "turn":
            return Reply(text="A long answer that was cut", finish_reason="length")
        return standard_reply(request)

    result = run(fake_server(responder), tmp_path)
    assert result.complete
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        reasons = {r for (r,) in db.execute("SELECT finish_reason FROM calls WHERE kind = 'turn'")}
    assert reasons == {"length"}


def test_judge_answering_in_prose_is_unscored_counted_and_not_a_failure(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def responder(request: RecordedRequest) -> str:
        if kind_of(request) == "judge":
            return "Overall I'd rate this a 4: the assistant was careful. Score: 4/5."
        return standard_reply(request)

    result = run(fake_server(responder), tmp_path)
    assert result.complete
    for modality in ("multimodal", "unimodal"):
        for measure in ("safety_awareness", "helpfulness"):
            stat = result.summary["type_a"][modality][measure]
            assert (stat["value"], stat["n"], stat["unparseable"]) == (None, 1, 1)


def test_sustained_429s_lower_concurrency_to_the_provider_limit_without_failures(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    capacity = 4
    state: dict[str, Any] = {"in_flight": 0, "peak": 0, "throttled": 0}

    async def limited(request: RecordedRequest) -> str | Reply:
        if request.body["model"] == "judge":
            return standard_reply(request)
        if state["in_flight"] >= capacity:
            state["throttled"] += 1
            return Reply(status=429, headers={"retry-after-ms": "20"}, delay=0)
        state["in_flight"] += 1
        state["peak"] = max(state["peak"], state["in_flight"])
        try:
            await asyncio.sleep(0.02)
        finally:
            state["in_flight"] -= 1
        return standard_reply(request)

    server = fake_server(limited)
    result = run(server, tmp_path, max_retries=8, connections=32, limit=3)
    assert result.complete, result.summary["metadata"]["calls"]["model"]["causes"]
    concurrency = result.summary["metadata"]["concurrency"]["model"]
    assert concurrency["lowest"] <= 2 * capacity
    model_calls = 3 * 24
    assert state["throttled"] < model_calls  # throttling stays a minority of requests
    assert state["peak"] == capacity


def test_unexpected_provider_exception_is_recorded_not_raised(
    fake_server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mtmcs.models import openai_chat

    original = openai_chat.OpenAIChat._arguments

    def broken(self: Any, request: Any) -> dict[str, Any]:
        if request.kind == "tf":
            raise KeyError("surprise")
        return original(self, request)

    monkeypatch.setattr(openai_chat.OpenAIChat, "_arguments", broken)
    result = run(fake_server(standard_reply), tmp_path)
    causes = result.summary["metadata"]["calls"]["model"]["causes"]
    assert causes == {"unexpected KeyError: 'surprise'": TF_CALLS_PER_ROW}


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ClientConnectorError, httpx2.ConnectError),  # "connection refused", not a timeout
        (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),
        (aiohttp.SocketTimeoutError, httpx2.ReadTimeout),  # kept as it came
    ],
)
def test_an_aiohttp_failure_reaches_the_sdk_as_its_httpx_error_with_its_cause(
    raised: type[Exception], expected: type[Exception]
) -> None:
    """`DeadlineTransport` maps what `httpx_aiohttp` raised (always a connect timeout for a
    failed connection); one it does not map goes on unchanged, with its own cause."""
    if raised is aiohttp.ClientConnectorError:
        cause: Exception = raised(
            aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None),
            ConnectionRefusedError(111, "Connection refused"),
        )
        first: Exception = httpx2.ConnectTimeout("Cannot connect")
    elif raised is aiohttp.SocketTimeoutError:
        cause, first = raised("read timed out"), httpx2.ReadTimeout("read timed out")
    else:
        cause, first = raised("Server disconnected"), httpx2.ConnectTimeout("disconnected")

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise first from cause

    transport = DeadlineTransport(5.0)
    transport._inner = httpx2.MockTransport(handler)  # type: ignore[assignment]

    async def send() -> BaseException:
        request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
        with pytest.raises(httpx2.TransportError) as caught:
            await transport.handle_async_request(request)
        return caught.value

    error = asyncio.run(send())
    assert type(error) is expected
    if error is first:  # not mapped: unchanged, its cause kept
        assert error.__cause__ is cause
    else:
        assert error.__cause__ is first
