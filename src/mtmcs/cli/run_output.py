"""What `mtmcs run` prints: the plan of a dry run, and the metrics table and call counts of
a finished run (read back through its typed run files)."""

from __future__ import annotations

from rich.table import Table

from mtmcs.cli.console import console
from mtmcs.engine.run import RunConfig, RunPlan, planned_calls, run_connections
from mtmcs.scoring.metrics import CELL_METRICS, Stat
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import Summary


def _format(stat: Stat | None, percent: bool) -> str:
    """A figure, its 95% interval below it, how many items were unparsed (a judge mean: how
    many dialogues went unscored, and their share) or failed, then the authors' scripts'
    figure over the same replies and how many answers they dropped."""
    if stat is None:
        return "–"  # a metric registered after the run was written
    value = stat.value
    scale, digits = (100, 1) if percent else (1, 2)
    lines = ["–"]
    if value is not None:
        lines = [f"{scale * value:.{digits}f}"]
        if stat.ci95 is not None:
            lo, hi = stat.ci95
            lines.append(f"[{scale * lo:.{digits}f}–{scale * hi:.{digits}f}]")
    if stat.unparseable and percent:
        lines.append(f"{stat.unparseable} unparsed")
    elif stat.unparseable:
        lines.append(f"{stat.unparseable} unscored ({stat.unparseable / stat.n:.0%})")
    if stat.errors:
        lines.append(f"{stat.errors} failed")
    read = stat.paper_compatible_n
    if read is None:
        return "\n".join(lines)  # no authors' figure (variant consistency, old summaries)
    authors = stat.paper_compatible
    lines.append("authors' " + ("–" if authors is None else f"{scale * authors:.2f}"))
    if stat.n > read:
        lines.append(f"({stat.n - read} dropped)")
    return "\n".join(lines)


def immune_label(summary: Summary) -> str:
    """What an Immune run's title says of it: its mode, its reward model, and a warning when
    that was the judge ("" for other runs)."""
    immune = summary.metadata.immune
    if immune is None:
        return ""
    mode = "reward-guided decoding" if immune.mode == "guided" else "best-of-N approximation"
    label = f"; immune: {mode}, reward model {immune.reward_model}"
    if immune.reward_is_judge:
        label += " — THE JUDGE AS REWARD MODEL (it picked the replies it grades: biased upward)"
    return label


def metrics_table(summary: Summary) -> Table:
    """The summary's figures, one row per split × modality, a column per registered metric
    (`mtmcs.scoring.metrics.CELL_METRICS`)."""
    meta = summary.metadata
    table = Table(
        title=f"model {meta.model}; judge {meta.judge} ({meta.judge_kind}){immune_label(summary)}",
        caption=(
            "authors' = the same replies read by the authors' scripts: first letter A–G "
            "anywhere is the answer (a refusal reads as 'A'), unreadable answers dropped from "
            "the denominator, judge score falls back to the first digit 1–5; ours: strict "
            "reading, unparseable = wrong. The paper's published figures are comparable with "
            "authors', not with ours. \\[lo–hi]: 95% interval clustered by scenario row "
            "(summary.json: ci95_method; ci95_unclustered beside it)."
        ),
        caption_justify="left",
        pad_edge=False,
    )
    table.add_column("split\nmodality", overflow="fold")
    for entry in CELL_METRICS:
        table.add_column(entry.label, overflow="fold")
    for split in meta.splits:
        for name, cell in summary.cells(split).items():
            if name in ("overall", "variant_consistency"):
                continue  # not modality cells
            figures = (_format(cell.get(m.name), m.percent) for m in CELL_METRICS)
            table.add_row(f"{split}\n{name}", *figures)
    return table


def print_plan(plan: RunPlan, config: RunConfig, latency: float) -> None:
    """The `--dry-run` report: calls by role (model, judge, a defence's reward or selector)
    per split, critical path, time estimate."""
    defended = f" under {config.defense}" if config.defense else ""
    table = Table(
        title=f"plan: {config.model}{defended} judged by {config.judge} on {plan.benchmark.name}"
    )
    for header in ("split", "rows", "dialogues", *(f"{role} calls" for role in plan.planned)):
        table.add_column(header, justify="right")
    for split in config.splits:
        dialogues = [d for d in plan.dialogues if d.split == split]
        planned = planned_calls(dialogues, config)
        table.add_row(
            split,
            str(sum(r.split == split for r in plan.rows)),
            str(len(dialogues)),
            *(str(planned.get(role, 0)) for role in plan.planned),
        )
    console.print(table)
    total = sum(plan.planned.values())
    connections = run_connections(config)
    estimate = plan.estimate_s(latency, connections)
    roles = " + ".join(f"{count} {role}" for role, count in plan.planned.items())
    console.print(
        f"calls: {roles} = {total}\n"
        f"critical path: {plan.critical_path} calls in sequence (R1, R2, R3, then the "
        "questions and the judge call side by side; each answer as many as its defence makes "
        "in a row)\n"
        f"estimate at {latency:g} s per call with "
        + " and ".join(f"{n} {role}" for role, n in connections.items())
        + f" connections: at least {estimate:,.0f} s "
        f"(one call at a time: {total * latency:,.0f} s)",
        soft_wrap=True,
    )


def print_summary(run_dir: RunDir, *, up_to_date: bool = False) -> None:
    """The run's metrics table, variant consistency, call counts and where the summary is
    (`up_to_date`: the counts are those of the finished run, none made now)."""
    summary = run_dir.read_summary()  # as written, through the typed run files
    console.print(metrics_table(summary))
    for split_name in summary.metadata.splits:
        if consistency := summary.cells(split_name).get("variant_consistency"):
            judged, answers = consistency["judged_outcome"], consistency["mcq_answers"]
            console.print(
                f"{split_name} variant consistency: judged outcome "
                f"{_format(judged, True).splitlines()[0]}% of {judged.n} pairs, MCQ answers "
                f"{_format(answers, True).splitlines()[0]}% of {answers.n} questions",
                soft_wrap=True,
            )
    roles = "; ".join(
        f"{role} {calls.made} made, {calls.cached} from the store, {calls.failed} failed"
        + (f", {calls.unfinished} unfinished" if calls.unfinished else "")
        for role, calls in summary.metadata.calls.items()
    )
    when = " when it ran (none now)" if up_to_date else ""
    console.print(
        f"calls{when}: {roles}; wall {summary.metadata.wall_s or 0:.1f} s",
        soft_wrap=True,
    )
    console.print(f"summary: {run_dir.summary_path}", soft_wrap=True)
