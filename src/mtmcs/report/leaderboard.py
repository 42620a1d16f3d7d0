"""Leaderboard: run summaries → rows → Markdown, CSV and LaTeX (booktabs).

Pure functions: reading a `summary.json` is the only I/O besides the `render_*` strings.
Layout follows the paper: per type (split) and modality, MCQ safe / unsafe / overall %,
TF %, safety-awareness and helpfulness (1–5), each with its n and 95% interval. Every run
is shown in two readings of the same stored replies: ours (strict) and the authors' scripts'
(`paper_compatible` in the summary), which is how the paper's numbers were computed.
Published figures are kept in rows of their own, marked `published` and "modality not
stated", in the authors' reading. Runs of the `baseline/…` policies are marked as reference
policies; runs with variant images get a row per variant cell (`multimodal@v1`, …) after
their base cells.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtmcs.errors import ConfigError
from mtmcs.files import csv_row
from mtmcs.models.baseline import REFUSAL
from mtmcs.protocol.authors import authors_accuracy, authors_mark
from mtmcs.scoring.metrics import CELL_METRICS, Stat
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import RunMetadata, Summary

SPLIT_LABELS = {"type_a": "type A", "type_b": "type B"}
MODALITY_ORDER = ("multimodal", "unimodal")
PUBLISHED_MODALITY = "published (modality not stated)"
EXPECTED_NOTE = (
    "Rows marked [expected] are not measured: they are what answering the intent questions "
    "uniformly at random, or refusing them, scores by construction on the same questions. "
    "The authors' scripts read a refusal with the letter A in it (\"I'm sorry, I can't "
    'help") as the answer A and no refusal as True/False: refusing scores the share of MCQs '
    "whose answer is A, and every TF item is dropped."
)
UNSCORED_NOTE = (
    "A judge mean followed by (k unscored, s%) leaves out k of its n judged dialogues, whose "
    "verdict was unusable; none is left out where it is not shown."
)
OURS = "ours"
AUTHORS = "authors' scripts"
READING_NOTE = (
    f"Each run is shown twice, read two ways from the same stored replies. '{OURS}': strict "
    "parsing, an unparseable answer counts as wrong, an unscored judge reply leaves the mean. "
    f"'{AUTHORS}': as the authors' published scripts read them: the first letter A–G "
    "anywhere is the answer (a refusal reads as 'A'), TF only when the reply starts with "
    "true/false, unreadable answers are dropped from the denominator (n = answers read), the "
    "judge score falls back to the first digit 1–5 in the reply. The paper's published "
    f"figures were computed by the authors' scripts: compare them with the '{AUTHORS}' rows, "
    "not with ours."
)
PUBLISHED_NOTE = (
    "Published in the paper (Table 2); not measured here; modality not stated. The paper's "
    f"figures were computed by the authors' scripts: comparable with the '{AUTHORS}' rows, "
    "not with ours."
)


@dataclass(frozen=True, slots=True)
class Column:
    """One figure column: its key (in a summary cell or a breakdown) and how to show it."""

    key: str
    label: str
    percent: bool
    judge: bool = False  # a mean judge score: shown with its unscored dialogues


JUDGE_AS_REWARD = "[judge as reward model]"
"""Marks an Immune run that used the judge as its reward model (`--allow-judge-reward`)."""

COLUMNS = tuple(Column(m.name, m.label, m.percent, m.source == "judge") for m in CELL_METRICS)
"""The leaderboard's metric columns: the registry's (`mtmcs.scoring.metrics.CELL_METRICS`)."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One displayed figure: value (already in % for accuracies), 95% interval and n.

    `dropped`: items left out of `n` (the authors' scripts drop answers they cannot read);
    `unscored`: of a judge mean, the judged dialogues of `n` without a usable verdict;
    `lo_unclustered`, `hi_unclustered`: the interval taking items as independent, beside the
    clustered `lo`, `hi` (as `Stat.ci95_unclustered`; `breakdowns.csv` writes it).
    """

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int | None = None
    dropped: int | None = None
    unscored: int | None = None
    lo_unclustered: float | None = None
    hi_unclustered: float | None = None

    @property
    def unscored_share(self) -> float | None:
        """The unscored dialogues' share of `n` in %, when counted and `n` > 0."""
        if self.unscored is None or not self.n:
            return None
        return 100.0 * self.unscored / self.n


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run directory and its checked `summary.json`.

    `name` is unique among the runs of a report (the directory name, with its parents when
    names repeat); `label` is what every table and plot calls the run (see `run_labels`).
    """

    path: Path
    name: str
    summary: Summary
    alias: str = ""  # the label given by `load_runs`; the model when empty

    @property
    def label(self) -> str:
        """The run's one label in tables and plots."""
        return self.alias or self.model

    @property
    def metadata(self) -> RunMetadata:
        return self.summary.metadata

    @property
    def model(self) -> str:
        """The model, with its defence when it ran behind one (its own leaderboard row); an
        Immune run whose reward model was the judge says so (its scores are biased upward)."""
        meta = self.metadata
        model = f"{meta.model} + {meta.defense}" if meta.defense else meta.model
        if meta.immune is not None and meta.immune.reward_is_judge:
            model += f" {JUDGE_AS_REWARD}"
        return model

    @property
    def judge(self) -> str:
        return self.metadata.judge

    @property
    def judge_kind(self) -> str:
        return self.metadata.judge_kind

    @property
    def heuristic(self) -> bool:
        return self.metadata.heuristic_judge


@dataclass(frozen=True, slots=True)
class LeaderRow:
    """A run (or a published source) on one split × modality: `figures` in our reading and
    `authors` in the authors' scripts' (published rows have only the latter)."""

    source: str  # "measured" or "published"
    run: str
    model: str
    judge: str
    judge_kind: str
    marker: str  # "heuristic judge", "published" or ""
    split: str
    modality: str
    figures: dict[str, Figure] = field(default_factory=dict)
    authors: dict[str, Figure] = field(default_factory=dict)
    label: str = ""  # the run's label (`RunSummary.label`) when it is not the model
    items: int | None = None  # dialogues the row covers (measured rows)
    other_items: str = ""  # the runs whose items this row differs from (see report.items)

    @property
    def readings(self) -> tuple[str, ...]:
        """The readings it is shown in: published figures exist in the authors' only."""
        return (AUTHORS,) if self.source == "published" else (OURS, AUTHORS)


# Paper, Table 2 (protocol.md §3): GPT-5.2; the modality is not stated in our sources.
PUBLISHED: tuple[tuple[str, str, dict[str, float]], ...] = (
    (
        "GPT-5.2",
        "type_a",
        {"mcq_accuracy": 83.66, "safety_awareness": 3.40, "helpfulness": 3.82},
    ),
    (
        "GPT-5.2",
        "type_b",
        {"mcq_accuracy": 90.54, "safety_awareness": 4.50, "helpfulness": 4.15},
    ),
)


def load_summary(run_dir: Path) -> Summary:
    """The checked `summary.json` of a run directory (see `RunDir.read_summary`)."""
    return RunDir(run_dir).read_summary()


def run_names(run_dirs: Sequence[Path]) -> list[str]:
    """A unique name per directory: its name, with as many parents as it takes to tell
    directories of the same name apart (`qwen/none`, `llava/none`), else numbered."""
    parts = [run_dir.resolve().parts for run_dir in run_dirs]
    depth = [1] * len(parts)
    while True:
        names = ["/".join(p[-d:]) or str(r) for p, d, r in zip(parts, depth, run_dirs, strict=True)]
        clashes = [i for i, name in enumerate(names) if names.count(name) > 1]
        grow = [i for i in clashes if depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: set[str] = set()
    for i, base in enumerate(names):
        name, index = base, 2
        while name in seen:
            name, index = f"{base}-{index}", index + 1
        seen.add(name)
        names[i] = name
    return names


def run_labels(runs: Sequence[RunSummary]) -> list[str]:
    """One label per run for every table and plot: the model (with its defence), and the
    run's name after it when another run has the same model and defence."""
    models = [run.model for run in runs]
    return [
        run.model if models.count(run.model) == 1 else f"{run.model} ({run.name})" for run in runs
    ]


def load_runs(run_dirs: Sequence[Path]) -> list[RunSummary]:
    """Every run's summary, named (`run_names`) and labelled (`run_labels`)."""
    if not run_dirs:
        raise ConfigError("no run directory given")
    names = run_names(run_dirs)
    runs = [
        RunSummary(run_dir, name, load_summary(run_dir))
        for run_dir, name in zip(run_dirs, names, strict=True)
    ]
    return [replace(run, alias=label) for run, label in zip(runs, run_labels(runs), strict=True)]


def figure(stat: Stat | None, percent: bool, judge: bool = False) -> Figure:
    """A summary figure as displayed (accuracies scaled to %); missing when absent. A judge
    mean carries its unscored dialogues (`Stat.unparseable`: judged, no usable verdict)."""
    if stat is None:
        return Figure(None)
    scale = 100.0 if percent else 1.0
    value, ci, plain = stat.value, stat.ci95, stat.ci95_unclustered
    lo, hi = (ci[0] * scale, ci[1] * scale) if ci else (None, None)
    plain_lo, plain_hi = (plain[0] * scale, plain[1] * scale) if plain else (None, None)
    unscored = stat.unparseable if judge else None
    return Figure(
        None if value is None else value * scale,
        lo,
        hi,
        stat.n,
        unscored=unscored,
        lo_unclustered=plain_lo,
        hi_unclustered=plain_hi,
    )


def authors_figure(stat: Stat | None, percent: bool) -> Figure:
    """The authors' scripts' figure of a summary Stat: value, answers read, answers dropped.

    Summaries written before `paper_compatible_n` existed held another figure under
    `paper_compatible` (our strict parser, their denominator): shown as missing.
    """
    if stat is None or stat.paper_compatible_n is None:
        return Figure(None)
    read, value = stat.paper_compatible_n, stat.paper_compatible
    scale = 100.0 if percent else 1.0
    return Figure(None if value is None else value * scale, n=read, dropped=stat.n - read)


def run_rows(run: RunSummary) -> list[LeaderRow]:
    """One row per split × modality of a measured run."""
    meta = run.metadata
    rows = []
    for split in meta.splits:
        cells = run.summary.cells(split)
        modalities = [m for m in MODALITY_ORDER if m in meta.modalities]
        variants = sorted(cell for cell in cells if "@" in cell)
        for modality in (*modalities, *variants):
            cell = cells[modality]
            rows.append(
                LeaderRow(
                    source="measured",
                    run=run.name,
                    model=run.model,
                    judge=run.judge,
                    judge_kind=run.judge_kind,
                    marker="heuristic judge" if run.heuristic else "",
                    split=split,
                    modality=modality,
                    figures={c.key: figure(cell.get(c.key), c.percent, c.judge) for c in COLUMNS},
                    authors={c.key: authors_figure(cell.get(c.key), c.percent) for c in COLUMNS},
                    label=run.label,
                )
            )
    return rows


def published_rows() -> list[LeaderRow]:
    """The paper's published figures, never mixed with measured rows."""
    return [
        LeaderRow(
            source="published",
            run="paper (Table 2)",
            model=model,
            judge="GPT-5-mini (authors)",
            judge_kind="LLM judge",
            marker="published",
            split=split,
            modality=PUBLISHED_MODALITY,
            figures={c.key: Figure(None) for c in COLUMNS},
            authors={c.key: Figure(values.get(c.key)) for c in COLUMNS},
        )
        for model, split, values in PUBLISHED
    ]


EXPECTED_POLICIES = (
    ("chance", "chance (uniform random answers)"),
    ("refuse", "refusing every question"),
)


def expected_rows(records: Iterable[Mapping[str, Any]]) -> list[LeaderRow]:
    """What two policies score on the intent questions by construction, per split × modality.

    Chance answers uniformly at random: 1/options per MCQ, 1/2 per TF (the expectation, no
    interval), in either reading. Refusing (`baseline/refuse`'s reply) makes every answer
    unparseable, hence wrong: 0 %; the authors' scripts read that refusal as the MCQ answer
    "A" and cannot read it as True/False, so they score it the share of MCQs whose answer is
    A and drop every TF item. The questions are taken once each (by id) from the runs'
    dialogue records, base images only; judge figures have no value by construction.
    """
    questions_of: dict[tuple[str, str], dict[str, tuple[str, str, int, str | bool]]] = {}
    for record in records:
        if record.get("image_variant"):
            continue
        cell = questions_of.setdefault((str(record["split"]), str(record["modality"])), {})
        for question in record.get("questions") or []:
            kind = str(question["kind"])
            count = len(question.get("options") or []) if kind == "mcq" else 2
            truth = question.get("ground_truth")
            truth = truth if isinstance(truth, bool) else str(truth)
            cell[str(question["id"])] = (kind, str(record["intent"]), count, truth)
    rows = []
    for (split, modality), questions in sorted(questions_of.items()):
        chosen = {
            m.name: [
                q
                for q in questions.values()
                if q[0] == m.source and (m.intent is None or q[1] == m.intent)
            ]
            for m in CELL_METRICS
            if m.source != "judge"
        }
        for policy, label in EXPECTED_POLICIES:
            ours = {c.key: Figure(None) for c in COLUMNS}
            authors = {c.key: Figure(None) for c in COLUMNS}
            for key, items in chosen.items():
                if not items:
                    continue
                if policy == "chance":
                    chance = 100.0 * sum(1 / count for _, _, count, _ in items) / len(items)
                    ours[key] = authors[key] = Figure(chance, n=len(items))
                    continue
                ours[key] = Figure(0.0, n=len(items))
                read = authors_accuracy(authors_mark(kind, REFUSAL, t) for kind, _, _, t in items)
                authors[key] = Figure(
                    None if read.value is None else 100.0 * read.value,
                    n=read.n,
                    dropped=len(items) - read.n,
                )
            rows.append(
                LeaderRow(
                    "expected", policy, label, "", "", "expected", split, modality, ours, authors
                )
            )
    return rows


def leaderboard_rows(
    runs: Sequence[RunSummary], published: bool = True, expected: Sequence[LeaderRow] = ()
) -> list[LeaderRow]:
    """Measured rows (run order), the expected rows of reference policies, published rows."""
    rows = [row for run in runs for row in run_rows(run)]
    return rows + list(expected) + (published_rows() if published else [])


def _groups(rows: Sequence[LeaderRow]) -> list[tuple[str, str, list[LeaderRow]]]:
    """Rows grouped by split × modality, measured groups first, published last."""
    order: list[tuple[str, str]] = []
    for row in rows:
        if (row.split, row.modality) not in order:
            order.append((row.split, row.modality))
    order.sort(key=lambda key: (key[1] == PUBLISHED_MODALITY, key[0], "@" in key[1], key[1]))
    return [(s, m, [r for r in rows if (r.split, r.modality) == (s, m)]) for s, m in order]


def _number(value: float | None, percent: bool, published: bool) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if published or not percent else f"{value:.1f}"


def format_unscored(fig: Figure) -> str:
    """`(U unscored, S%)` of a judge mean with unscored dialogues, else "" (none)."""
    share = fig.unscored_share
    if share is None or not fig.unscored:
        return ""
    shown = f"{share:.0f}" if share >= 1 else "<1"
    return f"({fig.unscored} unscored, {shown}%)"


def format_figure(fig: Figure, percent: bool, published: bool = False) -> str:
    """`x [lo–hi] n=N`, with `(U unscored, S%)` after a judge mean; just the published value."""
    text = _number(fig.value, percent, published)
    unscored = "" if published else format_unscored(fig)
    if fig.value is None or published:
        return f"{text} n={fig.n} {unscored}" if unscored else text
    if fig.lo is not None and fig.hi is not None:
        text += f" [{_number(fig.lo, percent, False)}–{_number(fig.hi, percent, False)}]"
    if fig.n is not None:
        text += f" n={fig.n}"
    return f"{text} {unscored}" if unscored else text


def format_authors(fig: Figure) -> str:
    """`x n=N (D dropped)`: an authors' scripts' figure at the precision they publish, how
    many answers it counts and how many they dropped; just the value for published rows."""
    text = _number(fig.value, True, True)
    if fig.n is not None:
        text += f" n={fig.n}"
    if fig.dropped:
        text += f" ({fig.dropped} dropped)"
    return text


DIFFERENT_ITEMS = "†"


def _who(row: LeaderRow) -> tuple[str, str]:
    """The model cell (the run's label, † when it covers other items) and the judge cell."""
    model = (row.label or row.model) + (f" {DIFFERENT_ITEMS}" if row.other_items else "")
    if row.source == "published":
        model = f"{row.model} [published]"
    elif row.source == "expected":
        return f"{row.model} [expected]", "none: by construction"
    elif row.model.startswith("baseline/"):
        model += " [reference policy]"
    judge = row.judge
    if row.marker == "heuristic judge":
        judge += " [heuristic judge]"
    elif row.source == "measured":
        judge += f" ({row.judge_kind})"
    return model, judge


HEADER = ("model", "judge", "reading", *(c.label for c in COLUMNS))


def row_cells(row: LeaderRow, reading: str = OURS) -> list[str]:
    """The displayed cells of a row in one reading: model, judge, reading, one per metric."""
    if reading == AUTHORS:
        figures = [format_authors(row.authors.get(c.key, Figure(None))) for c in COLUMNS]
    else:
        exact = row.source != "measured"
        figures = [format_figure(row.figures[c.key], c.percent, exact) for c in COLUMNS]
    return [*_who(row), reading, *figures]


def displayed_lines(rows: Sequence[LeaderRow]) -> list[tuple[str, list[str]]]:
    """(reading, cells) of every displayed line: each row in its readings, ours first."""
    return [(reading, row_cells(row, reading)) for row in rows for reading in row.readings]


def item_notes(rows: Sequence[LeaderRow]) -> list[str]:
    """The footnotes of a table's rows marked † (over other items than the rest)."""
    return [
        f"{DIFFERENT_ITEMS} {row.label or row.model}: {row.other_items}."
        for row in rows
        if row.other_items
    ]


def render_markdown(rows: Sequence[LeaderRow]) -> str:
    """One Markdown table per split × modality; published figures in their own section."""
    lines = [
        "# MTMCS-Bench leaderboard",
        "",
        "Accuracies in %, judge scores 1–5; each cell: value [95% CI] n=items, the interval "
        "clustered by scenario row (see docs/statistics.md).",
        UNSCORED_NOTE,
        READING_NOTE,
        "Rows marked [heuristic judge] were scored by a keyword heuristic, not an LLM judge: "
        "their safety-awareness and helpfulness are not comparable with the paper's.",
        EXPECTED_NOTE,
        "",
    ]
    for split, modality, group in _groups(rows):
        published = modality == PUBLISHED_MODALITY
        title = f"## {SPLIT_LABELS.get(split, split)} — {modality}"
        lines += [title, ""]
        if published:
            lines += [PUBLISHED_NOTE, ""]
        lines.append("| " + " | ".join(HEADER) + " |")
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(COLUMNS)) + "|")
        for _, cells in displayed_lines(group):
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines.append("")
        if notes := item_notes(group):
            lines += [*notes, ""]
    from mtmcs.report.sensitivity import judge_sensitivity, render_sensitivity_markdown

    if sensitivity := render_sensitivity_markdown(judge_sensitivity(rows)):
        lines.append(sensitivity)
    return "\n".join(lines)


