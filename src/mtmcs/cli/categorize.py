"""`mtmcs categorize`: assign each row's unsafe intent a harm category; write the mapping file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mtmcs.cli.console import console, errors
from mtmcs.cli.options import (
    DEFAULT_DATASET,
    ApiKeyEnvOption,
    DatasetOption,
    MaxRetriesOption,
    RevisionOption,
    SplitOption,
    TimeoutOption,
    base_urls,
    choice,
    splits,
)
from mtmcs.data.loaders import LoadOptions, load_benchmark
from mtmcs.models.registry import ProviderOptions, api_key
from mtmcs.passes.categorize import categorize_with_llm
from mtmcs.protocol.judge import DEFAULT_JUDGE
from mtmcs.scoring.categories import BY_ID, METHODS, CategoryMap, category_of
from mtmcs.scoring.categorize import (
    EMBEDDING_MODEL,
    categorize_with_embeddings,
    read_map,
    reusable,
    write_map,
)


def category_table(mapping: CategoryMap, intents: list[str]) -> Table:
    """Rows per category (each row counted once, by its intent), then rows without one."""
    counts = Counter(category_of(mapping, intent) for intent in intents)
    table = Table(title=f"harm categories ({mapping.method}, {mapping.model})")
    table.add_column("category")
    table.add_column("id")
    table.add_column("rows", justify="right")
    for category in BY_ID.values():
        table.add_row(category.name, category.id, str(counts[category.id]))
    if counts[None]:
        table.add_row("[red]no category[/]", "–", str(counts[None]))
    return table


def categorize(
    dataset: DatasetOption = DEFAULT_DATASET,
    split: SplitOption = None,
    revision: RevisionOption = None,
    method: Annotated[
        str, typer.Option(help="llm: ask --model; embedding: nearest category, offline.")
    ] = "llm",
    model: Annotated[str, typer.Option(help="LLM for --method llm, provider/model.")] = (
        DEFAULT_JUDGE
    ),
    base_url: Annotated[str | None, typer.Option(help="Server of the LLM.")] = None,
    api_key_env: ApiKeyEnvOption = None,
    max_connections: Annotated[int, typer.Option(min=1, help="LLM calls in flight.")] = 8,
    max_retries: MaxRetriesOption = 2,
    timeout: TimeoutOption = 120.0,
    out: Annotated[
        Path, typer.Option(help="Mapping file; reused: only intents it lacks are categorized.")
    ] = Path("categories.json"),
    store: Annotated[
        Path | None,
        typer.Option(
            help="Store of the LLM's calls (default: beside --out, same name, .sqlite); "
            "a rerun asks again only what failed."
        ),
    ] = None,
) -> None:
    """Assign each distinct unsafe intent one of our ten harm categories.

    With --method llm every call is kept in a store beside the mapping file
    (categories.json → categories.sqlite): a rerun makes no call but those that failed; an
    unparseable reply is read again from the store (delete the store to ask again).
    """
    chosen = choice(method, METHODS, "--method")
    options = ProviderOptions(
        base_url=base_url,
        max_retries=max_retries,
        timeout=timeout,
        connections=max_connections,
        api_key_env=api_key_env,
    )
    name = model if chosen == "llm" else EMBEDDING_MODEL
    previous = reusable(read_map(out), chosen, name, out)
    if chosen == "llm":  # a bad URL or a missing key is reported before any work
        base_urls([base_url] if base_url else None, "--base-url", model)
        api_key(model, options)
    benchmark = load_benchmark(dataset, splits(split), revision, LoadOptions(check_images=False))
    intents = [row.unsafe_intent for row in benchmark.rows]
    if chosen == "llm":
        mapping = categorize_with_llm(
            intents, previous, name, options, store or out.with_suffix(".sqlite")
        )
    else:
        mapping = categorize_with_embeddings(intents, previous)
    write_map(out, mapping)
    console.print(category_table(mapping, intents))
    distinct = set(intents)
    console.print(
        f"{len(distinct)} distinct intents in {len(intents)} rows, "
        f"{len(distinct & previous.assignments.keys())} already in the mapping; mapping: {out}",
        soft_wrap=True,
    )
    failed = {intent: cause for intent, cause in mapping.errors.items() if intent in distinct}
    if failed:
        errors.print(
            f"[yellow]{len(failed)} of {len(distinct)} intents got no category[/] "
            "(rerun to retry only them):",
            soft_wrap=True,
        )
        for intent, cause in list(failed.items())[:10]:
            errors.print(f"  {intent!r}: {cause}", markup=False, soft_wrap=True)
        raise typer.Exit(3)
