"""End to end through real HTTP: the exact request sequence, call counts, resume, summary values."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.data.captions import load_captions
from mtmcs.data.loaders import SAMPLE_DIR, load_benchmark
from mtmcs.engine.finished import FINISHED_FILE
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.errors import ConfigError, ProviderError
from mtmcs.models.base import CALL_KIND_HEADER
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_model
from mtmcs.passes.stances import classify_run
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.types import Row, Split
from mtmcs.scoring.metrics import ACCURACY_METHOD

JUDGE_REPLY = '{"score": 4, "explanation": "Reasonable."}'


def kind_of(request: RecordedRequest) -> str:
    """turn / mcq / tf / judge / reward / selector / …: the kind of call the provider says a
    recorded request is (its `X-Mtmcs-Call-Kind` header), whatever the prompt's wording."""
    assert request.call_kind, f"request #{request.index} ({request.path}) names no call kind"
    return request.call_kind


def text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def has_image(message: dict[str, Any]) -> bool:
    content = message["content"]
    return not isinstance(content, str) and any(p["type"] == "image_url" for p in content)


def standard_reply(request: RecordedRequest) -> str:
    """Turns echo their turn number; questions answer A / True; the judge (asked to judge, to
    rate a candidate, to choose a defence prompt, …) gives 4."""
    kind = kind_of(request)
    if kind == "mcq":
        return "A"
    if kind == "tf":
        return "True"
    if kind != "turn":
        return JUDGE_REPLY
    users = sum(m["role"] == "user" for m in request.body["messages"])
    return f"reply to turn {users} of [{text_of(request.body['messages'][-1])[:40]}]"


def config(
    server: FakeServer, out: Path, split: Split = "type_a", limit: int = 1, **kwargs: Any
) -> RunConfig:
    return RunConfig(
        model="openai-compatible/test-model",
        judge="openai-compatible/judge",
        dataset="sample",
        splits=(split,),
        limit=limit,
        out=out,
        base_urls=(server.base_url,),
        judge_base_urls=(server.base_url,),
        max_retries=0,
        settings=RunSettings(max_connections=8, judge_max_connections=4),
        **kwargs,
    )


def sample_row(split: Split, row_id: int = 0) -> Row:
    return next(r for r in load_benchmark("sample", (split,)).rows if r.id == row_id)


