"""Options and checks shared by several commands (light: imported by `mtmcs --help`'s
commands only when they run, but kept free of heavy imports all the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer

from mtmcs.protocol.types import MODALITIES, SPLITS, Modality, Split

Choice = TypeVar("Choice", bound=str)

DATASET_HELP = "'official' (ND-25/MCS-bench), 'sample' (bundled) or a directory."
SPLIT_HELP = "type_a and/or type_b (default: both)."
MODALITY_HELP = "multimodal and/or unimodal (default: both)."
REVISION_HELP = "Hub revision of the official dataset."

DatasetOption = Annotated[str, typer.Option("--dataset", help=DATASET_HELP)]
SplitOption = Annotated[list[str] | None, typer.Option("--split", help=SPLIT_HELP)]
ModalityOption = Annotated[list[str] | None, typer.Option("--modality", help=MODALITY_HELP)]
RevisionOption = Annotated[str | None, typer.Option("--revision", help=REVISION_HELP)]
LimitOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="First N rows of each split.")
]
MaxRetriesOption = Annotated[
    int, typer.Option("--max-retries", min=0, help="SDK retries per call.")
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Seconds per call.")]


def choice(value: str, allowed: tuple[Choice, ...], option: str) -> Choice:
    """`value` if it is one of `allowed`, else a usage error naming `option`."""
    for allowed_value in allowed:
        if value == allowed_value:
            return allowed_value
    raise typer.BadParameter(f"{value}: expected one of {', '.join(allowed)}", param_hint=option)


def choices(
    values: list[str] | None, allowed: tuple[Choice, ...], option: str
) -> tuple[Choice, ...]:
    """Every value of a repeatable option checked (`allowed`, all of them, when none)."""
    if not values:
        return allowed
    return tuple(choice(value, allowed, option) for value in values)


def splits(values: list[str] | None) -> tuple[Split, ...]:
    """The `--split` values, checked; both splits when none."""
    return choices(values, SPLITS, "--split")


def modalities(values: list[str] | None) -> tuple[Modality, ...]:
    """The `--modality` values, checked; both modalities when none."""
    return choices(values, MODALITIES, "--modality")


def default_dir(prefix: str, name: str, suffix: str = "") -> Path:
    """`runs/<prefix><name with / as __><suffix>`: where a command writes by default."""
    return Path("runs") / (prefix + name.replace("/", "__") + suffix)
