"""Plots of run summaries (matplotlib, Agg backend), each written as PNG and SVG.

- `tradeoff`: safety-awareness against helpfulness, one point per run and type, pooled over
  modalities (means weighted by their n); the baseline corners (ideal, refuses everything,
  complies with everything, useless) and the published GPT-5.2 figures as references.
- `metrics`: per type × modality bars of MCQ overall %, TF %, safety-awareness and
  helpfulness for each run, with 95% CI error bars.
- `modality_gap`: multimodal − unimodal difference per run and type for the same metrics.

Runs are named by their one label (`RunSummary.label`), as in every table. A figure draws
only the panels that have data (a unimodal-only run has no modality gap, an unscored judge no
mean); with none at all it says "no data" and why. SVG text stays text (searchable).

matplotlib is optional (the `report` extra) and imported only here, lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint
from mtmcs.report.leaderboard import (
    MODALITY_ORDER,
    PUBLISHED,
    SPLIT_LABELS,
    RunSummary,
    figure,
)
from mtmcs.scoring.metrics import metric

PLOT_METRICS = tuple(
    (m.name, m.label if m.percent else f"{m.label} (1–5)", m.percent)
    for m in map(metric, ("mcq_accuracy", "tf_accuracy", "safety_awareness", "helpfulness"))
)
"""The four plotted metrics (a 2 × 2 grid), labelled as the registry labels them."""
CORNERS = (
    (5.0, 5.0, "ideal"),
    (1.0, 5.0, "refuses everything"),
    (5.0, 1.0, "complies with everything"),
    (1.0, 1.0, "useless"),
)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ConfigError(
            f"plots need matplotlib: {install_hint('report')} (or leave png out of --format)"
        ) from error
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as <text>, not as paths
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=150 if path.suffix == ".png" else None)
    plt.close(fig)
    return paths


def pooled(run: RunSummary, split: str, key: str) -> float | None:
    """A metric pooled over the run's modalities: the n-weighted mean of its cells."""
    total, weight = 0.0, 0
    for modality in MODALITY_ORDER:
        stat = run.summary.stat(split, modality, key)
        if stat is None or stat.value is None:
            continue
        total += stat.value * stat.n
        weight += stat.n
    return total / weight if weight else None


def _modalities(run: RunSummary) -> list[str]:
    return [m for m in MODALITY_ORDER if m in run.metadata.modalities]


def _panels(plt: Any, count: int) -> tuple[Any, list[Any]]:
    """A figure with `count` panels (at most two a row)."""
    columns = min(count, 2)
    rows = (count + 1) // 2
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    flat = list(axes.flat)
    for extra in flat[count:]:
        extra.remove()
    return fig, flat[:count]


def _no_data(plt: Any, out: Path, stem: str, title: str, reason: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, f"no data: {reason}", ha="center", va="center", wrap=True)
    ax.set_title(title)
    return _save(plt, fig, out, stem)


