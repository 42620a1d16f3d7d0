"""The `mtmcs build` command: images → a dataset in the official layout, resumable."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from mtmcs.build.output import (
    apply_review,
    export_review,
    load_scenarios,
    save_scenarios,
    write_dataset,
)
from mtmcs.build.pipeline import (
    BuildState,
    Models,
    find_images,
    load_captions,
    planned_calls,
    run_stages,
)
from mtmcs.console import console
from mtmcs.engine.calls import Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.errors import ConfigError
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_model

STORE_FILE = "build.sqlite"
CONNECTIONS = 8  # calls in flight, over all the build's models


def _import_review(out: Path, review: Path) -> None:
    scenarios = load_scenarios(out)
    kept, drops = apply_review(scenarios, review)
    report_path = out / "build_report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    counts = dict(report.get("counts", {}))
    counts["reviewed_dropped"] = len(drops)
    counts["final"] = len(kept)
    write_dataset(out, kept, counts, [*report.get("drops", []), *drops])
    console.print(
        f"review applied: {len(kept)} kept, {len(drops)} dropped; dataset written to {out}"
    )


async def _build(
    images: list[Path],
    out: Path,
    model: str,
    captioner: str,
    reference: str,
    base_url: str | None,
    per_image: int,
    captions: dict[str, str],
    max_retries: int,
    timeout: float,
) -> tuple[BuildState, int]:
    by_name = {path.name: path for path in images}
    encoder = ImageEncoder(lambda name: by_name[name].read_bytes())
    limiter = AdaptiveLimiter(CONNECTIONS)  # one server: one limit over every model
    options = ProviderOptions(
        base_url=base_url,
        max_retries=max_retries,
        timeout=timeout,
        on_rate_limit=limiter.throttled,
        connections=CONNECTIONS,
    )
    made = {name: create_model(name, encoder, options) for name in {model, captioner, reference}}
    state = BuildState()
    store = Store(out / STORE_FILE)
    callers = {name: Caller(chat, store, limiter) for name, chat in made.items()}
    models = Models(callers[model], callers[captioner], callers[reference])
    try:
        scenarios = await run_stages(images, models, per_image, captions, state)
    finally:
        store.close()
        for chat in made.values():
            await chat.aclose()
    drops = [asdict(drop) for drop in state.drops]
    save_scenarios(out, scenarios)
    export_review(out, scenarios)
    counts = {**state.counts, "final": len(scenarios)}
    write_dataset(out, scenarios, counts, drops)
    return state, len(scenarios)


def build_command(
    images_dir: Annotated[
        Path | None, typer.Argument(help="Folder of images (png, jpg, gif, webp).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")] = Path("dataset"),
    model: Annotated[str | None, typer.Option(help="Generator model, provider/model.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server of the models.")] = None,
    captioner: Annotated[
        str | None, typer.Option(help="Captioning model (default: --model).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="Single-turn filter model (default: --model).")
    ] = None,
    captions: Annotated[
        Path | None, typer.Option(help="JSON object filename → caption; skips captioning.")
    ] = None,
    per_image: Annotated[int, typer.Option(min=1, help="Harmful intents per image.")] = 3,
    dry_run: Annotated[bool, typer.Option(help="Print the planned calls; call nothing.")] = False,
    import_review: Annotated[
        Path | None, typer.Option(help="Apply review.csv decisions and rewrite the dataset.")
    ] = None,
    max_retries: Annotated[int, typer.Option(min=0, help="SDK retries per call.")] = 2,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per call.")] = 120.0,
) -> None:
    """Build a dataset in the official schema from a folder of images (resumable).

    Every model call is kept in OUT/build.sqlite: a rerun on the same --out makes no call
    but those that failed.
    """
    if import_review is not None:
        _import_review(out, import_review)
        return
    if images_dir is None or not images_dir.is_dir():
        raise ConfigError(f"IMAGES_DIR {images_dir} is not a folder of images")
    images = find_images(images_dir)
    if not images:
        raise ConfigError(f"no images (png, jpg, gif, webp) in {images_dir}")
    given = load_captions(captions) if captions is not None else {}
    if dry_run:
        uncaptioned = sum(path.name not in given for path in images)
        plan = planned_calls(len(images), per_image, uncaptioned)
        console.print(f"{len(images)} images, {per_image} intents each; planned calls:")
        for stage, count in plan.items():
            console.print(f"  {stage}: {count}")
        console.print(f"  total: {sum(plan.values())} (before retries and drops)")
        return
    if model is None:
        raise ConfigError("--model is required (provider/model)")
    missing = [name for name in given if name not in {path.name for path in images}]
    if missing:
        raise ConfigError(f"--captions names files not in {images_dir}: {', '.join(missing[:5])}")
    state, rows = asyncio.run(
        _build(
            images,
            out,
            model,
            captioner or model,
            reference or model,
            base_url,
            per_image,
            given,
            max_retries,
            timeout,
        )
    )
    for name, value in state.counts.items():
        console.print(f"{name}: {value}")
    console.print(
        f"{rows} rows per split written to {out} ({state.new_calls} new calls, "
        f"{state.cached_calls} from the store, {state.failed_calls} failed; "
        f"{len(state.drops)} drops in build_report.json); "
        f"review: {out / 'review' / 'review.html'}"
    )
