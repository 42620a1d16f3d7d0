"""What a judge reads besides a dialogue, for passes over a finished run (`mtmcs rejudge`,
`mtmcs label`): the captions of the run's dataset and the run's rubric set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from mtmcs.data.authors_rubrics import AUTHORS_RUBRICS_COMMIT, load_authors_rubrics
from mtmcs.data.captions import fetch_official_captions, load_captions
from mtmcs.data.loaders import OFFICIAL_DATASET, SAMPLE_DIR
from mtmcs.errors import ConfigError, DataError, Problem
from mtmcs.protocol.rubrics import RUBRICS, Rubric
from mtmcs.scoring.runfiles import Summary

RubricSource = Literal["ours", "authors"]


def source_rubrics(summary: Summary) -> RubricSource:
    """The rubric set a run was judged with, as its summary says (`ours` when it does not)."""
    text = summary.metadata.rubrics or ""
    return "authors" if text.startswith("authors'") else "ours"


def rubrics_label(source: RubricSource) -> str:
    """How a summary names a rubric set (as `mtmcs run` writes it)."""
    if source == "authors":
        return f"authors' text at franciscoliu/MTMCS-Bench@{AUTHORS_RUBRICS_COMMIT}"
    return "ours (the authors' score anchors, our wording)"


def run_captions(dataset: str | None, given: Path | None, row_ids: Sequence[int]) -> dict[int, str]:
    """Captions of `row_ids` for a text judge: `given`, or those of the run's `dataset` (the
    authors' for the official dataset, `captions.json` of the sample or a dataset
    directory); a missing one is a `DataError` naming the row."""
    if given is not None:
        captions, source = load_captions(given), str(given)
    elif dataset == OFFICIAL_DATASET:
        captions, source = fetch_official_captions(), "the official captions"
    else:
        directory = SAMPLE_DIR if dataset == "sample" else Path(dataset or "")
        path = directory / "captions.json"
        if not dataset or not path.is_file():
            raise ConfigError(
                f"the judge needs image captions for multimodal dialogues and the run's dataset "
                f"{dataset or '?'} has no captions.json here: pass --captions FILE"
            )
        captions, source = load_captions(path), str(path)
    missing = sorted(set(row_ids) - set(captions))
    if missing:
        raise DataError(
            [Problem(source, "", row, "caption", "no caption for this row id") for row in missing]
        )
    return captions


def run_rubrics(
    summary: Summary, chosen: RubricSource | None = None, rubrics_dir: Path | None = None
) -> tuple[RubricSource, Mapping[str, Rubric]]:
    """A rubric set by name (`chosen`; `None`: the one the run was judged with) and its
    rubrics (the authors', checksummed, from `rubrics_dir` or their pinned download)."""
    source = chosen or source_rubrics(summary)
    return source, load_authors_rubrics(rubrics_dir) if source == "authors" else RUBRICS