@pytest.mark.parametrize("split", ["type_a", "type_b"])
def test_one_row_costs_24_model_calls_and_4_judge_calls_in_protocol_order(
    fake_server: Callable[..., FakeServer], tmp_path: Path, split: Split
) -> None:
    server = fake_server(standard_reply)
    result = run_benchmark(config(server, tmp_path, split))
    requests = server.requests
    kinds = [kind_of(r) for r in requests]
    assert kinds.count("judge") == 4
    assert len(requests) - 4 == 24
    assert kinds.count("turn") == 12 and kinds.count("mcq") == 8 and kinds.count("tf") == 4
    assert result.summary["metadata"]["calls"]["model"] == {
        "planned": 24,
        "made": 24,
        "cached": 0,
        "failed": 0,
        "reasoning_exhausted": 0,
        "unfinished": 0,
        "replaced_code_points": 0,
        "causes": {},
    }

    row = sample_row(split)
    captions = load_captions(SAMPLE_DIR / "captions.json")
    for dialogue in expand_row(row):
        turn_requests = [
            r
            for r in requests
            if kind_of(r) == "turn"
            and text_of(r.body["messages"][0]) == dialogue.turns[0]
            and text_of(r.body["messages"][-1]) in dialogue.turns
            and [text_of(m) for m in r.body["messages"] if m["role"] == "user"]
            == list(dialogue.turns[: len(r.body["messages"]) // 2 + 1])
        ]
        # The unsafe and safe type_a dialogues share R1, R2: both appear, one per dialogue.
        by_length = {len(r.body["messages"]): r for r in turn_requests}
        assert sorted(by_length) == [1, 3, 5]
        final = by_length[5].body["messages"]
        assert [m["role"] for m in final] == ["user", "assistant"] * 2 + ["user"]
        assert [text_of(m) for m in final if m["role"] == "user"] == list(dialogue.turns)
        for message in final[1::2]:  # the model's own replies come back as assistant turns
            assert message["content"].startswith("reply to turn")
        images = [has_image(m) for m in final]
        # The image rides on the newest user turn, as the authors' wrappers place it.
        expected = [False] * 4 + [dialogue.modality == "multimodal"]
        assert images == expected, dialogue.id
        # The body goes out in pieces but with a plain Content-Length, not chunked.
        assert "transfer-encoding" not in by_length[5].headers
        assert int(by_length[5].headers["content-length"]) > 0
        assert by_length[5].body["max_tokens"] == 128
        assert by_length[5].body["temperature"] == 0.1

        questions = [
            r
            for r in requests
            if kind_of(r) in ("mcq", "tf")
            and dialogue.turns[-1] in text_of(r.body["messages"][0])
            and dialogue.turns[0] in text_of(r.body["messages"][0])
        ]
        assert len(questions) == len(dialogue.questions)
        assert len(dialogue.questions) == (4 if dialogue.intent == "unsafe" else 2)
        for request in questions:
            (message,) = request.body["messages"]
            assert has_image(message) is (dialogue.modality == "multimodal")
            assert request.body["max_tokens"] == (64 if kind_of(request) == "mcq" else 32)
            prompt = text_of(message)
            assert "\nAssistant: reply to turn 3" in prompt

        (judged,) = [
            r
            for r in requests
            if kind_of(r) == "judge"
            and f"User R3: {dialogue.turns[2]}" in text_of(r.body["messages"][-1])
            and f"User R1: {dialogue.turns[0]}" in text_of(r.body["messages"][-1])
            and (captions[row.id] in text_of(r.body["messages"][-1]))
            is (dialogue.modality == "multimodal")
        ]
        # The authors' layout: the rubric as system message, caption and transcript as user.
        assert [m["role"] for m in judged.body["messages"]] == ["system", "user"]
        assert not any(has_image(m) for m in judged.body["messages"])
        assert all(row.unsafe_intent not in text_of(m) for m in judged.body["messages"])


def test_questions_start_only_after_their_dialogue_finished(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run_benchmark(config(server, tmp_path, "type_b"))
    requests = server.requests
    for index, request in enumerate(requests):
        if kind_of(request) in ("mcq", "tf", "judge"):
            prompt = text_of(request.body["messages"][-1])
            label = "Assistant A3: " if kind_of(request) == "judge" else "Assistant: "
            r3_reply = prompt.rsplit(label, 1)[1].split("\n")[0]
            earlier = [
                text_of(r.body["messages"][-1])[:40]
                for r in requests[:index]
                if kind_of(r) == "turn" and len(r.body["messages"]) == 5
            ]
            assert r3_reply.split("[", 1)[1].rstrip("]") in earlier


def test_rerun_of_a_finished_run_makes_no_call_and_gives_the_same_summary(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    first = run_benchmark(config(server, tmp_path, "type_a", limit=2))
    assert server.request_count == 2 * 28
    assert run_benchmark(config(server, tmp_path, "type_a", limit=2)).up_to_date
    (tmp_path / FINISHED_FILE).unlink()  # replayed: every call from the store
    second = run_benchmark(config(server, tmp_path, "type_a", limit=2))
    assert server.request_count == 2 * 28
    assert second.summary["metadata"]["calls"]["model"]["cached"] == 48
    assert second.summary["metadata"]["calls"]["model"]["made"] == 0
    assert second.summary["type_a"] == first.summary["type_a"]


def test_failed_calls_are_recorded_as_errors_and_only_they_are_retried(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def flaky(request: RecordedRequest) -> str | Reply:
        if kind_of(request) == "tf" or (
            kind_of(request) == "turn"
            and len(request.body["messages"]) == 3
            and request.index % 2 == 0
        ):
            return Reply(status=500, error_message="overloaded")
        return standard_reply(request)

    broken = fake_server(flaky)
    first = run_benchmark(config(broken, tmp_path, "type_a"))
    assert not first.complete
    calls = first.summary["metadata"]["calls"]["model"]
    assert calls["failed"] > 0 and calls["made"] + calls["failed"] < 24 + calls["failed"] + 1
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        failed = db.execute("SELECT output, error FROM calls WHERE error IS NOT NULL").fetchall()
        assert failed and all(output is None and "500" in error for output, error in failed)
    for modality in ("multimodal", "unimodal"):
        cell = first.summary["type_a"][modality]
        assert cell["tf_accuracy"]["errors"] > 0  # failed, not scored as wrong answers
        assert cell["tf_accuracy"]["n"] == 0 or cell["tf_accuracy"]["unparseable"] == 0

    healthy = fake_server(standard_reply)
    second = run_benchmark(config(healthy, tmp_path, "type_a"))
    assert second.complete
    done_before = calls["made"]
    model_requests = [r for r in healthy.requests if kind_of(r) != "judge"]
    assert len(model_requests) == 24 - done_before
    assert second.summary["metadata"]["calls"]["model"]["cached"] == done_before


def test_summary_values_for_scripted_answers(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def scripted(request: RecordedRequest) -> str:
        kind = kind_of(request)
        if kind == "mcq":
            return "A"
        if kind == "tf":
            return "I would rather not say."  # unparseable
        if kind == "judge":
            prompt = text_of(request.body["messages"][0])
            return (
                JUDGE_REPLY
                if "helpful" in prompt.split("BEGIN TRANSCRIPT")[0].lower()
                and "safety" not in prompt.split("BEGIN TRANSCRIPT")[0].lower()
                else '{"score": 2, "explanation": "Enables harm."}'
            )
        return standard_reply(request)

    server = fake_server(scripted)
    limit = 3
    result = run_benchmark(config(server, tmp_path, "type_b", limit=limit))
    rows = sorted(load_benchmark("sample", ("type_b",)).rows, key=lambda r: r.id)[:limit]
    for modality in ("multimodal", "unimodal"):
        cell = result.summary["type_b"][modality]
        for intent in ("safe", "unsafe"):
            items = [
                item for row in rows for item in row.content(modality).mcq if item.intent == intent
            ]
            stat = cell[f"{intent}_mcq_accuracy"]
            assert stat["n"] == len(items) == 2 * limit
            assert stat["value"] == pytest.approx(
                sum(item.ground_truth == "A" for item in items) / len(items)
            )
            assert stat["unparseable"] == 0
            lo, hi = stat["ci95"]
            assert lo <= stat["value"] <= hi
        tf = cell["tf_accuracy"]
        assert tf == {
            "value": 0.0,
            "n": 2 * limit,
            "unparseable": 2 * limit,
            "ci95": tf["ci95"],
            "errors": 0,
            "paper_compatible": None,
            "paper_compatible_n": 0,
            "ci95_unclustered": tf["ci95_unclustered"],
            "ci95_method": ACCURACY_METHOD,
            "clusters": limit,
            "design_effect": None,  # every answer wrong: no spread to measure
        }
        assert cell["safety_awareness"]["value"] == 2.0
        assert cell["safety_awareness"]["n"] == limit
        assert cell["helpfulness"]["value"] == 4.0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["type_b"] == result.summary["type_b"]
    assert saved["metadata"]["model"] == "openai-compatible/test-model"
    assert saved["metadata"]["decoding"]["turn"] == {
        "max_tokens": 128,
        "temperature": 0.1,
        "reasoning_effort": None,
    }


def test_unparseable_judge_reply_is_unscored_not_first_digit(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def prose_judge(request: RecordedRequest) -> str:
        if kind_of(request) == "judge":
            return "I'd say 2 out of 5, because the assistant helped."
        return standard_reply(request)

    server = fake_server(prose_judge)
    result = run_benchmark(config(server, tmp_path, "type_a"))
    stat = result.summary["type_a"]["multimodal"]["safety_awareness"]
    assert stat["value"] is None and stat["n"] == 1 and stat["unparseable"] == 1


def test_newest_placement_puts_the_image_on_the_newest_user_turn(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run_benchmark(
        RunConfig(
            model="openai-compatible/test-model",
            judge="baseline/keyword",
            dataset="sample",
            splits=("type_a",),
            modalities=("multimodal",),
            limit=1,
            out=tmp_path,
            base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(image_placement="newest"),
        )
    )
    for request in server.requests:
        if kind_of(request) == "turn":
            assert [has_image(m) for m in request.body["messages"]][-1] is True
            assert sum(has_image(m) for m in request.body["messages"]) == 1


def test_anthropic_provider_sends_image_blocks_and_alternating_roles(
    fake_server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = fake_server("Sure, here you go.")
    result = run_benchmark(
        RunConfig(
            model="anthropic/claude-test",
            judge="baseline/keyword",
            dataset="sample",
            splits=("type_a",),
            modalities=("multimodal",),
            limit=1,
            out=tmp_path,
            base_urls=(server.anthropic_base_url,),
            max_retries=0,
        )
    )
    assert result.complete and server.request_count == 12
    final = next(r for r in server.requests if len(r.body["messages"]) == 5)
    assert [m["role"] for m in final.body["messages"]] == ["user", "assistant"] * 2 + ["user"]
    image = final.body["messages"][-1]["content"][0]
    assert image["type"] == "image" and image["source"]["type"] == "base64"
    assert image["source"]["media_type"] == "image/png"
    assert final.body["max_tokens"] == 128
    assert final.body["temperature"] == 0.1


@pytest.mark.parametrize("provider", ["openai-compatible", "anthropic"])
def test_every_request_names_the_kind_of_call_it_is_in_a_header(
    fake_server: Callable[..., FakeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    """`X-Mtmcs-Call-Kind` is the kind the call is stored under: turn, mcq, tf and judge in
    a run, selector for AdaShield-A's judge calls inside a call, stance for the stance pass."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = fake_server(standard_reply)
    url = server.base_url if provider == "openai-compatible" else server.anthropic_base_url
    result = run_benchmark(
        RunConfig(
            model=f"{provider}/test-model",
            judge=f"{provider}/judge",
            dataset="sample",
            splits=("type_a",),
            modalities=("unimodal",),
            limit=1,
            out=tmp_path,
            base_urls=(url,),
            judge_base_urls=(url,),
            max_retries=0,
            defense="adashield-a",
            defense_selector="judge",
        )
    )
    assert result.complete

    async def stances() -> None:
        options = ProviderOptions(base_url=url, max_retries=0, timeout=10)
        judge = create_model(f"{provider}/stance-judge", ImageEncoder(bytes), options, judge=True)
        try:
            await classify_run(tmp_path, judge)
        finally:
            await judge.aclose()

    asyncio.run(stances())
    sent = Counter(
        (request.body["model"], request.headers[CALL_KIND_HEADER.lower()])
        for request in server.requests
    )
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        stored = Counter(  # "openai-compatible/test-model+adashield-a" was sent "test-model"
            (name.rpartition("/")[2].partition("+")[0], kind)
            for name, kind in db.execute("SELECT model, kind FROM calls")
        )
    assert sent == stored
    assert {kind for _, kind in sent} == {"turn", "mcq", "tf", "judge", "selector", "stance"}


def test_dead_server_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="cannot reach"):
        run_benchmark(
            RunConfig(
                model="openai-compatible/test-model",
                judge="baseline/keyword",
                dataset="sample",
                splits=("type_a",),
                limit=1,
                out=tmp_path,
                base_urls=(f"http://127.0.0.1:{port}/v1",),
                max_retries=0,
            )
        )


def test_openai_model_without_api_key_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        run_benchmark(
            RunConfig(
                model="openai/gpt-4o",
                judge="baseline/keyword",
                dataset="sample",
                limit=1,
                out=tmp_path,
            )
        )


def test_llm_judge_without_captions_for_a_multimodal_dialogue_is_refused(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"5": "Something else."}))
    with pytest.raises(Exception, match="no caption"):
        run_benchmark(config(server, tmp_path / "run", captions=captions))
    assert server.request_count == 0


def test_image_ids_that_prefix_each_other_get_their_own_images() -> None:
    from mtmcs.models.images import ImageEncoder
    from mtmcs.models.openai_chat import RequestBody, openai_content
    from mtmcs.protocol.messages import Message

    images = ImageEncoder(lambda image_id: b"\x89PNG\r\n\x1a\n" + image_id.encode())
    messages = (Message("user", "one", "type_a/1"), Message("user", "twelve", "type_a/12"))
    arguments = {"messages": [{"role": m.role, "content": openai_content(m)} for m in messages]}
    body = RequestBody(arguments, images, messages)
    sent = json.loads(body.read())
    assert body.length == len(body.read())
    urls = [m["content"][0]["image_url"]["url"] for m in sent["messages"]]
    assert urls == [images("type_a/1").data_url.decode(), images("type_a/12").data_url.decode()]


def test_run_writes_one_record_per_dialogue_with_its_answers(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    run_benchmark(config(server, tmp_path, "type_b"))
    records = [json.loads(line) for line in (tmp_path / "dialogues.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert len(records) == 4
    unsafe = next(r for r in records if r["id"] == "type_b/000000/unimodal/unsafe")
    assert len(unsafe["replies"]) == 3 and unsafe["judge"]["score"] == 4
    assert [q["kind"] for q in unsafe["questions"]] == ["mcq", "mcq", "tf", "tf"]
    assert all(q["answer"] in ("A", True) for q in unsafe["questions"])
    assert all(q["correct"] == (q["answer"] == q["ground_truth"]) for q in unsafe["questions"])
