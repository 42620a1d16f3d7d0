"""`mtmcs build`: images → a dataset in the official layout, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtmcs.build.pipeline import find_images, load_captions, planned_calls
from mtmcs.build.run import BuildModels, build_dataset, import_review
from mtmcs.cli.console import console
from mtmcs.cli.options import ApiKeyEnvOption, MaxRetriesOption, TimeoutOption, base_urls
from mtmcs.errors import ConfigError


def _print_plan(images: int, per_image: int, uncaptioned: int) -> None:
    plan = planned_calls(images, per_image, uncaptioned)
    console.print(f"{images} images, {per_image} intents each; planned calls:")
    for stage, count in plan.items():
        console.print(f"  {stage}: {count}")
    console.print(f"  total: {sum(plan.values())} (before retries and drops)")


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
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Build a dataset in the official schema from a folder of images (resumable).

    Every model call is kept in OUT/build.sqlite: a rerun on the same --out makes no call
    but those that failed.
    """
    if import_review_file is not None:
        kept, dropped = import_review(out, import_review_file)
        console.print(f"review applied: {kept} kept, {dropped} dropped; dataset written to {out}")
        return
    if images_dir is None or not images_dir.is_dir():
        raise ConfigError(f"IMAGES_DIR {images_dir} is not a folder of images")
    images = find_images(images_dir)
    if not images:
        raise ConfigError(f"no images (png, jpg, gif, webp) in {images_dir}")
    given = load_captions(captions) if captions is not None else {}
    if dry_run:
        _print_plan(len(images), per_image, sum(path.name not in given for path in images))
        return
    if model is None:
        raise ConfigError("--model is required (provider/model)")
    base_urls([base_url] if base_url else None, "--base-url", model)
    missing = [name for name in given if name not in {path.name for path in images}]
    if missing:
        raise ConfigError(f"--captions names files not in {images_dir}: {', '.join(missing[:5])}")
    models = BuildModels(
        model, captioner or model, reference or model, base_url, max_retries, timeout, api_key_env
    )
    state, rows = build_dataset(images, out, models, per_image, given)
    for name, value in state.counts.items():
        console.print(f"{name}: {value}")
    console.print(
        f"{rows} rows per split written to {out} ({state.new_calls} new calls, "
        f"{state.cached_calls} from the store, {state.failed_calls} failed; "
        f"{len(state.drops)} drops in build_report.json); "
        f"review: {out / 'review' / 'review.html'}"
    )
