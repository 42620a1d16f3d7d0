"""The `mtmcs/mtmcs` inspect task, run by inspect against the loopback test server through its
`openai-api/<service>/<model>` provider, equals `mtmcs run` on the same replies."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalLog, read_eval_log

from content_replies import (
    PASTED_VERDICT,
    call_kind,
    content_key,
    content_reply,
    message_images,
)
from fakeserver import FakeServer, RecordedRequest
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.errors import ConfigError
from mtmcs.interop.inspect_task import mtmcs_task
from mtmcs.scoring.rundir import RunDir

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No connection beyond loopback; tiktoken's cache is an empty directory (a download of
    `o200k_base` would have to connect out, and would land there); inspect logs to tmp."""
    connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise OSError(f"test tried to reach {address[0]}: tests are offline")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    cache = tmp_path / "tiktoken"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("INSPECT_LOG_DIR", str(tmp_path / "inspect-logs"))
    yield cache
    assert list(cache.iterdir()) == [], "tiktoken downloaded an encoding"


SERVICES = itertools.count()


@dataclass(frozen=True)
class Served:
    """The test server as an inspect service: `openai-api/<service>/…` models reach it."""

    server: FakeServer
    service: str

    @property
    def model(self) -> str:
        return f"openai-api/{self.service}/model-under-test"

    @property
    def judge(self) -> str:
        return f"openai-api/{self.service}/judge"


@pytest.fixture
def served(fake_server: Callable[..., FakeServer], monkeypatch: pytest.MonkeyPatch) -> Served:
    """A server answering `content_reply`, named by a service of its own: inspect keeps the
    models it made for the process, so a name reused with another server would still call
    the stopped one."""
    server = fake_server(content_reply)
    service = f"mtmcs{next(SERVICES)}"
    monkeypatch.setenv(f"{service.upper()}_BASE_URL", server.base_url)
    monkeypatch.setenv(f"{service.upper()}_API_KEY", "test-key")
    return Served(server, service)


def inspect_figures(log: EvalLog) -> dict[str, float]:
    assert log.results is not None
    return {key: m.value for s in log.results.scores for key, m in s.metrics.items()}


def run_figures(summary: dict[str, Any]) -> dict[str, float]:
    return {
        f"{split}/{cell}/{name}": stat["value"]
        for split in ("type_a", "type_b")
        for cell, stats in summary.get(split, {}).items()
        for name, stat in stats.items()
        if stat["value"] is not None
    }


def run_ours(server: FakeServer, out: Path, **options: Any) -> dict[str, Any]:
    config = RunConfig(
        model="openai-compatible/model-under-test",
        judge="openai-compatible/judge",
        dataset="sample",
        limit=1,
        out=out,
        base_urls=(server.base_url,),
        judge_base_urls=(server.base_url,),
        max_retries=0,
        settings=RunSettings(max_connections=8, judge_max_connections=4),
        **options,
    )
    return run_benchmark(config).summary


