"""A finished `mtmcs run` as an inspect_ai log, for `inspect view` and inspect's log tools.

One sample per dialogue (`dialogues.jsonl`): the conversation as messages (the user turns and
the model's replies; images are not kept in a run directory, so a multimodal dialogue's first
message says which image it showed), the score the inspect task gives a dialogue (the questions'
answers and the judge's verdict in its metadata), and the run's own figures (`summary.json`)
as the log's metrics, named as the task names them. The model under test is the log's model,
the judge its `judge` model role. Run files are read through `mtmcs.scoring.rundir.RunDir`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.model import ChatMessage, ModelConfig, ModelOutput

from mtmcs.interop.inspect_messages import inspect_messages
from mtmcs.interop.inspect_scores import dialogue_score, sample_metadata
from mtmcs.interop.outcomes import flat_figures
from mtmcs.protocol.messages import Message
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import Cells, DialogueRecord, Summary

TASK = "mtmcs/mtmcs"
SCORER = "mtmcs_scorer"
"""The task's and its scorer's names, as the inspect task's logs carry them."""


def conversation(record: DialogueRecord) -> list[ChatMessage]:
    """The dialogue's user turns and the replies the model gave (as far as it got)."""
    messages: list[Message] = []
    for index, turn in enumerate(record.turns):
        text = turn
        if index == 0 and record.modality == "multimodal":
            variant = f", variant image {record.image_variant}" if record.image_variant else ""
            text = f"[image of {record.split} row {record.row_id}{variant}]\n{turn}"
        messages.append(Message("user", text))
        if index < len(record.replies):
            messages.append(Message("assistant", record.replies[index]))
    return inspect_messages(messages)


def eval_sample(record: DialogueRecord, model: str) -> EvalSample:
    """One dialogue of the run as an inspect sample, scored."""
    reply = record.replies[-1] if record.replies else ""
    return EvalSample(
        id=record.id,
        epoch=1,
        input=record.turns[0],
        target=[str(q.ground_truth) for q in record.questions],
        messages=conversation(record),
        output=ModelOutput.from_content(model=model, content=reply),
        scores={SCORER: dialogue_score(record)},
        metadata=sample_metadata(record),
    )


def eval_results(summary: Summary, samples: int) -> EvalResults:
    """The run's figures (`summary.json`) as the task's metrics: `split/cell/metric` in the
    group of the metric's name."""
    figures: dict[str, Cells] = {split: summary.cells(split) for split in summary.metadata.splits}
    metrics = {
        key: EvalMetric(name=key, group=name, value=value)
        for name, key, value in flat_figures(figures)
    }
    score = EvalScore(name=SCORER, scorer=SCORER, metrics=metrics, scored_samples=samples)
    return EvalResults(total_samples=samples, completed_samples=samples, scores=[score])


def run_log(run_dir: Path) -> EvalLog:
    """A finished run as an inspect log (`ConfigError` / `DataError` for a run that is not
    finished or whose files do not read)."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    records = run.read_dialogues()
    metadata = summary.metadata
    started = metadata.started_at or datetime.now(UTC).isoformat()
    finished = started
    if metadata.started_at is not None and metadata.wall_s is not None:
        start = datetime.fromisoformat(metadata.started_at)
        finished = datetime.fromtimestamp(start.timestamp() + metadata.wall_s, UTC).isoformat()
    spec = EvalSpec(
        created=started,
        task=TASK,
        dataset=EvalDataset(
            name=metadata.dataset,
            samples=len(records),
            sample_ids=[record.id for record in records],
        ),
        model=metadata.model,
        model_roles={"judge": ModelConfig(model=metadata.judge)},
        config=EvalConfig(),
        task_args={
            "dataset": metadata.dataset,
            "judge": metadata.judge,
            "split": list(metadata.splits),
            "modality": list(metadata.modalities),
            "variants": metadata.variants,
            "limit": metadata.limit,
        },
        metadata={"mtmcs_run": str(run_dir), "mtmcs_summary": summary.model_dump(mode="json")},
    )
    return EvalLog(
        eval=spec,
        status="success",
        results=eval_results(summary, len(records)),
        stats=EvalStats(started_at=started, completed_at=finished),
        samples=[eval_sample(record, metadata.model) for record in records],
    )


def export_run(run_dir: Path, out: Path) -> EvalLog:
    """Write the run in `run_dir` as an inspect log to `out` (`.eval` or `.json`)."""
    log = run_log(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_eval_log(log, out)
    return log
