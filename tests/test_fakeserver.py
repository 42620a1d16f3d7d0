"""The fake server, exercised through the real openai and anthropic SDKs (no mocking)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from fakeserver import FakeServer, FixedResponder, RecordedRequest, Reply, ScriptedResponder

PNG_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def openai_client(server: FakeServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=server.base_url, max_retries=0)


def anthropic_client(server: FakeServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test", base_url=server.anthropic_base_url, max_retries=0
    )


def test_openai_chat_completion_roundtrip(fake_server: Any) -> None:
    server = fake_server(
        ScriptedResponder(["one two three", Reply(text="cut", finish_reason="length")])
    )
    messages = [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": "Is this safe?"},
    ]

    async def run() -> tuple[Any, Any]:
        async with openai_client(server) as client:
            first = await client.chat.completions.create(
                model="gpt-test", messages=messages, max_tokens=16, temperature=0.0
            )
            second = await client.chat.completions.create(
                model="gpt-test", messages=messages, max_completion_tokens=4, temperature=0.7
            )
        return first, second

    first, second = asyncio.run(run())

    assert first.choices[0].message.content == "one two three"
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert first.model == "gpt-test"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (6, 3)
    assert first.usage.total_tokens == 9
    assert second.choices[0].message.content == "cut"
    assert second.choices[0].finish_reason == "length"

    recorded = server.requests
    assert [r.index for r in recorded] == [0, 1]
    assert all(r.path == "/v1/chat/completions" and r.api == "openai" for r in recorded)
    assert recorded[0].body == {
        "model": "gpt-test",
        "messages": messages,
        "max_tokens": 16,
        "temperature": 0.0,
    }
    assert recorded[1].body == {
        "model": "gpt-test",
        "messages": messages,
        "max_completion_tokens": 4,
        "temperature": 0.7,
    }
    assert recorded[0].headers["authorization"] == "Bearer test"


def test_openai_image_parts_are_recorded(fake_server: Any) -> None:
    server = fake_server("I see a pixel.")
    content = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
    ]

    async def run() -> Any:
        async with openai_client(server) as client:
            return await client.chat.completions.create(
                model="vision", messages=[{"role": "user", "content": content}]
            )

    completion = asyncio.run(run())

    assert completion.choices[0].message.content == "I see a pixel."
    assert completion.usage.prompt_tokens == 5  # text words only; the image is not counted
    (request,) = server.requests
    assert request.body["messages"] == [{"role": "user", "content": content}]


def test_anthropic_messages_roundtrip(fake_server: Any) -> None:
    server = fake_server(
        ScriptedResponder([Reply(text="All good here.", prompt_tokens=42), Reply("x", "length")])
    )
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe it."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                },
            ],
        }
    ]

    async def run() -> tuple[Any, Any]:
        async with anthropic_client(server) as client:
            first = await client.messages.create(
                model="claude-test",
                max_tokens=32,
                system="Be brief.",
                messages=messages,
                # anthropic 2.x has no temperature parameter; it must go through extra_body.
                extra_body={"temperature": 0.0},
            )
            second = await client.messages.create(
                model="claude-test", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
            )
        return first, second

    first, second = asyncio.run(run())

    assert first.content[0].type == "text"
    assert first.content[0].text == "All good here."
    assert (first.role, first.model, first.type) == ("assistant", "claude-test", "message")
    assert first.stop_reason == "end_turn"
    assert first.stop_sequence is None
    assert (first.usage.input_tokens, first.usage.output_tokens) == (42, 3)
    assert second.stop_reason == "max_tokens"
    assert second.usage.input_tokens == 1

    recorded = server.requests
    assert [(r.path, r.api) for r in recorded] == [("/v1/messages", "anthropic")] * 2
    assert recorded[0].body == {
        "model": "claude-test",
        "max_tokens": 32,
        "system": "Be brief.",
        "messages": messages,
        "temperature": 0.0,
    }
    assert "anthropic-version" in recorded[0].headers
    # anthropic 2.x sends api_key as a bearer token, not x-api-key.
    assert recorded[0].headers["authorization"] == "Bearer test"


def test_models_endpoint_for_both_sdks(fake_server: Any) -> None:
    server = fake_server("unused", model="fake-model")

    async def run() -> tuple[list[str], list[str]]:
        async with openai_client(server) as oai, anthropic_client(server) as ant:
            openai_ids = [m.id async for m in oai.models.list()]
            anthropic_ids = [m.id async for m in ant.models.list()]
        return openai_ids, anthropic_ids

    assert asyncio.run(run()) == (["fake-model"], ["fake-model"])
    assert [r.api for r in server.requests] == ["openai", "anthropic"]


def test_rate_limit_reply_raises_without_retry(fake_server: Any) -> None:
    server = fake_server(
        ScriptedResponder(
            [Reply(status=429, headers={"Retry-After": "0"}, error_message="slow down")] * 2
        )
    )

    async def run() -> None:
        async with openai_client(server) as client:
            with pytest.raises(openai.RateLimitError) as excinfo:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
        assert excinfo.value.status_code == 429
        assert excinfo.value.response.headers["retry-after"] == "0"
        assert "slow down" in excinfo.value.message

        async with anthropic_client(server) as client:
            with pytest.raises(anthropic.RateLimitError, match="slow down"):
                await client.messages.create(
                    model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
                )

    asyncio.run(run())
    assert server.request_count == 2  # max_retries=0: no second attempt


def test_responder_errors_become_500(fake_server: Any) -> None:
    def responder(request: RecordedRequest) -> str:
        raise ValueError("no script for this prompt")

    failing = fake_server(responder)
    exhausted = fake_server(ScriptedResponder(["only one"]))

    async def run() -> None:
        async with openai_client(failing) as client:
            with pytest.raises(openai.InternalServerError, match="no script for this prompt"):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
        async with anthropic_client(exhausted) as client:
            await client.messages.create(
                model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
            )
            with pytest.raises(anthropic.InternalServerError, match="exhausted"):
                await client.messages.create(
                    model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
                )

    asyncio.run(run())


def test_raw_body_is_sent_verbatim(fake_server: Any) -> None:
    server = fake_server(Reply(raw_body='{"id": "truncated'))

    async def run() -> None:
        async with openai_client(server) as client:
            # openai 3.x lets the JSON decode error through unwrapped.
            with pytest.raises(json.JSONDecodeError):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )

    asyncio.run(run())


def test_reply_delay_overrides_latency(fake_server: Any) -> None:
    server = fake_server(Reply(text="fast", delay=0.0), latency=60.0)

    async def run() -> str | None:
        async with openai_client(server) as client:
            completion = await asyncio.wait_for(
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                ),
                timeout=10,
            )
        return completion.choices[0].message.content

    assert asyncio.run(run()) == "fast"


def test_latency_is_applied_concurrently(fake_server: Any) -> None:
    server = fake_server("done", latency=0.2)

    async def run() -> float:
        async with openai_client(server) as client:
            start = time.perf_counter()
            results = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": f"q{i}"}]
                    )
                    for i in range(20)
                )
            )
            elapsed = time.perf_counter() - start
        assert [r.choices[0].message.content for r in results] == ["done"] * 20
        return elapsed

    elapsed = asyncio.run(run())
    assert 0.2 <= elapsed < 1.5


def test_hundreds_of_concurrent_connections(fake_server: Any) -> None:
    n = 300
    arrived = 0
    everyone_here: asyncio.Event | None = None

    async def barrier(request: RecordedRequest) -> str:
        # Holds every request open until all n are in flight at once, so the server
        # must be serving n simultaneous connections.
        nonlocal arrived, everyone_here
        if everyone_here is None:
            everyone_here = asyncio.Event()
        arrived += 1
        if arrived == n:
            everyone_here.set()
        await asyncio.wait_for(everyone_here.wait(), timeout=20)
        return request.body["messages"][0]["content"]

    server = fake_server(barrier)

    async def run() -> list[str | None]:
        async with openai_client(server) as client:
            results = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": f"q{i}"}]
                    )
                    for i in range(n)
                )
            )
        return [r.choices[0].message.content for r in results]

    assert asyncio.run(run()) == [f"q{i}" for i in range(n)]
    assert sorted(r.index for r in server.requests) == list(range(n))


def test_recording_and_clear(fake_server: Any) -> None:
    server = fake_server(FixedResponder("same"))

    async def ask(content: str) -> None:
        async with openai_client(server) as client:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": content}]
            )

    asyncio.run(ask("first"))
    asyncio.run(ask("second"))
    assert [r.body["messages"][0]["content"] for r in server.requests] == ["first", "second"]
    server.clear()
    assert server.requests == []
    asyncio.run(ask("third"))
    assert [(r.index, r.body["messages"][0]["content"]) for r in server.requests] == [(0, "third")]


def test_listens_on_loopback_only() -> None:
    with FakeServer("hi") as server:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.anthropic_base_url == f"http://127.0.0.1:{server.port}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
        # A wildcard bind would accept this too (Linux routes all of 127/8 to loopback).
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.2", server.port), timeout=5).close()
    # Stopped: the port no longer accepts connections.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


def test_standalone_command_line() -> None:
    script = Path(__file__).with_name("fakeserver.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--reply", "from the cli"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")

        async def run() -> str | None:
            async with openai.AsyncOpenAI(
                api_key="test", base_url=base_url, max_retries=0
            ) as client:
                completion = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
            return completion.choices[0].message.content

        assert asyncio.run(run()) == "from the cli"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
