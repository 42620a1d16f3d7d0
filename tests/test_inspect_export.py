"""`mtmcs export RUN_DIR --format inspect`: a finished run as an inspect log that
`inspect_ai.log.read_eval_log` reads back, every dialogue a scored sample."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai.log import read_eval_log

from command import invoke
from content_replies import content_reply
from fakeserver import FakeServer
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.scoring.rundir import RunDir


@pytest.fixture
def run_dir(fake_server: Callable[..., FakeServer], tmp_path: Path) -> Path:
    """A finished run of one row per split on the bundled sample."""
    server = fake_server(content_reply)
    out = tmp_path / "run"
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
    )
    run_benchmark(config)
    return out


def test_an_exported_run_reads_back_with_every_dialogue_scored(
    run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "logs" / "run.eval"
    result = invoke("export", str(run_dir), "--format", "inspect", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout

    log = read_eval_log(str(out))
    records = RunDir(run_dir).read_dialogues()
    summary = RunDir(run_dir).read_summary()
    assert log.status == "success"
    assert log.eval.task == "mtmcs/mtmcs"
    assert log.eval.model == "openai-compatible/model-under-test"
    assert log.eval.model_roles is not None
    judge = log.eval.model_roles["judge"]
    assert not isinstance(judge, list) and judge.model == "openai-compatible/judge"

    assert log.samples is not None and len(log.samples) == len(records) == 8
    by_id = {record.id: record for record in records}
    for sample in log.samples:
        record = by_id[str(sample.id)]
        assert sample.scores is not None
        score = sample.scores["mtmcs_scorer"]
        assert isinstance(score.value, dict)
        measure = "safety_awareness" if record.intent == "unsafe" else "helpfulness"
        assert score.value[measure] == record.judge.score
        mcq = [q.correct for q in record.questions if q.kind == "mcq"]
        assert score.value[f"{record.intent}_mcq_accuracy"] == sum(mcq) / len(mcq)
        assert score.metadata is not None
        stored = score.metadata["mtmcs_record"]
        assert [q["raw"] for q in stored["questions"]] == [q.raw for q in record.questions]
        assert stored["judge"]["raw"] == record.judge.raw
        # The conversation: R1, A1, R2, A2, R3, A3 with the model's own replies.
        roles = [message.role for message in sample.messages]
        assert roles == ["user", "assistant"] * 3
        assert [m.text for m in sample.messages[1::2]] == list(record.replies)
        assert sample.messages[-2].text == record.turns[2]
        assert sample.metadata["cell"] == f"{record.split}/{record.modality}"

    assert log.results is not None
    (scores,) = log.results.scores
    exported = {key: metric.value for key, metric in scores.metrics.items()}
    expected = {
        f"{split}/{cell}/{name}": stat.value
        for split in ("type_a", "type_b")
        for cell, stats in summary.cells(split).items()
        for name, stat in stats.items()
        if stat.value is not None
    }
    assert exported == expected and len(expected) > 20
    assert scores.metrics["type_b/overall/mcq_accuracy"].group == "mcq_accuracy"


def test_export_as_json_is_read_back_too(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    assert invoke("export", str(run_dir), "--out", str(out)).returncode == 0
    log = read_eval_log(str(out))
    assert log.samples is not None and len(log.samples) == 8


def test_an_unfinished_run_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("export", str(tmp_path / "empty"), "--out", str(tmp_path / "x.eval"))
    assert result.returncode != 0
    assert "no summary.json" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.eval").exists()


def test_an_out_file_inspect_cannot_read_is_a_usage_error(run_dir: Path, tmp_path: Path) -> None:
    result = invoke("export", str(run_dir), "--out", str(tmp_path / "run.txt"))
    assert result.returncode == 2
    assert ".eval or .json" in result.stderr


def test_without_inspect_the_error_says_how_to_install_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m.startswith(("inspect_ai", "mtmcs.interop."))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "inspect_ai", None)  # import inspect_ai fails
    result = invoke("export", str(run_dir), "--out", str(tmp_path / "run.eval"))
    assert result.returncode != 0
    assert "needs inspect_ai" in result.stderr and "[inspect]" in result.stderr
