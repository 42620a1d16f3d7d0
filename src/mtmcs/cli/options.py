"""Options and checks shared by several commands (light: imported by `mtmcs --help`'s
commands only when they run, but kept free of heavy imports all the same)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mtmcs.errors import UsageError
from mtmcs.protocol.types import MODALITIES, SPLITS, Modality, Split

Choice = TypeVar("Choice", bound=str)

DEFAULT_DATASET = "official"
DATASET_HELP = (
    "'official' (ND-25/MCS-bench on the hub; the default), 'sample' (bundled, offline) or a "
    "directory."
)
SPLIT_HELP = "type_a and/or type_b (default: both)."
MODALITY_HELP = "multimodal and/or unimodal (default: both)."
REVISION_HELP = "Hub revision of the official dataset."


def dataset_option(panel: str | None = None) -> Any:
    """`--dataset` (default `DEFAULT_DATASET`), in the help panel `panel`."""
    return typer.Option("--dataset", help=DATASET_HELP, rich_help_panel=panel)


def key_env_option(option: str, whose: str, panel: str | None = None) -> Any:
    """An option naming the environment variable that holds the API key of `whose` (see
    `mtmcs.models.registry.api_key`); the name is kept, never the key."""
    return typer.Option(
        option,
        metavar="NAME",
        help=f"Environment variable holding the API key of {whose} (default: OPENAI_API_KEY "
        "for openai/ and for api.openai.com, ANTHROPIC_API_KEY for anthropic/; any other "
        "OpenAI-compatible server gets no key).",
        rich_help_panel=panel,
    )


DatasetOption = Annotated[str, dataset_option()]
ApiKeyEnvOption = Annotated[str | None, key_env_option("--api-key-env", "the model called")]
JudgeApiKeyEnvOption = Annotated[str | None, key_env_option("--judge-api-key-env", "the judge")]
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


def writable_dir(path: Path, option: str = "--out") -> Path:
    """`path`, made if missing and checked writable before any work: a path under a file, a
    read-only place or a full disk is a `UsageError` naming `option`."""
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(
            f"{option} {path}: cannot write there ({reason}); choose a writable directory"
        ) from None
    return path


def default_dir(prefix: str, name: str, suffix: str = "") -> Path:
    """`runs/<prefix><name with / as __><suffix>`: where a command writes by default."""
    return Path("runs") / (prefix + name.replace("/", "__") + suffix)


def base_urls(values: Sequence[str] | None, option: str, model: str) -> tuple[str, ...]:
    """The values of a base-URL option, each checked before any work: one without an http
    or https scheme or without a host is a `UsageError` naming `option`; for an
    `openai-compatible/…` model, a path not ending in `/v1` gets a warning (some servers
    use other paths, so it is not an error)."""
    from mtmcs.cli.console import errors
    from mtmcs.models.registry import base_url_problem
    from mtmcs.models.transport import lacks_v1

    urls = tuple(values or ())
    for url in urls:
        problem = base_url_problem(url)
        if problem is not None:
            raise UsageError(f"{option} {url} {problem}")
        if model.startswith("openai-compatible/") and lacks_v1(url):
            errors.print(
                f"warning: {option} {url} does not end in /v1, where OpenAI-compatible "
                f"servers answer; if calls get HTTP 404, try {url.rstrip('/')}/v1",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    return urls
