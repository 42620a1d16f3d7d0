"""A cap on reply size (`ProviderOptions.max_reply_bytes`, default 1 MB), enforced while the
body is read: an over-long reply is a failed call with its cause, never an answer, and the
rest of the body is never read."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx2
import pytest

from command import invoke
from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.models.base import CallFailed, ChatRequest
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_model
from mtmcs.models.transport import MAX_REPLY_BYTES, DeadlineTransport, ReplyTooLarge
from mtmcs.protocol.messages import Message
from test_faults import TF_CALLS_PER_ROW, run
from test_run_e2e import kind_of, standard_reply

CAUSE = "reply larger than 1 MB cap; raise --max-reply-bytes"


def test_default_cap_is_one_megabyte() -> None:
    assert ProviderOptions().max_reply_bytes == MAX_REPLY_BYTES == 1_000_000


def test_over_long_replies_fail_with_the_cause_and_are_never_stored(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def responder(request: RecordedRequest) -> str | Reply:
        if kind_of(request) == "tf":
            return Reply(text="x" * 3_000_000)
        return standard_reply(request)

    result = run(fake_server(responder), tmp_path, max_retries=0)

    calls = result.summary["metadata"]["calls"]["model"]
    assert not result.complete
    assert calls["failed"] == TF_CALLS_PER_ROW
    assert any(CAUSE in cause for cause in calls["causes"]), calls["causes"]
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT output, error FROM calls WHERE kind = 'tf'").fetchall()
    assert len(rows) == TF_CALLS_PER_ROW
    assert all(output is None and CAUSE in error for output, error in rows), rows
    for modality in ("multimodal", "unimodal"):
        tf = result.summary["type_a"][modality]["tf_accuracy"]
        assert (tf["n"], tf["errors"]) == (0, 2)
    # the store holds no trace of the 3 MB bodies
    assert os.path.getsize(tmp_path / "store.sqlite") < MAX_REPLY_BYTES


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
def test_a_lowered_cap_is_enforced_for_every_api_provider(
    fake_server: Callable[..., FakeServer], provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = fake_server(lambda request: Reply(text="y" * 5000))
    base_url = server.base_url if provider == "openai-compatible" else server.anthropic_base_url
    options = ProviderOptions(base_url=base_url, max_retries=0, max_reply_bytes=2000)
    model = create_model(f"{provider}/m", ImageEncoder(lambda image_id: b""), options)
    request = ChatRequest(messages=(Message("user", "hi"),), max_tokens=16)

    async def call() -> None:
        try:
            with pytest.raises(CallFailed, match="reply larger than 2 kB cap"):
                await model.complete(request)
        finally:
            await model.aclose()

    asyncio.run(call())


def test_the_body_is_read_only_up_to_the_cap() -> None:
    """An endless body: the transport stops reading it just past the cap."""
    chunk = b"z" * 65_536
    read = []

    class Endless(httpx2.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            while True:
                read.append(len(chunk))
                yield chunk

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, stream=Endless())

    transport = DeadlineTransport(5.0, max_reply_bytes=MAX_REPLY_BYTES)
    transport._inner = httpx2.MockTransport(handler)  # type: ignore[assignment]

    async def send() -> None:
        request = httpx2.Request("POST", "http://test/v1/chat/completions")
        with pytest.raises(ReplyTooLarge, match="1 MB cap"):
            await transport.handle_async_request(request)

    asyncio.run(send())
    assert sum(read) <= MAX_REPLY_BYTES + len(chunk)


def test_run_takes_the_cap_from_the_command_line(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def responder(request: RecordedRequest) -> str | Reply:
        if kind_of(request) == "tf":
            return Reply(text="y" * 5000)
        return standard_reply(request)

    server = fake_server(responder)
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--split",
        "type_a",
        "--modality",
        "unimodal",
        "--limit",
        "1",
        "--model",
        "openai-compatible/test-model",
        "--base-url",
        server.base_url,
        "--judge",
        "baseline/keyword",
        "--max-retries",
        "0",
        "--max-reply-bytes",
        "2000",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 3, (
        result.stderr
    )  # incomplete: the TF calls failed, a rerun retries them
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT output, error FROM calls WHERE kind = 'tf'").fetchall()
    assert len(rows) == 2
    assert all(output is None and "2 kB cap" in error for output, error in rows)
