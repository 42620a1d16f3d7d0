"""A dataset build from start to finish: models → stages → files, every call in a store.

`build_dataset` runs the pipeline over a folder of images and writes the dataset and its
review files; `import_review` applies a filled-in `review.csv` and rewrites the dataset.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mtmcs.build.output import (
    apply_review,
    export_review,
    load_scenarios,
    save_scenarios,
    write_dataset,
)
from mtmcs.build.pipeline import BuildState, Models, run_stages
from mtmcs.engine.calls import Caller
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import Store
from mtmcs.models.images import ImageEncoder
from mtmcs.models.registry import ProviderOptions, create_model

STORE_FILE = "build.sqlite"
CONNECTIONS = 8  # calls in flight, over all the build's models


@dataclass(frozen=True)
class BuildModels:
    """The build's model names and how to reach them."""

    generator: str
    captioner: str
    reference: str
    base_url: str | None = None
    max_retries: int = 2
    timeout: float = 120.0
    api_key_env: str | None = None  # the variable holding the key of the models' server


async def _build(
    images: list[Path],
    out: Path,
    names: BuildModels,
    per_image: int,
    captions: dict[str, str],
) -> tuple[BuildState, int]:
    by_name = {path.name: path for path in images}
    encoder = ImageEncoder(lambda name: by_name[name].read_bytes())
    limiter = AdaptiveLimiter(CONNECTIONS)  # one server: one limit over every model
    options = ProviderOptions(
        base_url=names.base_url,
        max_retries=names.max_retries,
        timeout=names.timeout,
        on_rate_limit=limiter.throttled,
        connections=CONNECTIONS,
        api_key_env=names.api_key_env,
    )
    distinct = {names.generator, names.captioner, names.reference}
    made = {name: create_model(name, encoder, options) for name in distinct}
    state = BuildState()
    store = Store(out / STORE_FILE)
    callers = {name: Caller(chat, store, limiter) for name, chat in made.items()}
    models = Models(callers[names.generator], callers[names.captioner], callers[names.reference])
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


def build_dataset(
    images: list[Path],
    out: Path,
    models: BuildModels,
    per_image: int,
    captions: dict[str, str],
) -> tuple[BuildState, int]:
    """Build a dataset from `images` into `out` (resumable: calls are kept in
    `OUT/build.sqlite`); the build's state and the rows written per split."""
    return asyncio.run(_build(images, out, models, per_image, captions))


def import_review(out: Path, review: Path) -> tuple[int, int]:
    """Apply the decisions of a `review.csv` to the built dataset in `out` and rewrite it;
    how many scenarios were kept and dropped."""
    scenarios = load_scenarios(out)
    kept, drops = apply_review(scenarios, review)
    report_path = out / "build_report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    counts = dict(report.get("counts", {}))
    counts["reviewed_dropped"] = len(drops)
    counts["final"] = len(kept)
    write_dataset(out, kept, counts, [*report.get("drops", []), *drops])
    return len(kept), len(drops)
