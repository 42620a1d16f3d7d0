"""`mtmcs data validate | stats | show`: look at a dataset before running it."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mtmcs.cli.console import console
from mtmcs.cli.options import DatasetOption, RevisionOption, SplitOption, splits
from mtmcs.data.loaders import load_benchmark
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.text import printable

app = typer.Typer(help="Inspect and validate a dataset.", no_args_is_help=True)


@app.command()
def validate(
    dataset: DatasetOption = "official", split: SplitOption = None, revision: RevisionOption = None
) -> None:
    """Check every row; print one line per problem."""
    benchmark = load_benchmark(dataset, splits(split), revision)
    console.print(f"{benchmark.name}: {len(benchmark.rows)} rows, no problems")


@app.command()
def stats(
    dataset: DatasetOption = "official", split: SplitOption = None, revision: RevisionOption = None
) -> None:
    """Counts of rows, dialogues, questions and planned calls."""
    chosen = splits(split)
    benchmark = load_benchmark(dataset, chosen, revision)
    table = Table(title=benchmark.name)
    for header in ("split", "rows", "dialogues", "MCQ", "TF", "model calls", "judge calls"):
        table.add_column(header, justify="right")
    for name in chosen:
        rows = [row for row in benchmark.rows if row.split == name]
        dialogues = [d for row in rows for d in expand_row(row)]
        kinds = Counter(q.kind for d in dialogues for q in d.questions)
        model_calls = sum(len(d.turns) + len(d.questions) for d in dialogues)
        table.add_row(
            name,
            str(len(rows)),
            str(len(dialogues)),
            str(kinds["mcq"]),
            str(kinds["tf"]),
            str(model_calls),
            str(len(dialogues)),
        )
    console.print(table)


@app.command()
def show(
    row_id: int,
    dataset: DatasetOption = "official",
    split: Annotated[str, typer.Option(help="type_a or type_b.")] = "type_a",
    revision: RevisionOption = None,
) -> None:
    """Print the four dialogues of one row with their questions."""
    benchmark = load_benchmark(dataset, splits([split]), revision)
    row = next((row for row in benchmark.rows if row.id == row_id), None)
    if row is None:
        raise typer.BadParameter(f"no row {row_id} in {split}", param_hint="ROW_ID")
    console.print(
        f"[bold]{split} row {row_id}[/]  unsafe intent: {escape(printable(row.unsafe_intent))}"
    )
    for dialogue in expand_row(row):
        console.print(f"\n[bold]{dialogue.id}[/]")
        for index, turn in enumerate(dialogue.turns, start=1):
            console.print(f"  R{index}: {printable(turn)}", markup=False)
        for question in dialogue.questions:
            console.print(
                f"  {question.kind} {question.id.rsplit('/', 1)[1]}: "
                f"{json.dumps(question.text)} → {question.ground_truth}",
                markup=False,
            )
            for letter, option in zip("ABCDEFGH", question.options, strict=False):
                console.print(f"      {letter}. {printable(option)}", markup=False)