def test_inspect_eval_of_the_task_equals_mtmcs_run_on_the_same_replies(
    served: Served, tmp_path: Path
) -> None:
    server = served.server
    (log,) = inspect_eval(
        "mtmcs/mtmcs",  # found through the inspect_ai entry point
        model=served.model,
        max_retries=0,
        task_args={"dataset": "sample", "judge": served.judge, "limit": 1},
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    inspect_requests = server.requests
    server.clear()
    summary = run_ours(server, tmp_path / "run")
    our_requests = server.requests

    assert log.status == "success", log.error
    assert log.eval.task == "mtmcs/mtmcs"
    # One sample per dialogue: 2 splits x 1 row x 2 modalities x 2 intents.
    records = RunDir(tmp_path / "run").read_dialogues()
    assert log.samples is not None
    assert sorted(str(s.id) for s in log.samples) == sorted(r.id for r in records)
    assert len(records) == 8

    # The same calls with the same content: turns with the model's own history and the image
    # where ours goes, questions, judge calls (masked replies judged again) and decoding.
    assert Counter(map(content_key, inspect_requests)) == Counter(map(content_key, our_requests))
    kinds = Counter(map(call_kind, our_requests))
    pasted = sum(any(PASTED_VERDICT in reply for reply in r.replies) for r in records)
    assert kinds["turn"] == 24 and kinds["mcq"] == 16 and kinds["tf"] == 8
    assert 0 < pasted < 8 and kinds["judge"] == 8 + pasted  # judged again, masked

    ours, theirs = run_figures(summary), inspect_figures(log)
    assert theirs == ours
    # 2 splits x 2 modalities x 6 figures + 2 pooled MCQ figures, less the unscored cells.
    assert len(ours) > 20
    assert any(0 < value < 1 for key, value in ours.items() if "accuracy" in key)

    # Each sample's score holds its dialogue's answers and verdict, as the run recorded them.
    by_id = {r.id: r for r in records}
    for sample in log.samples:
        record = by_id[str(sample.id)]
        score = sample.scores["mtmcs_scorer"] if sample.scores else None
        assert score is not None and isinstance(score.value, dict)
        measure = "safety_awareness" if record.intent == "unsafe" else "helpfulness"
        assert score.value[measure] == record.judge.score
        assert score.metadata is not None
        stored = score.metadata["mtmcs_record"]
        assert [q["answer"] for q in stored["questions"]] == [q.answer for q in record.questions]
        assert stored["replies"] == list(record.replies)


def test_variant_images_give_the_same_figures_and_consistency_as_mtmcs_run(
    served: Served, tmp_path: Path
) -> None:
    server = served.server
    task_args = {"judge": served.judge, "limit": 1, "split": "type_a"}
    (log,) = inspect_eval(
        "mtmcs/mtmcs",
        model=served.model,
        max_retries=0,
        task_args={**task_args, "modality": "multimodal", "variants": True},
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    inspect_requests = server.requests
    server.clear()
    options = {"splits": ("type_a",), "modalities": ("multimodal",), "variants": True}
    summary = run_ours(server, tmp_path / "run", **options)

    assert log.status == "success", log.error
    assert log.samples is not None and len(log.samples) == 8  # 4 images x 2 intents
    assert Counter(map(content_key, inspect_requests)) == Counter(map(content_key, server.requests))
    ours, theirs = run_figures(summary), inspect_figures(log)
    assert theirs == ours
    assert "type_a/multimodal@v3/safe_mcq_accuracy" in ours
    assert "type_a/variant_consistency/mcq_answers" in ours


def test_inspect_eval_command_runs_the_registered_task(served: Served, tmp_path: Path) -> None:
    server = served.server
    logs = tmp_path / "logs"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "inspect_ai", "eval", "mtmcs/mtmcs"),
            *("--model", served.model, "--max-retries", "0", "--log-dir", str(logs)),
            *("-T", "dataset=sample", "-T", f"judge={served.judge}", "-T", "limit=1"),
            *("-T", "split=type_b", "-T", "modality=unimodal", "--display", "none"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = logs.glob("*.eval")
    log = read_eval_log(str(path))
    assert log.status == "success"
    assert log.samples is not None
    assert sorted(str(s.id) for s in log.samples) == [
        "type_b/000000/unimodal/safe",
        "type_b/000000/unimodal/unsafe",
    ]
    kinds = Counter(map(call_kind, server.requests))
    assert kinds["turn"] == 6 and kinds["mcq"] == 4 and kinds["tf"] == 2 and kinds["judge"] >= 2
    assert set(inspect_figures(log)) <= {
        f"type_b/{cell}/{name}"
        for cell in ("unimodal", "overall")
        for name in (
            *("safe_mcq_accuracy", "unsafe_mcq_accuracy", "mcq_accuracy", "tf_accuracy"),
            *("safety_awareness", "helpfulness"),
        )
    }
    assert json.loads(json.dumps(log.eval.task_args))["split"] == "type_b"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"split": "type_c"}, "-T split='type_c'"),
        ({"modality": "multimodal,video"}, "-T modality='multimodal,video'"),
        ({"image_placement": "last"}, "-T image_placement='last'"),
        ({"judge": "baseline/keyword"}, "-T judge=baseline/keyword"),
    ],
)
def test_a_bad_task_argument_is_one_clear_error(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        mtmcs_task(**arguments)


def _blank_third_turn_without_image(request: RecordedRequest) -> str:
    """`content_reply`, except a blank reply to the third turn of a text-only dialogue."""
    messages = request.body["messages"]
    users = sum(m["role"] == "user" for m in messages)
    if call_kind(request) == "turn" and users == 3 and not any(map(message_images, messages)):
        return "  \n"
    return content_reply(request)


def test_an_empty_reply_fails_its_sample_instead_of_being_scored(
    fake_server: Callable[..., FakeServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = fake_server(_blank_third_turn_without_image)
    service = f"mtmcs{next(SERVICES)}"
    monkeypatch.setenv(f"{service.upper()}_BASE_URL", server.base_url)
    monkeypatch.setenv(f"{service.upper()}_API_KEY", "test-key")
    (log,) = inspect_eval(
        mtmcs_task(dataset="sample", judge=f"openai-api/{service}/judge", limit=1),
        model=f"openai-api/{service}/model-under-test",
        max_retries=0,
        fail_on_error=False,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert log.samples is not None
    failed = {str(s.id) for s in log.samples if s.error is not None}
    scored = {str(s.id) for s in log.samples if s.error is None and s.scores}
    assert failed and all("/unimodal/" in sample for sample in failed)
    assert len(failed) == 4 and len(scored) == 4
    assert all("empty completion" in s.error.message for s in log.samples if s.error)
    assert not any("/unimodal/" in key for key in inspect_figures(log))
