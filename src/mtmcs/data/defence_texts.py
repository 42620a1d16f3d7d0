"""The defence texts their authors published, read from their repositories at pinned commits
(`mtmcs run --defense-text original`, the default).

- AdaShield-S: `prompts/static_defense_prompt.txt` of SaFoLab-WISC/AdaShield (the static
  defence prompt its training starts from and its `AdaShield-S` baseline uses), verbatim.
- DPP: the suffixes trained for Llama-2-7B-Chat and Mistral-7B-Instruct-v0.2, published in the
  "Results" section of IBM/DPP's README (the training code publishes none); we use the one
  the README marks "Best" for Llama-2-7B-Chat, the family closest to the LLaVA-style models
  the paper evaluates. Its leading `\\n` (written as an escape in the README) is a newline.

Each file is downloaded once from raw.githubusercontent.com, checked against its SHA-256 and
kept in the cache (`mtmcs.data.captions.cache_dir()`), so a rerun works offline; a folder
holding the two repositories side by side (`AdaShield/prompts/…`, `DPP/README.md`) can be used
instead (`--defense-texts-dir`). As for the authors' rubrics (`mtmcs.data.authors_rubrics`),
the pins are the commits of the copies we could read and checksum (an index of stored public
repositories): each SHA-256 is that of the stored text, UTF-8 encoded.

AdaShield-A's pool of trained defence prompts (per-scenario `final_table.csv` files written
by its training runs) is not in its repository; `adashield-a` uses our pool
(`mtmcs.guardrails.defences.adashield`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mtmcs.data.captions import cache_dir
from mtmcs.data.pinned import cached_or_downloaded, check_sha256, read_file
from mtmcs.errors import ConfigError

__all__ = [
    "ADASHIELD_STATIC_FILE",
    "DPP_README_FILE",
    "DefenceText",
    "PinnedFile",
    "Placement",
    "Preset",
    "TextChoice",
    "adashield_static_text",
    "dpp_suffix",
    "pinned_text",
]

Preset = Literal["original", "ours", "file"]
"""Where a defence's text comes from: its authors' published text, ours, or a file."""
Placement = Literal["authors", "ours"]
"""Where a defence's text goes: where its authors put theirs, or where our versions did."""
TextChoice = Literal["original", "ours"] | Path
"""`--defense-text`: the authors' text (fetched), ours, or a file's."""


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """One file of a public GitHub repository at a commit, with its SHA-256."""

    repo: str  # owner/name
    commit: str
    path: str
    sha256: str
    host: str = "https://raw.githubusercontent.com"

    @property
    def url(self) -> str:
        """Where the file is downloaded from."""
        return f"{self.host}/{self.repo}/{self.commit}/{self.path}"

    @property
    def pin(self) -> str:
        """Which file this is, for messages."""
        return f"the file at commit {self.commit[:12]} of {self.repo}"

    @property
    def local_path(self) -> str:
        """The file's path in a folder of checkouts side by side: `<repository name>/<path>`."""
        return f"{self.repo.split('/')[1]}/{self.path}"


@dataclass(frozen=True, slots=True)
class DefenceText:
    """The text a defence adds, where it comes from and where it goes (all recorded in
    `summary.json`).

    `preset` says whose text it is; `placement` whether it goes where the defence's authors
    put theirs (`authors`: `original` and `file` texts) or where our earlier versions did
    (`ours`). `source` is the file (a pinned file's repository and path, or the
    `--defense-text` file; `mtmcs` for ours), `commit` the pin and `sha256` that of the file
    read (of the text itself for ours).
    """

    text: str
    preset: Preset
    source: str
    commit: str | None
    sha256: str
    placement: Placement = "authors"

    @classmethod
    def ours(cls, text: str, placement: Placement = "ours") -> DefenceText:
        """One of our texts, from this package."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        return cls(text, "ours", "mtmcs", None, digest, placement)

    @classmethod
    def from_file(cls, path: Path) -> DefenceText:
        """The text of a file (`--defense-text FILE`), without surrounding blank space."""
        data = read_file(path)
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            raise ConfigError(f"--defense-text {path} is not UTF-8 text ({error})") from error
        return cls(text, "file", str(path), None, hashlib.sha256(data).hexdigest())


ADASHIELD_STATIC_FILE = PinnedFile(
    "SaFoLab-WISC/AdaShield",
    "305df573f2579f4fc6927d682c3bcfe1828f469a",
    "prompts/static_defense_prompt.txt",
    "42652154f7926583845e074919d023a7403c8fd8237142e4a1b2f5816c0e963c",
)
DPP_README_FILE = PinnedFile(
    "IBM/DPP",
    "e1fc3abdf6d440853717ed5dddf448b656785789",
    "README.md",
    "a191574b957458139fc61f45264715fdb1dee0adc0e4c95c83d4fd9b7110f10d",
)
_DPP_BEST_LLAMA2 = re.compile(r"Llama2-7B-Chat\s+\* Best\s*```[^\n]*\n(.*?)\n```", re.DOTALL)


def adashield_static_text(source: Path | None = None, *, cache: Path | None = None) -> DefenceText:
    """AdaShield's static defence prompt, verbatim."""
    return pinned_text(ADASHIELD_STATIC_FILE, source, cache=cache)


def dpp_suffix(source: Path | None = None, *, cache: Path | None = None) -> DefenceText:
    """The DPP suffix IBM/DPP's README publishes as "Best" for Llama-2-7B-Chat, its leading
    `\\n` escape a newline."""
    readme = pinned_text(DPP_README_FILE, source, cache=cache)
    found = _DPP_BEST_LLAMA2.search(readme.text)
    if found is None:
        raise ConfigError(
            f"{readme.source} has no Llama-2-7B-Chat 'Best' suffix in its Results section"
        )
    suffix = found.group(1).strip()
    suffix = "\n" + suffix.removeprefix("\\n") if suffix.startswith("\\n") else suffix
    return DefenceText(suffix, "original", readme.source, readme.commit, readme.sha256)


def pinned_text(
    file: PinnedFile, source: Path | None = None, *, cache: Path | None = None
) -> DefenceText:
    """The whole text of `file`: from `source/<repository name>/<path>` if a folder is given,
    else downloaded once into `cache` (default: a folder named after the repository and the
    commit in `cache_dir()`). Downloaded, cached or local, it must match `file.sha256`."""
    if source is not None:
        path = source / file.local_path
        if not path.is_file():
            raise ConfigError(f"{file.repo}'s {file.path} is not in {source} (looked for {path})")
        data = read_file(path)
        check_sha256(data, file.sha256, str(path), file.pin)
    else:
        name = file.repo.split("/")[1]
        folder = cache or cache_dir() / f"{name}-{file.commit[:12]}"
        data = cached_or_downloaded(
            file.url,
            folder / file.path,
            file.sha256,
            pin=file.pin,
            instead="or pass --defense-texts-dir, or run with --defense-text ours",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:  # unreachable with the pinned checksums
        raise ConfigError(f"{file.repo}'s {file.path} is not UTF-8 text ({error})") from error
    return DefenceText(text, "original", f"{file.repo}/{file.path}", file.commit, file.sha256)
