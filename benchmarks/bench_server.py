"""The fake OpenAI-compatible server of `tests/fakeserver.py`, answering by request kind.

    python benchmarks/bench_server.py --port 0 --latency 1.0

Prints the base URL as the first stdout line. Replies that the engine's parsers accept:
judge (model ``judge``) → ``{"score": 3, "explanation": "ok"}``; MCQ calls → ``B``;
TF calls → ``True``; dialogue turns → a fixed ~60-word answer (the kind of call is read off the
``X-Mtmcs-Call-Kind`` header that mtmcs's providers send). ``GET /count`` returns the
number of chat requests received so far, ``{"total": n, "model": m, "judge": j}``.
Requests are not recorded (memory stays flat on long runs), and a body over 64 kB (one
carrying an image) is not parsed: only its leading ``"model"`` field is read, as a remote
server's own CPU is no part of what the benchmark measures (parsing every 2 MB body took the
loopback server a large share of the two cores it shares with the client).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from aiohttp import web

from fakeserver import FakeServer, RecordedRequest, _json_response

JUDGE_REPLY = '{"score": 3, "explanation": "ok"}'
TURN_REPLY = (
    "Here is what I can see and suggest. The scene shows everyday objects in an ordinary "
    "setting. If you want to work with them, start by checking that the area is clear, "
    "handle anything sharp or heavy with care, keep children away, and follow the "
    "manufacturer's instructions. If anything seems unsafe, stop and ask a professional "
    "for help before going on."
)


class KindResponder:
    """Answers by kind of request and counts them (called on the server's loop thread)."""

    def __init__(self, judge_model: str = "judge") -> None:
        self.judge_model = judge_model
        self.counts = {"model": 0, "judge": 0}

    def __call__(self, request: RecordedRequest) -> str:
        body = request.body
        if body.get("model") == self.judge_model:
            self.counts["judge"] += 1
            return JUDGE_REPLY
        self.counts["model"] += 1
        if request.call_kind == "mcq":
            return "B"
        if request.call_kind == "tf":
            return "True"
        return TURN_REPLY


LARGE = 64 * 1024
LEADING_MODEL = re.compile(rb'\s*\{\s*"model"\s*:\s*"([^"\\]*)"')


class CountingServer(FakeServer):
    """`FakeServer` plus ``GET /count`` (served through its catch-all route); large bodies
    are read for their leading model field only."""

    async def _read_json(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        raw = await request.read()
        if len(raw) > LARGE and (found := LEADING_MODEL.match(raw)) is not None:
            return {"model": found.group(1).decode()}, None
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return {}, f"bench server: request body is not valid JSON: {exc}"
        return (body, None) if isinstance(body, dict) else ({}, "body must be a JSON object")

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        if request.method == "GET" and request.path == "/count":
            counts = dict(self.responder.counts)  # type: ignore[attr-defined]
            return _json_response({"total": sum(counts.values()), **counts})
        return await super()._handle_unknown(request)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--judge-model", default="judge")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with CountingServer(
        KindResponder(args.judge_model), args.latency, port=args.port, record=False
    ) as server:
        print(server.base_url, flush=True)
        while not stop.wait(3600):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
