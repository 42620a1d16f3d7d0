"""`mtmcs power --metric M --delta D --runs RUN [--runs RUN]`: how many rows, or items per
row (variant images, repeated samples), a paired comparison needs to detect a difference D,
from the spread measured in the runs (`mtmcs.scoring.power`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mtmcs.cli.console import console
from mtmcs.errors import UsageError
from mtmcs.protocol.types import MODALITIES, SPLITS
from mtmcs.report.power_inputs import measured_spread
from mtmcs.scoring.metrics import CELL_METRICS, metric
from mtmcs.scoring.power import Measured, PowerPlan, plan


def assumptions(measured: Measured, power: float, alpha: float) -> list[str]:
    """What the estimate takes for granted, in words."""
    lines = [
        f"paired design (both runs answer the same items), two-sided alpha {alpha:g}, power "
        f"{power:.0%}: statsmodels' one-sample t-test power solver on the per-item differences "
        "gives the independent pairs needed",
        "design effect = 1 + (m − 1)·ICC: m items per row (size-weighted mean), ICC the "
        "intra-cluster correlation implied by the measured clustered variance (floored at 0)",
        "more rows are drawn like the measured ones (same spread, same ICC); a row is a "
        "scenario row of one split (the same id in both splits counts twice)",
        "more items per row (variant images, or k samples per item at temperature > 0) are "
        "taken to correlate with the row's other items at the measured ICC; repeated samples "
        "of one item correlate more, so read that line as a lower bound on what they need",
    ]
    if not measured.paired:
        lines.append(
            "one run given: the sd of the differences is √2 × the run's sd (two runs' answers "
            "to an item taken as independent; runs that agree on items need fewer rows), and "
            "the differences are taken to have the run's ICC"
        )
    return lines


def _table(measured: Measured, needed: PowerPlan, delta_shown: str, unit: float) -> Table:
    table = Table(title=f"to detect a paired difference of {delta_shown}", pad_edge=False)
    table.add_column("", overflow="fold")
    table.add_column("value", justify="right")
    source = "paired differences of 2 runs" if measured.paired else "1 run (√2 × its sd)"
    rows = [
        ("measured on", source),
        ("items, rows", f"{measured.n}, {measured.clusters}"),
        ("items per row m", f"{measured.cluster_size:.2f}"),
        ("sd of a difference", f"{measured.sd * unit:.3g}"),
        ("ICC", f"{measured.icc:.3f}"),
        ("design effect", f"{needed.design_effect:.2f}"),
        ("independent pairs needed", f"{needed.pairs:.1f}"),
        ("item pairs needed", str(math.ceil(needed.items))),
        ("rows needed at m items per row", str(needed.rows)),
    ]
    if needed.items_per_row is None or needed.per_row_factor is None:
        rows.append(
            (
                f"items per row with {needed.available_rows} rows",
                f"none suffices (the rows are worth at most rows / ICC = "
                f"{needed.available_rows / max(measured.icc, 1e-12):.0f} pairs)",
            )
        )
    else:
        factor = needed.per_row_factor
        rows.append(
            (
                f"items per row with {needed.available_rows} rows",
                f"{needed.items_per_row:.1f} (× {factor:.2f}: images per row, or samples per item)"
                if factor > 1
                else f"{needed.items_per_row:.1f} (the {needed.available_rows} rows suffice)",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    return table


def power(
    metric_name: Annotated[
        str,
        typer.Option(
            "--metric", help="One of: " + ", ".join(entry.name for entry in CELL_METRICS) + "."
        ),
    ],
    delta: Annotated[
        float,
        typer.Option(
            help="The difference to detect: percentage points for accuracies, score points "
            "(1–5 scale) for judge means."
        ),
    ],
    runs: Annotated[
        list[Path],
        typer.Option(
            "--runs",
            help="A run (its spread) or two runs on the same items (their paired "
            "differences); repeat the option.",
        ),
    ],
    split: Annotated[
        list[str] | None, typer.Option(help="Splits to pool (default: both; repeat).")
    ] = None,
    cell: Annotated[
        list[str] | None,
        typer.Option(
            help="Cells to pool: multimodal, unimodal, multimodal@v1… (default: the two "
            "modalities; repeat)."
        ),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(min=1, help="Rows available (default: the rows measured)."),
    ] = None,
    power_level: Annotated[float, typer.Option("--power", min=0.01, max=0.99)] = 0.8,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5)] = 0.05,
) -> None:
    """Rows (or variants, or samples) needed to detect a difference, from measured runs."""
    try:
        entry = metric(metric_name)
    except KeyError:
        names = ", ".join(e.name for e in CELL_METRICS)
        raise UsageError(f"unknown metric {metric_name!r}: expected one of {names}") from None
    if delta == 0:
        raise UsageError("--delta must not be 0")
    unit = 100.0 if entry.percent else 1.0
    measured = measured_spread(runs, entry.name, split or SPLITS, cell or MODALITIES)
    if measured.sd == 0:
        raise UsageError(
            f"{entry.name} does not vary in the runs given (sd 0): nothing to size from"
        )
    needed = plan(measured, delta / unit, power_level, alpha, rows)
    shown = f"{delta:g} {'percentage points' if entry.percent else 'points'} of {entry.label}"
    console.print(_table(measured, needed, shown, unit))
    console.print("assumptions:", soft_wrap=True)
    for line in assumptions(measured, power_level, alpha):
        console.print(f"- {line}", soft_wrap=True, markup=False)
