"""`mtmcs rejudge`: a finished run judged by another judge into a new run directory, through
real HTTP: judge calls only (counted at the server by call kind), resumable, the new summary
saying what it was rejudged from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from command import invoke
from fakeserver import FakeServer
from mtmcs.engine.rejudge import RejudgeConfig, rejudge
from mtmcs.engine.scheduler import RunSettings
from mtmcs.scoring.rundir import RunDir
from scripted_judges import JUDGE_A, JUDGE_B, judged_run, kinds, reply


def records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "dialogues.jsonl").open() if line.strip()]


@pytest.fixture(scope="module")
def server() -> Any:
    with FakeServer(reply) as running:
        yield running


@pytest.fixture(scope="module")
def source(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return judged_run(server, tmp_path_factory.mktemp("rejudge") / "judge-a", limit=3)


def config(server: FakeServer, source: Path, out: Path) -> RejudgeConfig:
    return RejudgeConfig(
        source=source,
        out=out,
        judge=JUDGE_B,
        judge_base_urls=(server.base_url,),
        max_retries=0,
        settings=RunSettings(judge_max_connections=4),
    )


def test_rejudging_calls_the_new_judge_only_and_resumes_with_no_call(
    server: FakeServer, source: Path, tmp_path: Path
) -> None:
    dialogues = records(source)
    server.clear()
    result = rejudge(config(server, source, tmp_path / "judge-b"))
    assert kinds(server) == {"judge:judge-b": len(dialogues)}  # 0 model calls, 1 per dialogue
    calls = result.summary.metadata.calls
    assert calls["model"].made == calls["model"].planned == 0
    assert (calls["judge"].planned, calls["judge"].made) == (len(dialogues), len(dialogues))

    server.clear()
    again = rejudge(config(server, source, tmp_path / "judge-b"))
    assert server.requests == []
    assert again.summary.metadata.calls["judge"].cached == len(dialogues)


def test_the_rejudged_run_keeps_the_answers_and_records_its_source(
    server: FakeServer, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "judge-b"
    rejudge(config(server, source, out))
    before, after = RunDir(source).read_summary(), RunDir(out).read_summary()
    meta = after.metadata
    assert (meta.judge, meta.model) == (JUDGE_B, before.metadata.model)
    assert meta.rejudged_from is not None
    assert meta.rejudged_from.run == str(source)
    assert meta.rejudged_from.judge == JUDGE_A
    assert meta.rejudged_from.dialogues_sha256 == before.dialogues_sha256
    old, new = records(source), records(out)
    assert [(r["id"], r["replies"], r["questions"]) for r in old] == [
        (r["id"], r["replies"], r["questions"]) for r in new
    ]
    assert all("judge-b" in r["judge"]["explanation"] for r in new)
    for split in ("type_a", "type_b"):
        for cell in ("multimodal", "unimodal"):
            for name in ("safe_mcq_accuracy", "unsafe_mcq_accuracy", "tf_accuracy"):
                assert after.stat(split, cell, name) == before.stat(split, cell, name)
            scores = [
                r["judge"]["score"]
                for r in new
                if (r["split"], r["modality"], r["intent"]) == (split, cell, "safe")
            ]
            helpfulness = after.stat(split, cell, "helpfulness")
            assert helpfulness is not None and helpfulness.value == pytest.approx(mean(scores))


def test_the_command_rejudges_and_refuses_to_overwrite_its_source(
    server: FakeServer, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    args = ("--judge", JUDGE_B, "--judge-base-url", server.base_url, "--max-retries", "0")
    done = invoke("rejudge", str(source), "--out", str(out), *args)
    assert done.returncode == 0, done.stderr
    assert "judge openai-compatible/judge-b" in done.stdout and "rejudged from" in done.stdout
    same = invoke("rejudge", str(source), "--out", str(source), *args)
    assert same.returncode == 2
    assert "is the source run" in same.stderr


def test_a_record_without_three_turns_is_refused_naming_it(
    server: FakeServer, source: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("summary.json", "dialogues.jsonl"):
        (damaged / name).write_bytes((source / name).read_bytes())
    lines = records(damaged)
    lines[1]["turns"] = lines[1]["turns"][:2]
    text = "".join(json.dumps(r) + "\n" for r in lines)
    (damaged / "dialogues.jsonl").write_text(text)
    summary = json.loads((damaged / "summary.json").read_text())  # stamped as written together
    summary["dialogues_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (damaged / "summary.json").write_text(json.dumps(summary))
    done = invoke("rejudge", str(damaged), "--out", str(tmp_path / "out"), "--judge", JUDGE_B)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "turns" in done.stderr and lines[1]["id"] in done.stderr
