"""The images and captions of the runs' multimodal dialogues, for the HTML dialogue view.

Each run's summary names its dataset (`sample`, a local directory, or the hub dataset) and
revision; the dataset is opened through the data loaders without decoding every image, and
each image the dialogues show is downscaled (longest side `max_side`) and encoded once, as a
JPEG (a PNG when it has transparency) data URL, whatever number of dialogues (or rows, or
datasets) show the same bytes. The
captions are the ones a text judge reads: the dataset's `captions.json`, a file given with
`--captions`, or the authors' captions when they are already downloaded. The report never
downloads anything: the hub dataset is read only from the local cache. A dataset that
cannot be read leaves the images out with a note; it never fails the report.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from mtmcs.data.captions import CAPTIONS_COMMIT, cache_dir, load_captions
from mtmcs.data.loaders import OFFICIAL_DATASET, Benchmark, LoadOptions, load_benchmark
from mtmcs.data.records import image_id
from mtmcs.errors import MtmcsError
from mtmcs.protocol.types import SPLITS, Split
from mtmcs.report.export import RunRecords

MAX_SIDE = 384
JPEG_QUALITY = 80
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True, slots=True)
class Media:
    """Images as data URLs by content digest, the digest of each image key, captions by
    key, and notes on what could not be shown."""

    images: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def source_key(records: RunRecords) -> str:
    """The dataset and revision a run read, as one key."""
    meta = records.run.metadata
    return f"{meta.dataset or ''}@{meta.revision or ''}"


def image_key(source: str, split: str, row_id: int, variant: int) -> str:
    """The key of one image of one dataset."""
    return f"{source}:{image_id(cast(Split, split), row_id, variant)}"


def caption_key(source: str, row_id: int) -> str:
    """The key of one row's caption (captions are per row id, as the judge reads them)."""
    return f"{source}:{row_id}"


def data_url(data: bytes, max_side: int = MAX_SIDE) -> str:
    """An image downscaled to `max_side` (never enlarged), as a JPEG or PNG data URL."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((max_side, max_side))
        alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        converted = image.convert("RGBA" if alpha else "RGB")
    buffer = io.BytesIO()
    if alpha:
        converted.save(buffer, "PNG", optimize=True)
        kind = "png"
    else:
        converted.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


@contextmanager
def _offline() -> Iterator[None]:
    """The hub libraries told to use their local cache only, for the duration."""
    saved = {name: os.environ.get(name) for name in OFFLINE_VARIABLES}
    os.environ.update(dict.fromkeys(OFFLINE_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _open(dataset: str, revision: str | None, splits: Sequence[Split], variants: bool) -> Benchmark:
    options = LoadOptions(variants=variants, check_images=False)
    name = "official" if dataset == OFFICIAL_DATASET else dataset
    if name not in ("official", "sample") and not Path(name).is_dir():
        raise FileNotFoundError(f"no directory {name} here")
    with _offline():
        return load_benchmark(name, splits, revision, options)


def _captions(benchmark: Benchmark, dataset: str, given: Path | None) -> dict[int, str]:
    if given is not None:
        return load_captions(given)
    if benchmark.captions_path is not None:
        return load_captions(benchmark.captions_path)
    official = cache_dir() / f"MTMCS_Bench_captions-{CAPTIONS_COMMIT[:12]}.json"
    if dataset == OFFICIAL_DATASET and official.is_file():
        return load_captions(official)
    return {}


def scenario_media(
    runs: Sequence[RunRecords], captions: Path | None = None, max_side: int = MAX_SIDE
) -> Media:
    """The images and captions of the runs' multimodal dialogues (see the module)."""
    media = Media()
    wanted: dict[str, dict[tuple[str, int, int], None]] = {}
    for records in runs:
        chosen = wanted.setdefault(source_key(records), {})
        for record in records.dialogues:
            row_id = record.get("row_id")
            if record.get("modality") == "multimodal" and row_id is not None:
                chosen[(str(record["split"]), row_id, record.get("image_variant") or 0)] = None
    dataset_of = {source_key(r): r.run.metadata for r in runs}
    for source, keys in wanted.items():
        if not keys:
            continue
        meta = dataset_of[source]
        dataset = meta.dataset or ""
        splits = [s for s in SPLITS if any(split == s for split, _, _ in keys)]
        try:
            benchmark = _open(dataset, meta.revision, splits, any(v for _, _, v in keys))
            texts = _captions(benchmark, dataset, captions)
        except (MtmcsError, OSError, ImportError) as error:
            first = str(error).splitlines()[0]
            media.notes.append(
                f"images and captions of dataset {dataset or '?'} not shown: it cannot be read "
                f"here ({first})"
            )
            continue
        missing = 0
        for split, row_id, variant in keys:
            shown = image_key(source, split, row_id, variant)
            try:
                data = benchmark.image_bytes(image_id(cast(Split, split), row_id, variant))
                digest = hashlib.sha256(data).hexdigest()[:16]
                if digest not in media.images:
                    media.images[digest] = data_url(data, max_side)
                media.digests[shown] = digest
            except Exception:  # an unreadable image is left out, never fails the report
                missing += 1
            if row_id in texts:
                media.captions[caption_key(source, row_id)] = texts[row_id]
        if missing:
            media.notes.append(f"{missing} image(s) of dataset {dataset} could not be read")
    return media
