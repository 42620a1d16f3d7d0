"""Less CPU per call: the reply's JSON read without the SDK's models; the body's image sent
from the cached data URL, never copied."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest

from mtmcs.engine.collector import THRESHOLDS, fewer_pauses
from mtmcs.models.base import CallFailed
from mtmcs.models.images import ImageEncoder
from mtmcs.models.openai_chat import RequestBody, completion_of, openai_content
from mtmcs.protocol.messages import Message

REPLY = {
    "choices": [{"message": {"content": "A reply."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3},
}


def test_a_chat_completion_is_read_with_its_tokens_and_finish_reason() -> None:
    completion = completion_of(REPLY, 128)
    assert (completion.text, completion.finish_reason) == ("A reply.", "stop")
    assert (completion.input_tokens, completion.output_tokens) == (12, 3)


@pytest.mark.parametrize(
    "response",
    [
        {},
        {"choices": []},
        {"choices": "no"},
        {"choices": [{"message": "text"}]},
        {"choices": [{"message": {"content": 42}}]},
        ["not", "an", "object"],
    ],
)
def test_a_reply_without_a_message_is_malformed(response: Any) -> None:
    with pytest.raises(CallFailed, match="malformed response"):
        completion_of(response, 128)


def test_an_empty_reply_after_hidden_reasoning_says_so() -> None:
    response = {
        "choices": [{"message": {"content": ""}, "finish_reason": "length"}],
        "usage": {"completion_tokens_details": {"reasoning_tokens": 256}},
    }
    with pytest.raises(CallFailed, match="256 reasoning tokens of 256"):
        completion_of(response, 256)
    with pytest.raises(CallFailed, match="empty completion"):
        completion_of({"choices": [{"message": {"content": "  "}}], "usage": "odd"}, 64)


def test_odd_token_counts_are_left_out() -> None:
    response = {**REPLY, "usage": {"prompt_tokens": "12", "completion_tokens": True}}
    completion = completion_of(response, 128)
    assert (completion.input_tokens, completion.output_tokens) == (None, None)


def test_a_body_with_a_large_image_is_sent_from_the_cached_data_url() -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000  # undecodable: sent as it is
    encoder = ImageEncoder(lambda image_id: image)
    messages = (Message("user", "What is this?", "img"),)
    arguments = {
        "model": "m",
        "messages": [{"role": "user", "content": openai_content(m)} for m in messages],
    }
    body = RequestBody(arguments, encoder, messages)

    async def chunks() -> list[bytes]:
        return [bytes(chunk) async for chunk in body]

    sent = asyncio.run(chunks())
    assert b"".join(sent) == body.read() and len(body.read()) == body.length
    assert any(chunk is encoder("img").data_url for chunk in body.pieces)  # never copied
    url = json.loads(body.read())["messages"][0]["content"][0]["image_url"]["url"]
    assert url.encode() == encoder("img").data_url


def test_the_collector_is_quieter_only_while_the_calls_run() -> None:
    """Objects made before the calls are frozen out of collection and young ones collected
    less often, until the block ends, even by an error (`mtmcs.engine.collector`)."""
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_pauses():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
        raise RuntimeError("a run that fails")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