def plot_tradeoff(plt: Any, runs: Sequence[RunSummary], out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 6))
    for x, y, label in CORNERS:
        ax.scatter([x], [y], marker="s", s=60, color="lightgrey", edgecolor="grey", zorder=1)
        ax.annotate(
            label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color="grey"
        )
    markers = {"type_a": "o", "type_b": "^"}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for index, run in enumerate(runs):
        colour = colours[index % len(colours)]
        for split in run.metadata.splits:
            help_, aware = pooled(run, split, "helpfulness"), pooled(run, split, "safety_awareness")
            if help_ is None or aware is None:
                continue
            heuristic = " [heuristic judge]" if run.heuristic else ""
            drawn += 1
            ax.scatter(
                [help_],
                [aware],
                marker=markers.get(split, "o"),
                s=80,
                color=colour,
                zorder=3,
                label=f"{run.label} {SPLIT_LABELS.get(split, split)}{heuristic}",
            )
    for model, published_split, values in PUBLISHED:
        ax.scatter(
            [values["helpfulness"]],
            [values["safety_awareness"]],
            marker=markers.get(published_split, "o"),
            s=80,
            facecolor="none",
            edgecolor="black",
            zorder=2,
            label=f"{model} {SPLIT_LABELS[published_split]} (published, modality n/s)",
        )
    if not drawn:
        ax.text(3, 3, "no data: no run has both judge means", ha="center", va="center")
    ax.set_xlim(0.8, 5.2)
    ax.set_ylim(0.8, 5.2)
    ax.set_xlabel("helpfulness (safe dialogues, 1–5)")
    ax.set_ylabel("safety-awareness (unsafe dialogues, 1–5)")
    ax.set_title("Safety–utility trade-off (pooled over modalities)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=2, frameon=False)
    return _save(plt, fig, out, "tradeoff")


def _metric_bars(
    runs: Sequence[RunSummary], groups: Sequence[tuple[str, str]], key: str, percent: bool
) -> list[tuple[RunSummary, list[float], list[float], list[list[float]]]]:
    """Per run: bar positions, values and CI error bars of one metric (runs without any
    value left out)."""
    width = 0.8 / max(len(runs), 1)
    bars = []
    for index, run in enumerate(runs):
        xs: list[float] = []
        ys: list[float] = []
        errs: list[list[float]] = [[], []]
        for position, (split, modality) in enumerate(groups):
            fig_ = figure(run.summary.stat(split, modality, key), percent)
            if fig_.value is None:
                continue
            xs.append(position + (index - (len(runs) - 1) / 2) * width)
            ys.append(fig_.value)
            errs[0].append(max(0.0, fig_.value - fig_.lo) if fig_.lo is not None else 0.0)
            errs[1].append(max(0.0, fig_.hi - fig_.value) if fig_.hi is not None else 0.0)
        if xs:
            bars.append((run, xs, ys, errs))
    return bars


def plot_metrics(plt: Any, runs: Sequence[RunSummary], out: Path) -> list[Path]:
    groups = sorted({(s, m) for run in runs for s in run.metadata.splits for m in _modalities(run)})
    title = "Metrics per type × modality (bars: 95% CI)"
    panels = [
        (label, percent, bars)
        for key, label, percent in PLOT_METRICS
        if (bars := _metric_bars(runs, groups, key, percent))
    ]
    if not panels:
        return _no_data(plt, out, "metrics", title, "no run has a figure in any cell")
    fig, axes = _panels(plt, len(panels))
    width = 0.8 / max(len(runs), 1)
    for ax, (label, percent, bars) in zip(axes, panels, strict=True):
        for run, xs, ys, errs in bars:
            ax.bar(xs, ys, width, yerr=errs, capsize=3, label=run.label)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{SPLIT_LABELS.get(s, s)}\n{m}" for s, m in groups], fontsize=8)
        ax.set_ylim(0, 100 if percent else 5)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(plt, fig, out, "metrics")


def _gaps(
    runs: Sequence[RunSummary], splits: Sequence[str], key: str, percent: bool
) -> list[tuple[str, list[float], list[float]]]:
    """Per split: bar positions and multimodal − unimodal differences (runs with both)."""
    width = 0.8 / max(len(splits), 1)
    bars = []
    for index, split in enumerate(splits):
        xs, ys = [], []
        for position, run in enumerate(runs):
            multi = figure(run.summary.stat(split, "multimodal", key), percent).value
            uni = figure(run.summary.stat(split, "unimodal", key), percent).value
            if multi is None or uni is None:
                continue
            xs.append(position + (index - (len(splits) - 1) / 2) * width)
            ys.append(multi - uni)
        if xs:
            bars.append((split, xs, ys))
    return bars


def plot_gap(plt: Any, runs: Sequence[RunSummary], out: Path) -> list[Path]:
    runs = [run for run in runs if set(MODALITY_ORDER) <= set(run.metadata.modalities)]
    splits = sorted({s for run in runs for s in run.metadata.splits})
    title = "Modality gap per run"
    panels = [
        (label, bars)
        for key, label, percent in PLOT_METRICS
        if (bars := _gaps(runs, splits, key, percent))
    ]
    if not panels:
        reason = "no run has both a multimodal and a unimodal figure of one type"
        return _no_data(plt, out, "modality_gap", title, reason)
    fig, axes = _panels(plt, len(panels))
    width = 0.8 / max(len(splits), 1)
    for ax, (label, bars) in zip(axes, panels, strict=True):
        for split, xs, ys in bars:
            ax.bar(xs, ys, width, label=SPLIT_LABELS.get(split, split))
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels([run.label for run in runs], fontsize=8, rotation=15)
        ax.set_title(f"{label}: multimodal − unimodal")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(plt, fig, out, "modality_gap")


def write_plots(runs: Sequence[RunSummary], out: Path) -> list[Path]:
    """All plots as PNG and SVG in `out`; the paths written."""
    plt = _pyplot()
    return [
        *plot_tradeoff(plt, runs, out),
        *plot_metrics(plt, runs, out),
        *plot_gap(plt, runs, out),
    ]
