"""`mtmcs guard`: a guard model as a classifier of the benchmark's dialogues."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mtmcs.cli.console import console
from mtmcs.cli.options import (
    DEFAULT_DATASET,
    ApiKeyEnvOption,
    DatasetOption,
    LimitOption,
    MaxRetriesOption,
    ModalityOption,
    SplitOption,
    TimeoutOption,
    base_urls,
    choice,
    default_dir,
    modalities,
    splits,
)
from mtmcs.data.loaders import load_benchmark
from mtmcs.data.selection import select_rows
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.errors import ProviderError, StoreError
from mtmcs.guardrails.guard_eval import WHOLE_PREFIX, dialogue_flags, summarise
from mtmcs.guardrails.guards import GUARD_FORMATS, GUARD_KINDS
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, api_key
from mtmcs.passes.guard import build_guard, classify_dialogues, planned_calls, write_results
from mtmcs.protocol.dialogues import expand_row


def _percent(value: float | None, ci: Any = None) -> str:
    if value is None:
        return "–"
    text = f"{100 * value:.1f}"
    if ci:
        text += f"\n[{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"
    return text


def guard_table(summary: dict[str, Any]) -> Table:
    """Classifier figures and detection turns, one line per split × modality."""
    meta = summary["metadata"]
    table = Table(title=f"guard {meta['guard']} ({meta['guard_kind']}), whole dialogue = R1–R3")
    headers = ("split", "modality", "TP/FP/TN/FN", "precision %", "recall %", "F1 %", "FPR %")
    for header in (*headers, "unparsed/failed", "detection (unsafe)"):
        table.add_column(header, overflow="fold")
    for split in meta["splits"]:
        for modality, cell in summary.get(split, {}).items():
            detection = ", ".join(f"{k} {v}" for k, v in cell["detection"].items())
            table.add_row(
                split,
                modality,
                f"{cell['tp']}/{cell['fp']}/{cell['tn']}/{cell['fn']}",
                _percent(cell["precision"]),
                _percent(cell["recall"], cell["recall_ci95"]),
                _percent(cell["f1"]),
                _percent(cell["fpr"], cell["fpr_ci95"]),
                f"{cell['unparseable']}/{cell['failed']}",
                detection,
            )
    return table


def guard(
    guard: Annotated[
        str,
        typer.Option(
            help="Guard model, provider/model, e.g. openai-compatible/meta-llama/Llama-Guard-3-8B "
            "or openai/omni-moderation-latest."
        ),
    ],
    guard_kind: Annotated[
        str, typer.Option(help=f"How to ask and parse: {', '.join(GUARD_KINDS)}.")
    ] = "llama-guard",
    guard_format: Annotated[
        str,
        typer.Option(
            help="llama-guard and shieldgemma. raw: each prefix's user turns joined as one "
            "user message (and the image, if sent), the stock server's chat template builds the "
            "guard prompt (ShieldGemma's policy sent as chat_template_kwargs.guideline); "
            "prompt: the guard prompt itself (our copy of Llama Guard 3's, ShieldGemma's "
            "model-card prompt) as one user message, only for a pass-through server whose "
            "template adds nothing."
        ),
    ] = "raw",
    guard_base_url: Annotated[
        str | None, typer.Option(help="Server of the guard, e.g. http://localhost:8000/v1.")
    ] = None,
    api_key_env: ApiKeyEnvOption = None,
    images: Annotated[
        bool | None,
        typer.Option(
            help="Send the image of multimodal dialogues (default: yes for Llama Guard 3 "
            "Vision / Llama Guard 4 (a name with 'vision' or 'guard-4'), dialogue-json and "
            "openai-moderation; no for shieldgemma and text-only Llama Guard)."
        ),
    ] = None,
    dataset: DatasetOption = DEFAULT_DATASET,
    split: SplitOption = None,
    modality: ModalityOption = None,
    limit: LimitOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output directory (default: runs/guard__GUARD): guard_summary.json, "
            "guard_verdicts.jsonl and the store of the guard's calls, store.sqlite."
        ),
    ] = None,
    guard_max_connections: Annotated[int, typer.Option(min=1, help="Guard calls in flight.")] = 16,
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Run a guard model over each dialogue's user side after R1, R2, R3; score it.

    Every guard call is kept in OUT/store.sqlite: a rerun on the same --out makes no call
    but those that failed.
    """
    kind = choice(guard_kind, GUARD_KINDS, "--guard-kind")
    fmt = choice(guard_format, GUARD_FORMATS, "--guard-format")
    chosen_splits, chosen_modalities = splits(split), modalities(modality)
    base_urls([guard_base_url] if guard_base_url else None, "--guard-base-url", guard)
    api_key(guard, ProviderOptions(guard_base_url, api_key_env=api_key_env))  # before any work
    out = out or default_dir("guard__", guard)
    benchmark = load_benchmark(dataset, chosen_splits)
    rows = select_rows(benchmark, chosen_splits, limit)
    dialogues = [d for row in rows for d in expand_row(row, chosen_modalities)]
    encoder = ImageEncoder(benchmark.image_bytes)
    limiter = AdaptiveLimiter(guard_max_connections)
    model = build_guard(
        guard,
        kind,
        encoder,
        base_url=guard_base_url,
        guard_format=fmt,
        send_images=images,
        max_retries=max_retries,
        timeout=timeout,
        connections=guard_max_connections,
        limiter=limiter,
        api_key_env=api_key_env,
    )
    planned = planned_calls(model, dialogues)
    calls, counts = classify_dialogues(model, dialogues, encoder, limiter, out)
    metadata = {
        "guard": guard,
        "guard_kind": kind,
        "guard_format": fmt if kind in ("llama-guard", "shieldgemma") else None,
        "images": model.images,
        "policies": list(model.parts) if kind == "shieldgemma" else None,
        "dataset": benchmark.name,
        "revision": benchmark.revision,
        "splits": list(chosen_splits),
        "modalities": list(chosen_modalities),
        "limit": limit,
        "rows": len(rows),
        "dialogues": len(dialogues),
        "verdicts": len(calls),
        "calls": planned,
        "failed_verdicts": sum(call.verdict is None for call in calls),
        "whole_dialogue_prefix": f"R1-R{WHOLE_PREFIX}",
        "positives": "unsafe dialogues",
    }
    summary = summarise(dialogue_flags(calls), metadata)
    try:
        write_results(out, calls, summary)
    except OSError as error:
        raise StoreError(f"cannot write guard results to {out}: {error.strerror}") from error
    console.print(guard_table(summary))
    console.print(
        f"{len(calls)} guard verdicts from {planned} calls ({counts.made} made, "
        f"{counts.cached} from the store), {metadata['failed_verdicts']} failed; "
        f"results: {out}",
        soft_wrap=True,
    )
    if calls and all(call.verdict is None for call in calls):
        raise ProviderError(f"no guard call succeeded; first failure: {calls[0].error}")
