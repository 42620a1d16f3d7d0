"""The authors' six judge rubrics, read from their prompt files at a pinned commit (`--rubrics
authors`).

The two files of franciscoliu/MTMCS-Bench that hold them are downloaded once, checked against
their SHA-256 and kept in the cache (`mtmcs.data.captions.cache_dir()`), so a rerun works
offline; a local folder holding the two files can be used instead. The rubric texts are the
module-level string constants of those files, read with `ast`: the files are never executed
or imported.

Pinned at commit 051230d2ef78…, not at the captions' commit 9fa7c8489ede…: a pin needs each
file's checksum known in advance, and the only copies of these two files we could read and
checksum (an index of stored public repositories) are at 051230d2ef78; it holds no copy at
9fa7c8489ede. Each SHA-256 below is that of the stored text, UTF-8 encoded.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from mtmcs.data.captions import cache_dir
from mtmcs.data.pinned import cached_or_downloaded, check_sha256, read_file
from mtmcs.errors import ConfigError
from mtmcs.protocol.rubrics import AUTHORS_CONSTANTS, Rubric, authors_rubrics

__all__ = [
    "AUTHORS_RUBRICS_COMMIT",
    "AUTHORS_RUBRICS_SHA256",
    "AUTHORS_RUBRICS_URL",
    "authors_rubric_texts",
    "load_authors_rubrics",
]

AUTHORS_RUBRICS_COMMIT = "051230d2ef78d3e8cf0278f40afa2c52f2db8def"
AUTHORS_RUBRICS_URL = (
    f"https://raw.githubusercontent.com/franciscoliu/MTMCS-Bench/{AUTHORS_RUBRICS_COMMIT}"
)
"""Base URL: each file is fetched from `<base>/<path in the repository>`."""

SAFETY_FILE = "evaluation/safety_aware/eval_prompt.py"
HELPFULNESS_FILE = "evaluation/helpfulness/eval_prompt.py"

AUTHORS_RUBRICS_SHA256: Mapping[str, str] = MappingProxyType(
    {
        SAFETY_FILE: "2049899acff006fe5fa402be10a6164c58734c7219c2ba6c3c7703553ecd37d7",
        HELPFULNESS_FILE: "a538cd42fc53a812249412e4d7abd9ee5830a4affc5b969d8a49816df8316645",
    }
)
"""Path in the repository → SHA-256 of the file at `AUTHORS_RUBRICS_COMMIT`."""

_PIN = f"the file at commit {AUTHORS_RUBRICS_COMMIT[:12]} of franciscoliu/MTMCS-Bench"

_CONSTANTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        SAFETY_FILE: tuple(name for name in AUTHORS_CONSTANTS if name.startswith("SAFETY_")),
        HELPFULNESS_FILE: tuple(name for name in AUTHORS_CONSTANTS if name.startswith("HELP")),
    }
)


def load_authors_rubrics(
    source: Path | None = None,
    *,
    base_url: str = AUTHORS_RUBRICS_URL,
    sha256: Mapping[str, str] = AUTHORS_RUBRICS_SHA256,
    cache: Path | None = None,
) -> Mapping[str, Rubric]:
    """The authors' six rubrics, keyed like `mtmcs.protocol.rubrics.RUBRICS`; arguments as in
    `authors_rubric_texts`."""
    texts = authors_rubric_texts(source, base_url=base_url, sha256=sha256, cache=cache)
    try:
        return authors_rubrics(texts)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def authors_rubric_texts(
    source: Path | None = None,
    *,
    base_url: str = AUTHORS_RUBRICS_URL,
    sha256: Mapping[str, str] = AUTHORS_RUBRICS_SHA256,
    cache: Path | None = None,
) -> dict[str, str]:
    """The six prompt texts by the authors' constant names, each verbatim.

    From `source` if given: a folder holding the two files as in the repository
    (`evaluation/…`), as in its `evaluation` folder (`safety_aware/eval_prompt.py`, …) or side by
    side (`safety_aware_eval_prompt.py`, `helpfulness_eval_prompt.py`). Otherwise from
    `<base_url>/<path>`, downloaded once into `cache` (default: a folder named after the commit
    in `cache_dir()`). Every file, downloaded, cached or local, must match its `sha256` entry.
    """
    folder = cache or cache_dir() / f"MTMCS-Bench-{AUTHORS_RUBRICS_COMMIT[:12]}"
    texts: dict[str, str] = {}
    for path, expected in sha256.items():
        if source is not None:
            data, origin = _local(source, path, expected)
        else:
            url, cached = f"{base_url}/{path}", folder / path
            origin = str(cached) if cached.is_file() else url
            data = cached_or_downloaded(
                url,
                cached,
                expected,
                pin=_PIN,
                what="the authors' rubric file ",
                instead="then run again",
            )
        texts.update(_rubric_constants(data, origin, _CONSTANTS.get(path, ())))
    return texts


def _local(source: Path, path: str, expected: str) -> tuple[bytes, str]:
    inside = path.removeprefix("evaluation/")
    candidates = [source / path, source / inside, source / inside.replace("/", "_")]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    if found is None:
        looked = ", ".join(str(candidate) for candidate in candidates)
        raise ConfigError(
            f"the authors' rubric file {path} is not in {source} (looked for {looked})"
        )
    data = read_file(found)
    check_sha256(data, expected, str(found), _PIN)
    return data, str(found)


def _rubric_constants(data: bytes, origin: str, names: tuple[str, ...]) -> dict[str, str]:
    """`names` read from the module-level string constants of a Python file (parsed, never run)."""
    try:
        module = ast.parse(data.decode("utf-8-sig"), filename=origin)
    except (UnicodeDecodeError, SyntaxError, ValueError) as error:
        raise ConfigError(f"{origin} is not a readable Python file ({error})") from error
    bindings = _string_bindings(module)
    missing = [name for name in names if name not in bindings]
    if missing:
        raise ConfigError(f"{origin} lacks the rubric constant(s) {', '.join(missing)}")
    computed = [name for name in names if bindings[name] is None]
    if computed:
        raise ConfigError(
            f"{origin}: {', '.join(computed)} is not a plain string literal "
            "(a computed value is never evaluated)"
        )
    return {name: text for name in names if (text := bindings[name]) is not None}


def _string_bindings(module: ast.Module) -> dict[str, str | None]:
    """Module-level names bound by assignment: a plain string literal's value, else None
    (computed, augmented); the last binding wins, as when the module runs."""
    bindings: dict[str, str | None] = {}
    for node in module.body:
        targets: list[ast.expr]
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.AugAssign):
            targets, value = [node.target], None
        else:
            continue
        literal = (
            value.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str)
            else None
        )
        for target in targets:
            if isinstance(target, ast.Name):
                bindings[target.id] = literal
    return bindings
