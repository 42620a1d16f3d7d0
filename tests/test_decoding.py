"""Decoding as the authors': judge defaults, reasoning models, efforts, budgets, image order."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.engine.store import request_key
from mtmcs.models.base import REASONING_EXHAUSTED, ChatRequest
from mtmcs.models.registry import is_reasoning_model
from mtmcs.protocol.messages import Message
from mtmcs.protocol.prompts import judge_decoding, model_decoding
from test_run_e2e import standard_reply


def run(
    server: FakeServer,
    out: Path,
    model: str = "openai-compatible/test-model",
    judge: str = "openai-compatible/judge",
    **settings: Any,
) -> Any:
    return run_benchmark(
        RunConfig(
            model=model,
            judge=judge,
            dataset="sample",
            splits=("type_a",),
            limit=1,
            out=out,
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(max_connections=8, judge_max_connections=4, **settings),
        )
    )


def by_model(server: FakeServer, model: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.body["model"] == model]


@pytest.mark.parametrize(
    ("name", "reasoning"),
    [
        ("openai/gpt-5.2", True),
        ("openai/gpt-5-mini", True),
        ("openai/o3-mini", True),
        ("openai-compatible/openai/gpt-5-mini", True),
        ("openai/gpt-4o", False),
        ("openai/gpt-50", False),
        ("openai-compatible/Qwen/Qwen3-VL-8B-Instruct", False),
        ("anthropic/claude-sonnet-4-5", False),
    ],
)
def test_reasoning_models_are_recognised_by_name(name: str, reasoning: bool) -> None:
    assert is_reasoning_model(name) is reasoning


def test_default_judge_decoding_is_the_authors_for_a_plain_judge(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = run(server, tmp_path)
    judged = by_model(server, "judge")
    assert len(judged) == 4
    for request in judged:
        assert request.body["max_tokens"] == 128 and request.body["temperature"] == 0.0
        assert "reasoning_effort" not in request.body
    assert result.summary["metadata"]["decoding"]["judge"] == {
        "max_tokens": 128,
        "temperature": 0.0,
        "reasoning_effort": None,
    }


def test_a_reasoning_judge_gets_low_effort_and_256_tokens_without_temperature(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run(server, tmp_path, judge="openai-compatible/gpt-5-mini")
    judged = by_model(server, "gpt-5-mini")
    assert len(judged) == 4
    for request in judged:
        assert request.body["reasoning_effort"] == "low"
        assert request.body["max_tokens"] == 256
        assert "temperature" not in request.body


def test_a_reasoning_model_under_test_gets_the_authors_gpt5_decoding(
    fake_server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    server = fake_server(standard_reply)
    result = run(server, tmp_path, model="openai/gpt-5.2")
    calls = by_model(server, "gpt-5.2")
    assert len(calls) == 24
    for request in calls:
        assert request.body["reasoning_effort"] == "low"
        assert request.body["max_completion_tokens"] == 256
        assert "temperature" not in request.body and "max_tokens" not in request.body
    assert result.summary["metadata"]["decoding"]["mcq"]["max_tokens"] == 256


def test_effort_and_token_overrides_reach_every_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run(
        server,
        tmp_path,
        reasoning_effort="high",
        max_tokens=2048,
        judge_reasoning_effort="medium",
        judge_max_tokens=1000,
    )
    for request in by_model(server, "test-model"):
        assert request.body["reasoning_effort"] == "high"
        assert request.body["max_tokens"] == 2048
        assert "temperature" not in request.body
    for request in by_model(server, "judge"):
        assert request.body["reasoning_effort"] == "medium"
        assert request.body["max_tokens"] == 1000


def test_an_empty_reply_whose_budget_went_to_reasoning_is_a_counted_failure(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    exhausted = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "judge",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "length",
                }
            ],
            "usage": {
                "prompt_tokens": 900,
                "completion_tokens": 256,
                "total_tokens": 1156,
                "completion_tokens_details": {"reasoning_tokens": 256},
            },
        }
    )

    def responder(request: RecordedRequest) -> str | Reply:
        if request.body["model"] == "gpt-5-mini":
            return Reply(raw_body=exhausted)
        return standard_reply(request)

    server = fake_server(responder)
    result = run(server, tmp_path, judge="openai-compatible/gpt-5-mini")
    calls = result.summary["metadata"]["calls"]["judge"]
    assert calls["failed"] == 4 and calls["reasoning_exhausted"] == 4
    (cause,) = calls["causes"]
    assert cause.startswith(REASONING_EXHAUSTED) and "256 reasoning tokens of 256" in cause
    safety = result.summary["type_a"]["unimodal"]["safety_awareness"]
    assert safety["errors"] == 1 and safety["value"] is None  # never stored as an answer


def test_image_order_after_puts_the_image_behind_the_text(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run(server, tmp_path, image_order="after")
    with_images = [
        r
        for r in by_model(server, "test-model")
        if not isinstance(r.body["messages"][-1]["content"], str)
    ]
    assert len(with_images) == 12  # 6 multimodal turns + 6 multimodal questions
    for request in with_images:
        types = [part["type"] for part in request.body["messages"][-1]["content"]]
        assert types == ["text", "image_url"]


def test_anthropic_effort_becomes_a_thinking_budget_on_top_of_the_reply_budget(
    fake_server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = fake_server("Sure, here you go.")
    run_benchmark(
        RunConfig(
            model="anthropic/claude-test",
            judge="baseline/keyword",
            dataset="sample",
            splits=("type_a",),
            modalities=("unimodal",),
            limit=1,
            out=tmp_path,
            base_urls=(server.anthropic_base_url,),
            max_retries=0,
            settings=RunSettings(reasoning_effort="medium"),
        )
    )
    assert server.request_count == 12
    for request in server.requests:
        assert request.body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
        assert request.body["max_tokens"] == 256 + 4096
        assert "temperature" not in request.body


def test_decoding_defaults_follow_the_authors() -> None:
    assert model_decoding("turn").max_tokens == 128
    assert model_decoding("mcq").max_tokens == 64
    assert model_decoding("tf").max_tokens == 32
    assert model_decoding("tf").temperature == 0.1
    assert model_decoding("turn", omit_temperature=True).temperature is None
    assert model_decoding("turn", temperature=0.7).temperature == 0.7
    assert judge_decoding().temperature == 0.0 and judge_decoding().max_tokens == 128
    reasoning = judge_decoding(reasoning=True)
    assert (reasoning.max_tokens, reasoning.temperature, reasoning.reasoning_effort) == (
        256,
        None,
        "low",
    )


def test_store_keys_of_plain_requests_are_unchanged_by_the_new_fields() -> None:
    plain = ChatRequest((Message("user", "hi"),), 128, 0.1, 0)
    # The key as computed before reasoning effort and image order existed: runs made
    # with earlier versions resume without repeating these calls.
    earlier = {
        "model": "m",
        "item": "item",
        "messages": [["user", "hi", None]],
        "max_tokens": 128,
        "temperature": 0.1,
        "seed": 0,
    }
    encoded = json.dumps(earlier, ensure_ascii=False, separators=(",", ":")).encode()
    assert request_key("m", "item", plain) == hashlib.sha256(encoded).hexdigest()
    with_effort = ChatRequest((Message("user", "hi"),), 128, 0.1, 0, "low")
    after = ChatRequest((Message("user", "hi", "img", "after"),), 128, 0.1, 0)
    before = ChatRequest((Message("user", "hi", "img"),), 128, 0.1, 0)
    keys = {request_key("m", "item", r) for r in (plain, with_effort, after, before)}
    assert len(keys) == 4
