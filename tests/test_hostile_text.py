"""Hostile text at the boundary: lone surrogates in replies, verdicts and data; escape
sequences in a server's error messages. Nothing crashes, nothing reaches a terminal raw."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from command import invoke
from datagen import (
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    make_split,
    write_jsonl_dir,
)
from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.engine.finished import FINISHED_FILE
from mtmcs.engine.run import run_benchmark
from mtmcs.protocol.text import normalised, printable
from test_run_e2e import config, kind_of, standard_reply

SURROGATE_TURN = '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "bad \\ud800 reply"}, "finish_reason": "stop"}]}'  # noqa: E501
SURROGATE_VERDICT = '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "{\\"score\\": 2, \\"explanation\\": \\"x \\udc00 y\\"}"}, "finish_reason": "stop"}]}'  # noqa: E501


def test_normalised_replaces_and_counts_and_printable_escapes_controls() -> None:
    assert normalised("a\ud800b\udfff") == ("a\ufffdb\ufffd", 2)
    assert normalised("fine ✓") == ("fine ✓", 0)
    shown = printable("\x1b[2J\x1b]0;title\x07ok\n\tend\x9b")
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown == "\\x1b[2J\\x1b]0;title\\x07ok\n\tend\\x9b"


def test_reply_and_verdict_with_a_lone_surrogate_complete_the_run_and_its_rerun(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    def responder(request: RecordedRequest) -> str | Reply:
        kind = kind_of(request)
        if kind == "turn":
            return Reply(raw_body=SURROGATE_TURN)
        if kind not in ("mcq", "tf"):
            return Reply(raw_body=SURROGATE_VERDICT)
        return standard_reply(request)

    server = fake_server(responder)
    first = run_benchmark(config(server, tmp_path))
    assert first.complete
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    calls = summary["metadata"]["calls"]
    assert calls["model"]["replaced_code_points"] == 12  # one per turn reply
    assert calls["judge"]["replaced_code_points"] == 4  # one per verdict
    assert summary["type_a"]["unimodal"]["safety_awareness"]["value"] == 2.0
    dialogues = (tmp_path / "dialogues.jsonl").read_text(encoding="utf-8")
    assert "bad \ufffd reply" in dialogues

    (tmp_path / FINISHED_FILE).unlink()  # replayed: every stored answer read back
    again = run_benchmark(config(server, tmp_path))
    assert again.complete
    assert again.summary["metadata"]["calls"]["model"]["cached"] == 24


def _surrogate_dataset(tmp_path: Path) -> Path:
    overrides = {0: {"multimodal_dialogue.r2": "turn with \ud800 in it"}}
    return write_jsonl_dir(tmp_path / "data", {"type_a": make_split("type_a", 1, overrides)})


def test_validate_names_a_field_with_a_lone_surrogate(tmp_path: Path) -> None:
    directory = _surrogate_dataset(tmp_path)
    result = invoke("data", "validate", "--dataset", str(directory), "--split", "type_a")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert str(directory / "type_a.jsonl") in text.replace(" ", "") or "type_a.jsonl" in text
    assert "row 0" in text and "multimodal_dialogue.r2" in text
    assert "invalid code point" in text


def test_run_refuses_a_dataset_with_a_lone_surrogate(tmp_path: Path) -> None:
    directory = _surrogate_dataset(tmp_path)
    result = invoke(
        "run",
        "--dataset",
        str(directory),
        "--split",
        "type_a",
        "--model",
        "openai-compatible/m",
        "--judge",
        "baseline/keyword",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert "row 0" in text and "multimodal_dialogue.r2" in text
    assert "invalid code point" in text


def test_an_error_body_with_escape_sequences_is_printed_escaped(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07 no such model \x9b"

    def responder(request: RecordedRequest) -> str | Reply:
        if kind_of(request) == "tf":
            return Reply(status=500, error_message=hostile)
        return standard_reply(request)

    server = fake_server(responder)
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai-compatible/m",
        "--judge",
        "openai-compatible/judge",
        "--base-url",
        server.base_url,
        "--judge-base-url",
        server.base_url,
        "--limit",
        "1",
        "--out",
        str(tmp_path),
        "--max-retries",
        "0",
    )
    assert "Traceback" not in result.stderr
    assert "\\x1b" in result.stderr, result.stderr
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\x9b" not in result.stderr
