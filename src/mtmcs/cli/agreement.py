"""`mtmcs agreement RUN_DIR RUN_DIR... [--labels FILE.csv]`: how far judges (and human
labellers) agree on the same dialogues; `DIR/agreement.json` and a table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mtmcs.cli.console import console
from mtmcs.cli.options import writable_dir
from mtmcs.files import write_json
from mtmcs.report.agreement import figure_text
from mtmcs.scoring.agreement import (
    CATEGORIES,
    RESAMPLES,
    SEED,
    CellAgreement,
    Estimate,
)
from mtmcs.scoring.agreement import (
    agreement as compute_agreement,
)
from mtmcs.scoring.raters import read_ratings

AGREEMENT_FILE = "agreement.json"


def _figure(estimate: Estimate, percent: bool = False) -> str:
    """A figure and, below it, its interval."""
    return figure_text(estimate, percent, separator="\n")


def rater_letters(raters: Sequence[str]) -> dict[str, str]:
    """A short name per rater for the table (A, B, …), spelt out above it."""
    return {name: chr(ord("A") + i) if i < 26 else str(i + 1) for i, name in enumerate(raters)}


def agreement_table(cells: Sequence[CellAgreement], letters: Mapping[str, str]) -> Table:
    """One line per metric × cell × pair of raters; alpha (all raters) on a cell's first."""
    table = Table(
        title="judge agreement (95% bootstrap intervals)",
        caption="kappa: quadratic-weighted Cohen's kappa over 1–5; rho: Spearman; exact / ±1: "
        "share of dialogues scored the same / at most one apart; alpha: Krippendorff's "
        "ordinal alpha of all raters; n: dialogues both (alpha: two or more) scored.",
        caption_justify="left",
    )
    for header in ("metric", "cell", "raters", "n", "kappa", "rho", "exact %", "±1 %", "alpha"):
        table.add_column(header, justify="left" if header in ("metric", "cell") else "right")
    for cell in cells:
        for index, pair in enumerate(cell.pairs):
            table.add_row(
                cell.metric.replace("_", "-"),
                f"{cell.split}\n{cell.cell}" if cell.split != "all" else "pooled",
                f"{letters[pair.a]}–{letters[pair.b]}",
                str(pair.n),
                _figure(pair.kappa),
                _figure(pair.rho),
                _figure(pair.exact, True),
                _figure(pair.within_one, True),
                f"{_figure(cell.alpha)}\nn={cell.n}" if index == 0 else "",
                end_section=index == len(cell.pairs) - 1,
            )
    return table


def agreement(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR...",
            help="Runs of the same answers judged by different judges (`mtmcs rejudge`); "
            "the first gives the dialogues.",
        ),
    ],
    labels: Annotated[
        list[Path] | None,
        typer.Option(
            "--labels",
            metavar="FILE.csv",
            help="Human labels (dialogue_id, rater, score, note; `mtmcs label`'s export) of "
            "the first run's dialogues; repeat for more files.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for agreement.json.")] = Path("agreement"),
    resamples: Annotated[
        int, typer.Option(min=0, help="Bootstrap resamples of the dialogues (0: no interval).")
    ] = RESAMPLES,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = SEED,
) -> None:
    """Agreement of judges (and human raters) on the same dialogues: kappa, alpha, rho.

    For safety-awareness (unsafe dialogues) and helpfulness (safe ones), per split ×
    modality and pooled (all): quadratic-weighted Cohen's kappa, Spearman's rho, exact and
    within-one agreement and the confusion matrix of every pair of raters over the dialogues
    both scored, Krippendorff's ordinal alpha of all raters, each with a 95% bootstrap
    interval. Writes DIR/agreement.json and prints the table. Needs the stats extra.
    """
    ratings = read_ratings(run_dirs, labels or ())
    cells = compute_agreement(ratings.units, ratings.raters, resamples=resamples, seed=seed)
    writable_dir(out)
    path = out / AGREEMENT_FILE
    document: dict[str, Any] = {
        "format_version": 1,
        "runs": [str(p) for p in run_dirs],
        "labels": [str(p) for p in labels or ()],
        "raters": [rater.name for rater in ratings.raters],
        "categories": list(CATEGORIES),
        "bootstrap": {"resamples": resamples, "seed": seed, "interval": "percentile, 95%"},
        "different_replies": dict(ratings.different_replies),
        "cells": [cell.as_dict() for cell in cells],
    }
    write_json(path, document)
    letters = rater_letters([rater.name for rater in ratings.raters])
    console.print(
        "raters: " + "; ".join(f"{letter} = {name}" for name, letter in letters.items()),
        soft_wrap=True,
        markup=False,
    )
    console.print(agreement_table(cells, letters))
    for name, count in ratings.different_replies.items():
        if count:
            console.print(
                f"{name}: {count} dialogues left out (replies differ from {run_dirs[0]}'s)",
                soft_wrap=True,
            )
    console.print(f"agreement: {path}", soft_wrap=True)
