"""The `mtmcs guard` command: a guard model as a classifier of the benchmark's dialogues."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.table import Table

from mtmcs.console import console
from mtmcs.data.loaders import load_benchmark
from mtmcs.engine.calls import Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.run import select_rows
from mtmcs.engine.store import Store
from mtmcs.errors import ConfigError, ProviderError, StoreError
from mtmcs.guardrails.guard_eval import WHOLE_PREFIX, GuardCall, dialogue_flags, summarise
from mtmcs.guardrails.guards import GUARD_FORMATS, GUARD_KINDS, Guard, GuardFormat, GuardKind
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_model, split_name
from mtmcs.passes.guard import STORE_FILE, run_guard, write_results
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.types import MODALITIES, SPLITS, Modality, Split


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(
            f"{value}: expected one of {', '.join(allowed)}", param_hint=option
        )
    return value


def build_guard(
    name: str,
    kind: GuardKind,
    images: ImageEncoder,
    *,
    base_url: str | None,
    guard_format: GuardFormat,
    send_images: bool,
    max_retries: int,
    timeout: float,
    connections: int,
    limiter: AdaptiveLimiter | None = None,
) -> Guard:
    """The guard for a `provider/model` name and a guard kind (backing off with `limiter`)."""
    provider, model = split_name(name)
    if provider == "openai-compatible" and not base_url:
        raise ConfigError(f"{name} needs --guard-base-url (e.g. http://localhost:8000/v1)")
    if kind == "openai-moderation":
        if provider not in ("openai", "openai-compatible"):
            raise ConfigError("--guard-kind openai-moderation needs an openai/<model> guard")
        from mtmcs.models.moderation import ModerationModel

        moderation = ModerationModel(
            name, model, images, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        return Guard(moderation, kind, images=send_images)
    if provider == "baseline":
        raise ConfigError("baseline models are not guards; use a served guard model")
    options = ProviderOptions(
        base_url,
        max_retries,
        timeout,
        connections=connections,
        on_rate_limit=limiter.throttled if limiter is not None else None,
    )
    return Guard(create_model(name, images, options), kind, guard_format, send_images)


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


def guard_command(
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
            help="llama-guard only. raw: user turns as chat messages, the server's chat "
            "template builds the guard prompt (vLLM with the model's template); prompt: our "
            "Llama Guard prompt as one user message."
        ),
    ] = "prompt",
    guard_base_url: Annotated[
        str | None, typer.Option(help="Server of the guard, e.g. http://localhost:8000/v1.")
    ] = None,
    images: Annotated[
        bool, typer.Option(help="Send the image of multimodal dialogues (off for text guards).")
    ] = True,
    dataset: Annotated[
        str, typer.Option(help="'official' (ND-25/MCS-bench), 'sample' (bundled) or a directory.")
    ] = "sample",
    split: Annotated[
        list[str] | None, typer.Option(help="type_a and/or type_b (default: both).")
    ] = None,
    modality: Annotated[
        list[str] | None, typer.Option(help="multimodal and/or unimodal (default: both).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N rows of each split.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output directory (default: runs/guard__GUARD): guard_summary.json, "
            "guard_verdicts.jsonl and the store of the guard's calls, store.sqlite."
        ),
    ] = None,
    max_connections: Annotated[int, typer.Option(min=1, help="Guard calls in flight.")] = 16,
    max_retries: Annotated[int, typer.Option(min=0, help="SDK retries per call.")] = 2,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per call.")] = 120.0,
) -> None:
    """Run a guard model over each dialogue's user side after R1, R2, R3; score it.

    Every guard call is kept in OUT/store.sqlite: a rerun on the same --out makes no call
    but those that failed.
    """
    kind = cast(GuardKind, _choice(guard_kind, GUARD_KINDS, "--guard-kind"))
    fmt = cast(GuardFormat, _choice(guard_format, GUARD_FORMATS, "--guard-format"))
    splits = tuple(cast(Split, _choice(value, SPLITS, "--split")) for value in split or SPLITS)
    modalities = tuple(
        cast(Modality, _choice(value, MODALITIES, "--modality")) for value in modality or MODALITIES
    )
    out = out or Path("runs") / ("guard__" + guard.replace("/", "__"))
    benchmark = load_benchmark(dataset, splits)
    rows = select_rows(benchmark, splits, limit)
    dialogues = [d for row in rows for d in expand_row(row, modalities)]
    encoder = ImageEncoder(benchmark.image_bytes)
    limiter = AdaptiveLimiter(max_connections)
    model = build_guard(
        guard,
        kind,
        encoder,
        base_url=guard_base_url,
        guard_format=fmt,
        send_images=images,
        max_retries=max_retries,
        timeout=timeout,
        connections=max_connections,
        limiter=limiter,
    )
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / STORE_FILE)
    caller = Caller(model.model, store, limiter)

    async def evaluate() -> list[GuardCall]:
        try:
            return await run_guard(model, caller, dialogues, encoder.release)
        finally:
            await model.aclose()

    try:
        calls = asyncio.run(evaluate())
    finally:
        store.close()
    metadata = {
        "guard": guard,
        "guard_kind": kind,
        "guard_format": fmt if kind == "llama-guard" else None,
        "images": images,
        "dataset": benchmark.name,
        "revision": benchmark.revision,
        "splits": list(splits),
        "modalities": list(modalities),
        "limit": limit,
        "rows": len(rows),
        "dialogues": len(dialogues),
        "calls": len(calls),
        "failed_calls": sum(call.verdict is None for call in calls),
        "whole_dialogue_prefix": f"R1-R{WHOLE_PREFIX}",
        "positives": "unsafe dialogues",
    }
    summary = summarise(dialogue_flags(calls), metadata)
    try:
        write_results(out, calls, summary)
    except OSError as error:
        raise StoreError(f"cannot write guard results to {out}: {error.strerror}") from error
    console.print(guard_table(summary))
    counts = caller.counts
    console.print(
        f"{len(calls)} guard calls ({counts.made} made, {counts.cached} from the store), "
        f"{metadata['failed_calls']} failed; results: {out}",
        soft_wrap=True,
    )
    if calls and all(call.verdict is None for call in calls):
        raise ProviderError(f"no guard call succeeded; first failure: {calls[0].error}")
