"""Two scripted judges with a known disagreement, served by the fake server, and a run of
the bundled sample judged by the first (for the rejudge, agreement and labelling tests).

`judge-a` scores a dialogue 1 + (h mod 5), h a digest of the judge prompt's user message
(the fenced transcript); `judge-b` gives the same score except on every dialogue whose
h // 5 is divisible by 3, where it is one point off (one higher, or one lower from 5). The
model under test echoes its turns and answers A / True.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fakeserver import FakeServer, RecordedRequest
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings

JUDGE_A = "openai-compatible/judge-a"
JUDGE_B = "openai-compatible/judge-b"
MODEL = "openai-compatible/test-model"


def _digest(request: RecordedRequest) -> int:
    user = [m for m in request.body["messages"] if m["role"] == "user"][-1]["content"]
    text = user if isinstance(user, str) else json.dumps(user, sort_keys=True)
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16)


def score_a(h: int) -> int:
    """Judge A's score of a dialogue whose prompt digest is `h`."""
    return 1 + h % 5


def score_b(h: int) -> int:
    """Judge B's: judge A's, one point off on every dialogue with h // 5 divisible by 3."""
    a = score_a(h)
    if (h // 5) % 3:
        return a
    return a + 1 if a < 5 else a - 1


def reply(request: RecordedRequest) -> str:
    """The fake server's answer: the model under test's, or a scripted judge's verdict."""
    kind = request.call_kind
    if kind == "mcq":
        return "A"
    if kind == "tf":
        return "True"
    if kind == "turn":
        users = sum(m["role"] == "user" for m in request.body["messages"])
        return f"reply to turn {users}"
    h = _digest(request)
    score = score_b(h) if request.body.get("model") == "judge-b" else score_a(h)
    return json.dumps({"score": score, "explanation": f"scripted {request.body.get('model')}"})


def kinds(server: FakeServer) -> dict[str, int]:
    """The calls the server received, counted by kind and model (`judge:judge-b`, `turn:…`)."""
    counted: dict[str, int] = {}
    for request in server.requests:
        key = f"{request.call_kind}:{request.body.get('model')}"
        counted[key] = counted.get(key, 0) + 1
    return counted


def judged_run(server: FakeServer, out: Path, limit: int = 6, **kwargs: Any) -> Path:
    """The sample's first `limit` rows of both splits, run and judged by judge A."""
    run_benchmark(
        RunConfig(
            model=MODEL,
            judge=JUDGE_A,
            dataset="sample",
            limit=limit,
            out=out,
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(max_connections=8, judge_max_connections=4),
            **kwargs,
        )
    )
    return out
