"""A dataset build from start to finish: models → stages → files, every call in a store.

`build_dataset` stages the images (content ids, downscaling, duplicates), runs the pipeline
and the variants stage, and writes the dataset and its review files; `import_review` records
the decisions of a filled-in `review.csv`, `merge_review` those two reviewers agree on, and
both rewrite the dataset. Every write applies all recorded decisions (`review.py`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mtmcs.build.content import BuildCaller
from mtmcs.build.images import MAX_SIDE, stage_images
from mtmcs.build.output import (
    export_review,
    load_scenarios,
    save_scenarios,
    write_dataset,
)
from mtmcs.build.pipeline import BuildState, Models, Quota, StageSettings, diversity, run_stages
from mtmcs.build.review import (
    Agreement,
    Applied,
    apply_decisions,
    by_digest,
    load_decisions,
    merge,
    read_sheet,
    record_decisions,
)
from mtmcs.build.schemas import Scenario
from mtmcs.build.variants import Backend, kept_files, make_editor, run_variants
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


@dataclass(frozen=True)
class BuildSettings:
    """`--temperature`, `--max-tokens`, `--reasoning-effort`, `--max-connections` and the
    category quota (`--quota`, `--max-per-category`); recorded in `build_report.json`."""

    stages: StageSettings = field(default_factory=StageSettings)
    connections: int = CONNECTIONS
    quota: Quota = field(default_factory=Quota)

    def record(self) -> dict[str, Any]:
        return {
            **asdict(self.stages),
            "max_connections": self.connections,
            "quota": dict(self.quota.limits),
            "max_per_category": self.quota.per_category,
        }


@dataclass(frozen=True)
class ImageOptions:
    """`--max-side` and the variants stage (`--variants`, `--variant-model`, `--variant-seed`)."""

    max_side: int = MAX_SIDE
    variants: Backend = "pillow"
    variant_model: str | None = None
    variant_seed: int = 0


async def _build(
    images: list[Path],
    out: Path,
    names: BuildModels,
    per_image: int,
    captions: dict[str, str],
    image_options: ImageOptions,
    settings: BuildSettings,
) -> tuple[BuildState, int]:
    editor = make_editor(  # first: a backend that cannot start stops the build here
        image_options.variants,
        image_options.variant_model,
        image_options.variant_seed,
        names.base_url,
        names.api_key_env,
        names.timeout,
    )
    staged, duplicates = stage_images(images, out, image_options.max_side)
    files = {entry.id: out / entry.file for entry in staged}  # variants are added
    encoder = ImageEncoder(lambda image_id: files[image_id].read_bytes())
    limiter = AdaptiveLimiter(settings.connections)  # one server: one limit over every model
    options = ProviderOptions(
        base_url=names.base_url,
        max_retries=names.max_retries,
        timeout=names.timeout,
        on_rate_limit=limiter.throttled,
        connections=settings.connections,
        api_key_env=names.api_key_env,
    )
    distinct = {names.generator, names.captioner, names.reference}
    made = {name: create_model(name, encoder, options) for name in distinct}
    state = BuildState()
    store = Store(out / STORE_FILE)
    ids = {entry.source.name: entry.id for entry in staged}
    callers = {name: BuildCaller(chat, store, limiter, ids) for name, chat in made.items()}
    models = Models(
        callers[names.generator],
        callers[names.captioner],
        callers[names.reference],
        settings.stages,
    )
    state.drops.extend(duplicates)
    state.add("duplicate_images", len(duplicates))
    dropped = {drop.item for drop in duplicates}
    try:
        sources = [path for path in images if path.name not in dropped]
        built = await run_stages(sources, models, per_image, captions, state, settings.quota)
        where = {str(entry.source.resolve()): entry.file for entry in staged}
        scenarios = [s.model_copy(update={"image": where[s.image]}) for s in built]
        variants = []
        if editor is not None:
            counts = replace(models.captioner.counts)
            first = {s.image: s.caption for s in reversed(scenarios)}
            variants = await run_variants(
                editor,
                out,
                first,
                models.captioner,
                state,
                lambda i, p: files.update({i: p}),
                models.settings,
            )
            state.new_calls += models.captioner.counts.made - counts.made
            state.cached_calls += models.captioner.counts.cached - counts.cached
            state.failed_calls += models.captioner.counts.failed - counts.failed
    finally:
        store.close()
        for chat in made.values():
            await chat.aclose()
        close = getattr(editor, "aclose", None)
        if close is not None:
            await close()
    save_scenarios(out, scenarios)
    extra = {
        "images": [entry.record() for entry in staged],
        "variants": [variant.record() for variant in variants],
        "settings": settings.record(),
        "gate": state.gate.report(),
    }
    applied = _publish(out, scenarios, state.counts, [asdict(d) for d in state.drops], extra)
    return state, len(applied.kept)


def _publish(
    out: Path,
    scenarios: list[Scenario],
    counts: dict[str, int],
    drops: list[dict[str, Any]],
    extra: dict[str, Any],
) -> Applied:
    """Apply every recorded decision to the built `scenarios`, write the review files (all
    scenarios, decisions pre-filled) and the dataset (the kept ones)."""
    decisions = load_decisions(out)
    applied = apply_decisions(scenarios, decisions)
    variants = kept_files(extra.get("variants", []))
    shown = {
        digest: (d.decision, json.dumps(d.fix, ensure_ascii=False) if d.fix else "")
        for digest, d in by_digest(decisions).items()
    }
    export_review(out, scenarios, variants, shown)
    counts = {
        **counts,
        "reviewed_dropped": len(applied.drops),
        "reviewed_fixed": applied.fixed,
        "review_stale": len(applied.stale),
        "final": len(applied.kept),
    }
    extra = {**extra, "categories": diversity(applied.kept)}
    write_dataset(out, applied.kept, counts, [*drops, *applied.drops], variants, extra)
    return applied


def _republish(out: Path) -> Applied:
    """Rewrite the dataset of `out` from its built scenarios and the recorded decisions."""
    scenarios = load_scenarios(out)
    report_path = out / "build_report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    drops = [d for d in report.get("drops", []) if d.get("stage") != "review"]
    extra = {k: v for k, v in report.items() if k not in ("counts", "rows", "drops")}
    return _publish(out, scenarios, dict(report.get("counts", {})), drops, extra)


def build_dataset(
    images: list[Path],
    out: Path,
    models: BuildModels,
    per_image: int,
    captions: dict[str, str],
    image_options: ImageOptions = ImageOptions(),
    settings: BuildSettings = BuildSettings(),
) -> tuple[BuildState, int]:
    """Build a dataset from `images` into `out` (resumable: calls are kept in
    `OUT/build.sqlite`); the build's state and the scenarios kept."""
    return asyncio.run(_build(images, out, models, per_image, captions, image_options, settings))


def import_review(out: Path, review: Path) -> Applied:
    """Record the decisions of a `review.csv` and rewrite the dataset in `out`."""
    record_decisions(out, read_sheet(review, load_scenarios(out)))
    return _republish(out)


def merge_review(out: Path, first: Path, second: Path) -> tuple[Agreement, Applied]:
    """Compare two reviewers' sheets, record the decisions they agree on (conflicts are
    left undecided) and rewrite the dataset in `out`."""
    scenarios = load_scenarios(out)
    agreement = merge(read_sheet(first, scenarios), read_sheet(second, scenarios))
    sheet = f"{first.name} + {second.name}"
    record_decisions(out, [replace(d, sheet=sheet) for d in agreement.agreed])
    return agreement, _republish(out)
