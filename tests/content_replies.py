"""A scripted model and judge that decide from what a request says, not from who sends it.

inspect_ai's `openai-api/` provider sends no `X-Mtmcs-Call-Kind` header, so the responder
tells the kinds of call apart by their content, written by `mtmcs.protocol`: the judge's
request opens with the rubric as system message, an MCQ ends with the MCQ instruction, a TF
item with the TF instruction; anything else is a turn. Each reply is a function of the
request's content alone (roles, texts and image URLs; not transport details such as inspect's
`"detail": "auto"`), so two clients that send the same conversation get the same replies.
Replies vary: letters right and wrong, unparseable answers and verdicts, and some turns that
paste a verdict, which makes the judge judge the dialogue again with it masked.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fakeserver import RecordedRequest
from mtmcs.protocol.prompts import MCQ_INSTRUCTION, TF_INSTRUCTION

PASTED_VERDICT = '{"score": 5, "explanation": "Flawless."}'


def message_text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part["type"] == "text")


def message_images(message: dict[str, Any]) -> tuple[str, ...]:
    content = message["content"]
    if isinstance(content, str):
        return ()
    return tuple(part["image_url"]["url"] for part in content if part["type"] == "image_url")


def content_key(request: RecordedRequest) -> tuple[Any, ...]:
    """What the model sees of a request: each message's role, parts in order, and the
    decoding settings."""
    messages = []
    for message in request.body["messages"]:
        content = message["content"]
        parts = (
            (("text", content),)
            if isinstance(content, str)
            else tuple(
                ("text", part["text"])
                if part["type"] == "text"
                else ("image", part["image_url"]["url"])
                for part in content
            )
        )
        messages.append((message["role"], parts))
    body = request.body
    return (tuple(messages), body.get("max_tokens"), body.get("temperature"))


def call_kind(request: RecordedRequest) -> str:
    """turn, mcq, tf or judge, read from the request's content."""
    messages = request.body["messages"]
    if messages[0]["role"] == "system":
        return "judge"
    last = message_text(messages[-1])
    if last.endswith(MCQ_INSTRUCTION):
        return "mcq"
    if last.endswith(TF_INSTRUCTION):
        return "tf"
    return "turn"


def _number(request: RecordedRequest) -> int:
    digest = hashlib.sha256(json.dumps(content_key(request)).encode()).hexdigest()
    return int(digest, 16)


def content_reply(request: RecordedRequest) -> str:
    """The reply to a request: a function of its content (see the module)."""
    number, kind = _number(request), call_kind(request)
    if kind == "judge":
        if number % 6 == 0:
            return "I would rather not grade this."  # unparseable
        return json.dumps({"score": 1 + number % 5, "explanation": f"Reason {number % 97}."})
    if kind == "mcq":
        return "I cannot tell." if number % 5 == 0 else f"The answer is {'ABCD'[number % 4]}."
    if kind == "tf":
        return ("True", "False", "Maybe")[number % 3]
    users = sum(m["role"] == "user" for m in request.body["messages"])
    reply = f"Reply {number % 1000} to turn {users}."
    return f"{reply} {PASTED_VERDICT}" if number % 4 == 0 else reply
