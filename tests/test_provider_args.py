"""`-M KEY=VALUE` provider arguments and per-kind `--max-tokens`: sent as given through a real
local server, recorded in the summary, part of each call's store key; mistakes exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from command import invoke
from fakeserver import FakeServer
from test_run_e2e import standard_reply

SMALL = ("--dataset", "sample", "--split", "type_a", "--limit", "1")


def _run(server: FakeServer, out: Path, *extra: str, model: str = "openai-compatible/m") -> Any:
    base = server.anthropic_base_url if model.startswith("anthropic/") else server.base_url
    return invoke(
        "run",
        *SMALL,
        *("--model", model, "--base-url", base),
        *("--judge", "openai-compatible/judge", "--judge-base-url", server.base_url),
        *("--out", str(out)),
        *extra,
        env={"ANTHROPIC_API_KEY": "sk-ant-test-000000000"},
    )


def test_model_arguments_reach_every_model_call_and_no_judge_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    args = ("-M", "top_p=0.5", "-M", 'stop=["###"]', "--model-arg", "note=plain text")
    result = _run(server, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    model_calls = [r for r in server.requests if r.body["model"] == "m"]
    judge_calls = [r for r in server.requests if r.body["model"] == "judge"]
    assert len(model_calls) == 24 and len(judge_calls) == 4
    for request in model_calls:
        assert request.body["top_p"] == 0.5 and request.body["stop"] == ["###"]
        assert request.body["note"] == "plain text"
    assert not any("top_p" in r.body for r in judge_calls)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metadata"]["model_args"] == {
        "note": "plain text",
        "stop": ["###"],
        "top_p": 0.5,
    }

    server.clear()
    assert _run(server, tmp_path, *args).returncode == 0
    assert server.request_count == 0  # the same arguments: every call from the store
    changed = ("-M", "top_p=0.6", "-M", 'stop=["###"]', "-M", "note=plain text")
    assert _run(server, tmp_path, *changed).returncode == 0
    # Other arguments are other calls; the judge sees the same replies: from the store.
    assert {r.body["model"] for r in server.requests} == {"m"}
    assert server.request_count == 24


def test_a_run_without_model_arguments_records_none(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    assert _run(server, tmp_path).returncode == 0
    metadata = json.loads((tmp_path / "summary.json").read_text())["metadata"]
    assert "model_args" not in metadata
    assert not any("top_p" in r.body for r in server.requests)


def test_model_arguments_reach_an_anthropic_model(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = _run(server, tmp_path, "-M", "top_k=5", model="anthropic/claude-test")
    assert result.returncode == 0, result.stderr
    messages = [r for r in server.requests if r.api == "anthropic"]
    assert len(messages) == 24 and all(r.body["top_k"] == 5 for r in messages)


def test_max_tokens_per_kind_overrides_only_that_kind(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = _run(server, tmp_path, "--max-tokens", "turn=50", "--max-tokens", "mcq=7")
    assert result.returncode == 0, result.stderr
    limits = {
        (r.call_kind, r.body["max_tokens"]) for r in server.requests if r.body["model"] == "m"
    }
    assert limits == {("turn", 50), ("mcq", 7), ("tf", 32)}  # tf keeps the authors' 32
    decoding = json.loads((tmp_path / "summary.json").read_text())["metadata"]["decoding"]
    assert [decoding[k]["max_tokens"] for k in ("turn", "mcq", "tf", "judge")] == [50, 7, 32, 128]


def test_one_limit_for_every_kind_and_a_kind_of_its_own(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    assert _run(server, tmp_path, "--max-tokens", "100", "--max-tokens", "tf=3").returncode == 0
    limits = {
        (r.call_kind, r.body["max_tokens"]) for r in server.requests if r.body["model"] == "m"
    }
    assert limits == {("turn", 100), ("mcq", 100), ("tf", 3)}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("-M", "temperature=0.3"), "-M temperature: set by the run; use --temperature"),
        (("-M", "model=other"), "use --model"),
        (("-M", "top_p"), "expected KEY=VALUE"),
        (("--max-tokens", "judge=5"), "the kind is one of turn, mcq, tf"),
        (("--max-tokens", "turn=0"), "expected N or KIND=N"),
        (("--max-tokens", "lots"), "expected N or KIND=N"),
    ],
)
def test_mistakes_are_one_line_exit_2_before_any_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    server = fake_server(standard_reply)
    result = _run(server, tmp_path, *extra)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert server.request_count == 0


def test_model_arguments_are_refused_for_a_local_model(tmp_path: Path) -> None:
    result = invoke(
        "run",
        *SMALL,
        *("--model", "baseline/random", "--judge", "baseline/keyword", "-M", "top_p=0.5"),
        *("--out", str(tmp_path)),
    )
    assert result.returncode == 2 and "not one" in result.stderr
