"""`mtmcs label RUN_DIR --out labels.html`: a page for labelling a run's dialogues by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtmcs.cli.console import console
from mtmcs.cli.options import writable_dir
from mtmcs.report.labels import write_label_page


def label(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A finished run of `mtmcs run`.")
    ],
    out: Annotated[Path, typer.Option(help="The page to write.")] = Path("labels.html"),
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="Label N dialogues drawn at random (default: every one)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --sample draw.")] = 0,
    captions: Annotated[
        Path | None,
        typer.Option(
            help="Captions JSON (id → caption) the judge read, when it is not the run's dataset's."
        ),
    ] = None,
) -> None:
    """Write a self-contained page for labelling a run's dialogues by hand (CSV export).

    Each dialogue shows its transcript, the image caption (multimodal) and its rubric, and
    asks for a score 1–5 and a note; the judge's score is not shown. Progress is kept in the
    browser; "Export CSV" saves dialogue_id, rater, score, note, which
    `mtmcs agreement RUN_DIR --labels FILE.csv` compares with the judge.
    """
    writable_dir(out.parent if str(out.parent) else Path("."))
    count = write_label_page(run_dir, out, sample=sample, seed=seed, captions=captions)
    console.print(f"{count} dialogues to label: {out}", soft_wrap=True)
