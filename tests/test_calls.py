"""The one call path: store lookup, retries of failures, counting, redaction of every stored
record of every pass, and the judge's connection limit for a defence's judge calls."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from command import mtmcs
from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.data.loaders import load_benchmark
from mtmcs.data.selection import select_rows
from mtmcs.engine.calls import Answer, Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.engine.store import Store
from mtmcs.files import write_json
from mtmcs.guardrails.defences import IMMUNE_CANDIDATES
from mtmcs.guardrails.defences.immune import ImmuneOptions
from mtmcs.guardrails.guard_eval import dialogue_flags, summarise
from mtmcs.guardrails.guards import Guard
from mtmcs.models.base import CallFailed, ChatRequest, Completion
from mtmcs.models.images import ImageEncoder
from mtmcs.models.openai_chat import OpenAIChat
from mtmcs.models.registry import ProviderOptions, create_model
from mtmcs.passes.categorize import categorize_with_model
from mtmcs.passes.guard import run_guard, write_results
from mtmcs.passes.judge_check import judge_check
from mtmcs.passes.stances import classify_run
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.messages import Message
from mtmcs.scoring.categories import CategoryMap
from mtmcs.scoring.categorize import write_map
from mtmcs.scoring.injection import ATTACKS, BASE_CASES
from test_build import _copy_sample_images
from test_run_e2e import JUDGE_REPLY, kind_of, standard_reply

SECRET = "sk-PLANTED-SECRET-4b8e1d0c9a7f"
REQUEST = ChatRequest((Message("user", "Hello?"),), 16)


class Scripted:
    """A chat model answering from a script: a text, a `Completion` or a `CallFailed`."""

    name = "scripted"

    def __init__(self, *answers: str | Completion | CallFailed) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def complete(self, request: ChatRequest) -> Completion:
        answer = self.answers[self.calls]
        self.calls += 1
        if isinstance(answer, CallFailed):
            raise answer
        return Completion(answer) if isinstance(answer, str) else answer

    async def aclose(self) -> None:
        pass


def call(caller: Caller, item: str = "item", **kwargs: Any) -> Answer | str:
    return asyncio.run(caller(item, REQUEST, **kwargs))


def store_text(path: Path) -> str:
    """Every value of every table of a store, as text."""
    with sqlite3.connect(path) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(
            "\t".join(str(value) for value in row)
            for table in tables
            for row in db.execute(f'SELECT * FROM "{table}"')
        )


# --- the caller ----------------------------------------------------------------------------------


def test_a_stored_answer_is_returned_without_a_call_and_parsed_again(tmp_path: Path) -> None:
    model = Scripted("42")
    store = Store(tmp_path / "store.sqlite")
    try:
        made: list[None] = []
        caller = Caller(model, store, AdaptiveLimiter(4), on_call=lambda: made.append(None))
        assert call(caller, parse=int) == Answer("42", 42)
        again = Caller(model, store, AdaptiveLimiter(4))
        assert call(again, parse=lambda text: f"<{text}>") == Answer("42", "<42>", cached=True)
        assert model.calls == 1 and len(made) == 1
        assert (again.counts.made, again.counts.cached) == (0, 1)
    finally:
        store.close()


def test_a_stored_failure_is_retried_and_counted_with_its_cause(tmp_path: Path) -> None:
    model = Scripted(CallFailed("HTTP 500: upstream"), "fine")
    store = Store(tmp_path / "store.sqlite")
    try:
        first = Caller(model, store, AdaptiveLimiter(4))
        assert call(first) == "HTTP 500: upstream"
        assert (first.counts.failed, dict(first.counts.causes)) == (1, {"HTTP 500: upstream": 1})
        second = Caller(model, store, AdaptiveLimiter(4))
        assert call(second) == Answer("fine")
        assert (second.counts.made, second.counts.failed, model.calls) == (1, 0, 2)
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:  # the answer replaced the failure
        assert db.execute("SELECT output, error FROM calls").fetchall() == [("fine", None)]


def test_a_call_inside_another_call_fails_it_and_is_not_progress(tmp_path: Path) -> None:
    model = Scripted(CallFailed("HTTP 503"), "3")
    store = Store(tmp_path / "store.sqlite")
    try:
        made: list[None] = []
        caller = Caller(model, store, AdaptiveLimiter(4), on_call=lambda: made.append(None))
        with pytest.raises(CallFailed, match="HTTP 503"):
            asyncio.run(caller.text("d/turn/1/selector", REQUEST, kind="selector"))
        assert asyncio.run(caller.text("d/turn/1/selector", REQUEST, kind="selector")) == "3"
        assert made == [] and (caller.counts.made, caller.counts.failed) == (1, 1)
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT kind, item FROM calls").fetchall() == [
            ("selector", "d/turn/1/selector")
        ]


def test_secrets_are_redacted_from_stored_and_returned_answers_traces_and_causes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    model = Scripted(
        Completion(f"key {SECRET}", trace=(("draft", f"draft with {SECRET}"),)),
        CallFailed(f"HTTP 401: bad key {SECRET}"),
    )
    store = Store(tmp_path / "store.sqlite")
    try:
        caller = Caller(model, store, AdaptiveLimiter(4))
        answer = call(caller, "one", parse=lambda text: {"echo": text})
        assert isinstance(answer, Answer) and SECRET not in answer.text + str(answer.parsed)
        cause = call(caller, "two")
        assert isinstance(cause, str) and SECRET not in cause and "redacted" in cause
    finally:
        store.close()
    text = store_text(tmp_path / "store.sqlite")
    assert SECRET not in text and text.count("[OPENAI_API_KEY redacted]") == 4


def test_a_key_given_to_a_provider_is_redacted_whatever_its_source(
    tmp_path: Path, fake_server: Callable[..., FakeServer]
) -> None:
    given = "sk-GIVEN-NOT-FROM-THE-ENVIRONMENT-31d7"

    def echoing(request: RecordedRequest) -> str | Reply:
        key = request.headers["authorization"]
        if "fail" in json.dumps(request.body["messages"]):
            return Reply(status=500, error_message=f"rejected {key}")
        return f"called with {key}"

    server = fake_server(echoing)
    store = Store(tmp_path / "store.sqlite")

    async def go() -> list[Answer | str]:
        model = OpenAIChat(
            "openai-compatible/m",
            "m",
            images=ImageEncoder(lambda image_id: b""),
            api_key=given,
            base_url=server.base_url,
            max_retries=0,
            timeout=10,
            token_parameter="max_tokens",
        )
        caller = Caller(model, store, AdaptiveLimiter(2))
        try:
            return [
                await caller("ok", REQUEST),
                await caller("bad", ChatRequest((Message("user", "fail"),), 16)),
            ]
        finally:
            await model.aclose()

    try:
        answers = asyncio.run(go())
    finally:
        store.close()
    assert all(given not in str(answer) for answer in answers)
    text = store_text(tmp_path / "store.sqlite")
    assert given not in text and text.count("[API key redacted]") == 2


# --- every pass: nothing stored or written holds a key a server echoed back -------------------


def echoing(request: RecordedRequest) -> str | Reply:
    """Echo the credentials back: in an error body for about a third of the requests (never
    for a dialogue turn of the run), in the reply otherwise."""
    key = request.headers.get("authorization", "")
    digest = zlib.crc32(json.dumps(request.body.get("messages")).encode())
    run_turn = request.body["model"] == "m" and kind_of(request) == "turn"
    if digest % 3 == 0 and not run_turn:
        return Reply(status=500, error_message=f"rejected {key}")
    return f"Sure ({key})."


def options(server: FakeServer) -> ProviderOptions:
    """The fake server, sent OPENAI_API_KEY (named for it: not its host's key by default)."""
    return ProviderOptions(
        base_url=server.base_url, max_retries=0, timeout=10, api_key_env="OPENAI_API_KEY"
    )


def test_a_key_echoed_by_a_server_is_in_no_store_and_no_output_of_any_pass(
    fake_server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_server(echoing)
    text_only = ImageEncoder(lambda image_id: b"")

    def run(out: Path, **kwargs: Any) -> None:
        run_benchmark(
            RunConfig(
                model="openai-compatible/m",
                judge="openai-compatible/judge",
                dataset="sample",
                splits=("type_a",),
                modalities=("unimodal",),
                limit=1,
                out=out,
                base_urls=(server.base_url,),
                judge_base_urls=(server.base_url,),
                api_key_env="OPENAI_API_KEY",
                judge_api_key_env="OPENAI_API_KEY",
                max_retries=0,
                **kwargs,
            )
        )

    run(tmp_path / "run")
    reward = ImmuneOptions(
        reward_model="openai-compatible/reward",
        reward_base_urls=(server.base_url,),
        reward_api_key_env="OPENAI_API_KEY",
    )
    run(tmp_path / "immune", defense="immune", defense_scope="turns", immune=reward)
    judge = create_model("openai-compatible/stance-judge", text_only, options(server), judge=True)
    stances = asyncio.run(classify_run(tmp_path / "run", judge))
    assert stances.made + len(stances.failed) == 2

    async def with_store(store_path: Path, name: str, work: Callable[[Caller], Any]) -> Any:
        model = create_model(name, text_only, options(server), judge=True)
        store = Store(store_path)
        try:
            return await work(Caller(model, store, AdaptiveLimiter(4)))
        finally:
            store.close()
            await model.aclose()

    intents = [row.unsafe_intent for row in load_benchmark("sample", ("type_a",)).rows][:6]
    mapping = asyncio.run(
        with_store(
            tmp_path / "categories.sqlite",
            "openai-compatible/categorizer",
            lambda caller: categorize_with_model(
                intents, caller, CategoryMap(method="llm", model="openai-compatible/categorizer")
            ),
        )
    )
    write_map(tmp_path / "categories.json", mapping)

    report = asyncio.run(
        with_store(
            tmp_path / "judge-check.sqlite",
            "openai-compatible/judge",
            lambda caller: judge_check(caller, BASE_CASES[:2], ATTACKS[:2]),
        )
    )
    write_json(tmp_path / "judge-check.json", report.to_dict())

    dialogues = [
        d for row in select_rows(load_benchmark("sample"), ("type_a",), 1) for d in expand_row(row)
    ]
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    guard_model = create_model("openai-compatible/guard", text_only, options(server))
    guard = Guard(guard_model, "llama-guard", images=False)
    calls = asyncio.run(
        with_store(
            guard_dir / "store.sqlite",
            "openai-compatible/guard",
            lambda caller: run_guard(guard, caller, dialogues),
        )
    )
    write_results(guard_dir, calls, summarise(dialogue_flags(calls), {}))

    _copy_sample_images(tmp_path / "images", 2)
    built = mtmcs(
        "build",
        str(tmp_path / "images"),
        "--out",
        str(tmp_path / "dataset"),
        "--model",
        "openai-compatible/builder",
        "--base-url",
        server.base_url,
        "--api-key-env",
        "OPENAI_API_KEY",
        "--max-retries",
        "0",
        env={"OPENAI_API_KEY": SECRET},
    )
    # A third of the calls fail with the key in the error body: the build is incomplete
    # (exit 3), the failures recorded with their causes, masked.
    assert built.returncode in (0, 3), built.stderr
    assert SECRET not in built.stdout + built.stderr

    assert all(
        f"Bearer {SECRET}" == r.headers["authorization"] for r in server.requests
    )  # the key was really sent, and echoed
    stores = sorted(tmp_path.rglob("*.sqlite"))
    assert [p.relative_to(tmp_path).as_posix() for p in stores] == [
        "categories.sqlite",
        "dataset/build.sqlite",
        "guard/store.sqlite",
        "immune/store.sqlite",
        "judge-check.sqlite",
        "run/store.sqlite",
    ]
    for path in stores:
        text = store_text(path)
        assert SECRET not in text, path
        assert "[OPENAI_API_KEY redacted]" in text, path  # echoes were stored, masked
    with sqlite3.connect(tmp_path / "immune" / "store.sqlite") as db:
        kinds = {kind for (kind,) in db.execute("SELECT kind FROM calls")}
    assert "reward" in kinds
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in written} >= {".json", ".jsonl", ".sqlite"}
    leaked = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert leaked == []


# --- a defence's reward calls ---------------------------------------------------------------


def test_immune_reward_calls_keep_their_own_connection_limit_are_counted_and_resume(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    reward_calls = {"in_flight": 0, "peak": 0}

    async def reply(request: RecordedRequest) -> str:
        if request.body["model"] == "test-model":
            return "A careful reply." if kind_of(request) == "turn" else standard_reply(request)
        if request.body["model"] == "judge":
            return JUDGE_REPLY
        reward_calls["in_flight"] += 1
        reward_calls["peak"] = max(reward_calls["peak"], reward_calls["in_flight"])
        try:
            await asyncio.sleep(0.02)
        finally:
            reward_calls["in_flight"] -= 1
        return '{"score": 5, "explanation": "Safe."}'

    server = fake_server(reply)
    config = RunConfig(
        model="openai-compatible/test-model",
        judge="openai-compatible/judge",
        dataset="sample",
        splits=("type_a",),
        modalities=("unimodal",),
        limit=1,
        out=tmp_path,
        base_urls=(server.base_url,),
        judge_base_urls=(server.base_url,),
        max_retries=0,
        settings=RunSettings(max_connections=8, judge_max_connections=8),
        defense="immune",
        defense_scope="turns",
        immune=ImmuneOptions(
            reward_model="openai-compatible/reward",
            reward_base_urls=(server.base_url,),
            reward_max_connections=2,
        ),
    )
    result = run_benchmark(config)
    assert result.complete
    rewards = 6 * IMMUNE_CANDIDATES  # 2 dialogues × 3 turns, each best of 4
    calls = result.summary["metadata"]["calls"]
    assert (calls["judge"]["planned"], calls["judge"]["made"], calls["judge"]["cached"]) == (
        2,
        2,
        0,
    )  # the judge judges; the rewards are the reward model's, counted apart
    reward = calls["reward"]
    assert (reward["planned"], reward["made"], reward["cached"]) == (rewards, rewards, 0)
    assert reward_calls["peak"] == 2  # in flight at once: never more than its own limit
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT model, item FROM calls WHERE kind = 'reward'").fetchall()
    assert len(rows) == rewards and {model for model, _ in rows} == {"openai-compatible/reward"}
    items = sorted(item for _, item in rows)
    assert items[:4] == [f"type_a/000000/unimodal/safe/turn/1/reward/{k}" for k in range(1, 5)]

    made = server.request_count
    rerun = run_benchmark(config)
    assert server.request_count == made  # a rerun makes no call
    assert rerun.summary["metadata"]["calls"]["reward"]["made"] == 0
    assert rerun.summary["metadata"]["calls"]["reward"]["cached"] == rewards
