"""Image captions for the judge: the authors' file, pinned and checksummed, or a local file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mtmcs.data.paths import MAX_CAPTIONS_BYTES, read_capped, regular_file
from mtmcs.data.pinned import cached_or_downloaded
from mtmcs.errors import ConfigError, DataError, Problem
from mtmcs.protocol.text import invalid_code_points

CAPTIONS_COMMIT = "9fa7c8489ede9b0f70599fa2c225634f45771e98"
CAPTIONS_SHA256 = "2fd9577f763477f4c01c804d5a8dd091b6d8878106190cc23ae7253845dec4d4"
CAPTIONS_URL = (
    "https://raw.githubusercontent.com/franciscoliu/MTMCS-Bench/"
    f"{CAPTIONS_COMMIT}/MTMCS_Bench_captions.json"
)


def cache_dir() -> Path:
    """Where downloaded files are kept (`$MTMCS_CACHE`, else `~/.cache/mtmcs`)."""
    return Path(os.environ.get("MTMCS_CACHE", Path.home() / ".cache" / "mtmcs"))


def parse_captions(text: str, source: str) -> dict[int, str]:
    """A JSON object mapping row ids ("0", "1", …) to captions."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise DataError([Problem(source, "", None, "", f"not valid JSON ({error})")]) from error
    if not isinstance(data, dict):
        raise DataError(
            [
                Problem(
                    source,
                    "",
                    None,
                    "",
                    f"expected a JSON object id → caption, got {type(data).__name__}",
                )
            ]
        )
    problems: list[Problem] = []
    captions: dict[int, str] = {}
    for key, caption in data.items():
        row_id = key.strip()
        if not (row_id.isascii() and row_id.isdigit()):
            problems.append(Problem(source, "", key, "", "key is not a row id"))
        elif int(row_id) in captions:
            problems.append(Problem(source, "", key, "", "a second caption for this row id"))
        elif not isinstance(caption, str) or not caption.strip():
            problems.append(Problem(source, "", key, "", "caption is not a non-empty string"))
        elif invalid := invalid_code_points(caption):
            problems.append(
                Problem(
                    source,
                    "",
                    key,
                    "",
                    f"caption contains {invalid} invalid code point(s) (lone UTF-16 surrogates)",
                )
            )
        else:
            captions[int(row_id)] = caption.strip()
    if problems:
        raise DataError(problems)
    return captions


def load_captions(path: Path, cap: int = MAX_CAPTIONS_BYTES) -> dict[int, str]:
    """Captions from a local JSON file: a regular file of at most `cap` bytes."""
    data = regular_file(path, cap) or read_capped(path, cap)
    if isinstance(data, str):
        raise ConfigError(f"cannot read captions file {path}: it {data}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError([Problem(str(path), "", None, "", f"not valid UTF-8 ({error})")]) from error
    return parse_captions(text, str(path))


def fetch_official_captions(
    url: str = CAPTIONS_URL, sha256: str = CAPTIONS_SHA256, path: Path | None = None
) -> dict[int, str]:
    """The authors' captions at the pinned commit, downloaded once and checksum-verified
    (the cached copy too)."""
    path = path or cache_dir() / f"MTMCS_Bench_captions-{CAPTIONS_COMMIT[:12]}.json"
    cached_or_downloaded(
        url,
        path,
        sha256,
        pin=f"the captions file at commit {CAPTIONS_COMMIT[:12]} of franciscoliu/MTMCS-Bench",
        what="the captions ",
        instead="or pass a captions file with --captions",
    )
    return load_captions(path)