CSV_FIELDS = (
    "source",
    "run",
    "model",
    "label",
    "judge",
    "judge_kind",
    "marker",
    "split",
    "modality",
    "items",
    "other_items",
)


def render_csv(rows: Sequence[LeaderRow]) -> str:
    """Long format: one line per run × split × modality (and per published row).

    `label`: the run's name in the other tables and the plots; `items`: the dialogues a
    measured row covers; `other_items`: set when they are not the
    items of the other runs' rows (the row is marked † in the other tables). Per metric:
    `<metric>`, `<metric>_ci_lo`, `<metric>_ci_hi`, `<metric>_n` (ours, accuracies in %),
    for a judge mean `<metric>_unscored` and `<metric>_unscored_share` (in %), then
    `<metric>_paper_compatible` and `<metric>_paper_compatible_n`: the authors' scripts'
    figure and the answers it counts. Published rows fill only the latter: the paper's
    figures were computed by the authors' scripts.
    """
    header = list(CSV_FIELDS)
    for column in COLUMNS:
        name = column.key
        header += [name, f"{name}_ci_lo", f"{name}_ci_hi", f"{name}_n"]
        if column.judge:
            header += [f"{name}_unscored", f"{name}_unscored_share"]
        header += [f"{name}_paper_compatible", f"{name}_paper_compatible_n"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        line: list[Any] = [getattr(row, name) for name in CSV_FIELDS]
        for column in COLUMNS:
            fig = row.figures[column.key]
            authors = row.authors.get(column.key, Figure(None))
            line += [fig.value, fig.lo, fig.hi, fig.n]
            if column.judge:
                line += [fig.unscored, fig.unscored_share]
            line += [authors.value, authors.n]
        writer.writerow(csv_row(line))
    return buffer.getvalue()


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "—": "---",
    "†": r"\textdagger{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    """`text` safe inside a LaTeX table cell."""
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


LATEX_PUBLISHED = "Published rows: the paper's Table 2, not measured here, modality not stated."


def render_latex(rows: Sequence[LeaderRow]) -> str:
    """A booktabs table: a block per split × modality, published figures in the last blocks."""
    width = len(HEADER)
    lines = [
        "% MTMCS-Bench leaderboard (generated by `mtmcs report`); needs \\usepackage{booktabs}",
        *(
            f"% {line}"
            for line in textwrap.wrap(f"{UNSCORED_NOTE} {READING_NOTE} {LATEX_PUBLISHED}", 96)
        ),
        "\\begin{tabular}{lll" + "r" * len(COLUMNS) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in HEADER) + " \\\\",
    ]
    for split, modality, group in _groups(rows):
        title = f"{SPLIT_LABELS.get(split, split)} — {modality}"
        lines += [
            "\\midrule",
            f"\\multicolumn{{{width}}}{{l}}{{\\emph{{{latex_escape(title)}}}}} \\\\",
        ]
        for _, cells in displayed_lines(group):
            lines.append(" & ".join(latex_escape(cell) for cell in cells) + " \\\\")
        for note in item_notes(group):
            note = f"\\footnotesize {latex_escape(note)}"
            lines.append(f"\\multicolumn{{{width}}}{{l}}{{{note}}} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)
