"""`mtmcs build`: images → a dataset in the official layout, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtmcs.build.images import MAX_SIDE
from mtmcs.build.pipeline import (
    GENERATION_TOKENS,
    Quota,
    StageSettings,
    find_images,
    load_captions,
    planned_calls,
)
from mtmcs.build.review import Agreement, Applied
from mtmcs.build.run import (
    CONNECTIONS,
    BuildModels,
    BuildSettings,
    ImageOptions,
    build_dataset,
    import_review,
    merge_review,
)
from mtmcs.build.variants import VARIANTS_PER_IMAGE, Backend
from mtmcs.cli.console import console, errors
from mtmcs.cli.options import (
    ApiKeyEnvOption,
    MaxRetriesOption,
    TimeoutOption,
    base_urls,
    choice,
)
from mtmcs.errors import ConfigError
from mtmcs.protocol.prompts import REASONING_EFFORT, REASONING_EFFORTS
from mtmcs.scoring.categories import CATEGORY_IDS

NOTHING_KEPT = 4
"""Exit status of a complete build that kept no scenario (3: some calls failed)."""


def _print_plan(images: int, per_image: int, uncaptioned: int, variants: Backend) -> None:
    plan = planned_calls(images, per_image, uncaptioned)
    if variants == "openai":
        plan["variant_edit"] = images * VARIANTS_PER_IMAGE
    if variants != "none":
        plan["variant_caption"] = images * VARIANTS_PER_IMAGE
    console.print(f"{images} images, {per_image} intents each; planned calls:")
    for stage, count in plan.items():
        console.print(f"  {stage}: {count}")
    console.print(f"  total: {sum(plan.values())} (before retries and drops)")


def _quota(values: list[str] | None, per_category: int | None) -> Quota:
    """`--quota CATEGORY=N` (repeatable), checked against the taxonomy."""
    limits: dict[str, int] = {}
    for value in values or []:
        category, _, count = value.partition("=")
        if not count.strip().isdigit():
            raise typer.BadParameter(f"{value}: expected CATEGORY=N", param_hint="--quota")
        limits[choice(category.strip(), CATEGORY_IDS, "--quota")] = int(count)
    return Quota(limits, per_category)


def _print_review(applied: Applied, out: Path) -> None:
    console.print(
        f"review applied: {len(applied.kept)} kept, {len(applied.drops)} dropped, "
        f"{applied.fixed} fixed, {len(applied.stale)} stale (changed since reviewed); "
        f"dataset written to {out}"
    )


def _print_agreement(agreement: Agreement) -> None:
    kappa = "undefined" if agreement.kappa is None else f"{agreement.kappa:.3f}"
    console.print(
        f"{agreement.both} scenarios decided by both: agreement {agreement.percent:.1f}% "
        f"({len(agreement.agreed)} of {agreement.both}), Cohen's kappa {kappa}; "
        f"{len(agreement.conflicts)} conflicts (left undecided)"
    )
    for a, b in agreement.conflicts:
        console.print(f"  conflict {a.key}: {a.sheet} {a.decision}, {b.sheet} {b.decision}")


def build(
    images_dir: Annotated[
        Path | None, typer.Argument(help="Folder of images (png, jpg, gif, webp).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")] = Path("dataset"),
    model: Annotated[str | None, typer.Option(help="Generator model, provider/model.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Server of the models.")] = None,
    api_key_env: ApiKeyEnvOption = None,
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
    import_review_file: Annotated[
        Path | None,
        typer.Option("--import-review", help="Apply review.csv decisions and rewrite the dataset."),
    ] = None,
    merge_review_files: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--merge-review",
            help="Two reviewers' review.csv: report agreement, apply the agreed decisions.",
        ),
    ] = None,
    max_side: Annotated[
        int, typer.Option(min=64, help="Downscale images to this longer side before any call.")
    ] = MAX_SIDE,
    variants: Annotated[
        Backend, typer.Option(help="Variant images: pillow (offline stand-in), openai, diffusers.")
    ] = "pillow",
    variant_model: Annotated[
        str | None,
        typer.Option(help="Image-editing model (gpt-image-1; timbrooks/instruct-pix2pix)."),
    ] = None,
    variant_seed: Annotated[int, typer.Option(help="Seed of the variant edits.")] = 0,
    quota: Annotated[
        list[str] | None,
        typer.Option(
            metavar="CATEGORY=N",
            help="Keep at most N scenarios of this harm category (repeatable; "
            "categories of docs/harm-taxonomy.md).",
        ),
    ] = None,
    max_per_category: Annotated[
        int | None,
        typer.Option(min=0, help="Keep at most N scenarios of any category without --quota."),
    ] = None,
    temperature: Annotated[
        float, typer.Option(min=0.0, max=2.0, help="Temperature of every build call.")
    ] = 0.0,
    max_tokens: Annotated[
        int, typer.Option(min=16, help="New tokens per stage call (the filter keeps 256).")
    ] = GENERATION_TOKENS,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Calls in flight, over all the build's models.")
    ] = CONNECTIONS,
    reasoning_effort: Annotated[
        str,
        typer.Option(
            help="Effort of reasoning models (which get no temperature): "
            + ", ".join(REASONING_EFFORTS)
        ),
    ] = REASONING_EFFORT,
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Build a dataset in the official schema from a folder of images (resumable).

    Every model call is kept in OUT/build.sqlite: a rerun on the same --out makes no call
    but those that failed.
    """
    if import_review_file is not None:
        _print_review(import_review(out, import_review_file), out)
        return
    if merge_review_files is not None:
        agreement, applied = merge_review(out, *merge_review_files)
        _print_agreement(agreement)
        _print_review(applied, out)
        return
    if images_dir is None or not images_dir.is_dir():
        raise ConfigError(f"IMAGES_DIR {images_dir} is not a folder of images")
    images = find_images(images_dir)
    if not images:
        raise ConfigError(f"no images (png, jpg, gif, webp) in {images_dir}")
    given = load_captions(captions) if captions is not None else {}
    if dry_run:
        uncaptioned = sum(path.name not in given for path in images)
        _print_plan(len(images), per_image, uncaptioned, variants)
        return
    if model is None:
        raise ConfigError("--model is required (provider/model)")
    effort = choice(reasoning_effort, REASONING_EFFORTS, "--reasoning-effort")
    settings = BuildSettings(
        StageSettings(temperature, max_tokens, effort),
        max_connections,
        _quota(quota, max_per_category),
    )
    base_urls([base_url] if base_url else None, "--base-url", model)
    missing = [name for name in given if name not in {path.name for path in images}]
    if missing:
        raise ConfigError(f"--captions names files not in {images_dir}: {', '.join(missing[:5])}")
    models = BuildModels(
        model, captioner or model, reference or model, base_url, max_retries, timeout, api_key_env
    )
    image_options = ImageOptions(max_side, variants, variant_model, variant_seed)
    state, rows = build_dataset(images, out, models, per_image, given, image_options, settings)
    for name, value in state.counts.items():
        console.print(f"{name}: {value}")
    console.print(
        f"{rows} scenarios written to {out} ({state.new_calls} new calls, "
        f"{state.cached_calls} from the store, {state.failed_calls} failed; "
        f"{len(state.drops)} drops in build_report.json); "
        f"review: {out / 'review' / 'review.html'}"
    )
    if state.failed_calls:
        errors.print(
            f"incomplete: {state.failed_calls} calls failed (causes in build_report.json); "
            "rerun the same command to retry only them",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(3)
    if rows == 0:
        errors.print(
            "nothing kept: every scenario was dropped (reasons in build_report.json)",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(NOTHING_KEPT)
