"""Loaders: the official hub dataset, a local parquet directory, JSONL + images, the sample."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mtmcs.data.intake import ImageIntake, ImageRef
from mtmcs.data.paths import MAX_IMAGE_BYTES, dataset_file, megabytes, read_capped, regular_file
from mtmcs.data.records import RawImage, duplicate_problems, parse_record
from mtmcs.errors import ConfigError, DataError, Problem
from mtmcs.protocol.types import SPLITS, Row, Split

OFFICIAL_DATASET = "ND-25/MCS-bench"
SAMPLE_DIR = Path(__file__).parent / "sample"
REQUIRED_COLUMNS = (
    "id",
    "image",
    "unsafe_intent",
    "multimodal_dialogue",
    "unimodal_dialogue",
    "multimodal_mcq",
    "unimodal_mcq",
    "multimodal_tf",
    "unimodal_tf",
)


@dataclass(frozen=True)
class Benchmark:
    """Validated rows of one or both splits, their images and where they came from."""

    name: str
    revision: str | None
    rows: tuple[Row, ...]
    images: Mapping[str, ImageRef] = field(repr=False)
    captions_path: Path | None = None
    images_decoded: int = 0

    def image_bytes(self, image_id: str) -> bytes:
        """The encoded bytes of an image, read on demand."""
        return self.images[image_id]()


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What to read besides the text: variant images, whether to decode every image, and
    the largest image accepted (bytes)."""

    variants: bool = False
    check_images: bool = True
    max_image_bytes: int = MAX_IMAGE_BYTES


ImageRecord = tuple[dict[str, Any], list[RawImage], list[ImageRef]]


CHECK_BATCH = 32


def _check(
    records: Iterable[ImageRecord],
    split: Split,
    source: str,
    intake: ImageIntake | None,
) -> tuple[list[Row], dict[str, ImageRef], list[Problem]]:
    """Typed rows and every problem; images go through `intake`, a batch at a time."""
    rows: list[Row] = []
    images: dict[str, ImageRef] = {}
    problems: list[Problem] = []
    ids: list[object] = []
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, CHECK_BATCH)):
        flat = [image for _, raw, _ in batch for image in raw]
        lazy = [ref for _, _, refs in batch for ref in refs]
        if intake is not None:  # the whole batch at once, decoded in parallel
            taken = intake.take(flat)
            flat = [image for image, _ in taken]
            lazy = [spooled or ref for (_, spooled), ref in zip(taken, lazy, strict=True)]
        start = 0
        for record, raw, _ in batch:
            end = start + len(raw)
            ids.append(record.get("id"))
            row, found = parse_record(record, split, source, flat[start:end], check_images=False)
            problems += found
            if row is not None:
                rows.append(row)
                keys = (row.image_id, *row.variant_image_ids)
                images.update(zip(keys, lazy[start:end], strict=True))
            start = end
    problems += duplicate_problems(ids, split, source)
    return rows, images, problems


def _image_data(value: object, cap: int) -> bytes | str:
    """An image's bytes from an Arrow image column; a path without bytes is never opened."""
    if isinstance(value, Mapping) and isinstance(value.get("bytes"), bytes) and value["bytes"]:
        if len(value["bytes"]) > cap:
            return f"image is {megabytes(len(value['bytes']))}, over the {megabytes(cap)} cap"
        return bytes(value["bytes"])
    return "no image bytes"


def _dataset_rows(dataset: Any, columns: list[str]) -> Iterator[dict[str, Any]]:
    """Rows of `columns`, read from the dataset's Arrow files with plain reads, a batch at a
    time: memory-mapped pages of every image would otherwise stay in the process's memory."""
    import pyarrow as pa

    files = [entry["filename"] for entry in dataset.cache_files]
    if not files:  # held in memory: raw Arrow too (decoding would open an image's `path`)
        for table in dataset.select_columns(columns).with_format("arrow").iter(CHECK_BATCH):
            yield from table.to_pylist()
        return
    for filename in files:
        with pa.OSFile(filename) as source:
            for batch in pa.ipc.open_stream(source):
                yield from batch.select(columns).to_pylist()


def _dataset_records(dataset: Any, options: LoadOptions) -> Iterator[ImageRecord]:
    """Records with their images; image bytes are read only where they are checked.

    Unchecked images (a dry run) are read lazily from the dataset when asked for.
    """
    base = dataset.data.column("image")
    variants = dataset.data.column("variant_images") if options.variants else None
    skip = set() if options.check_images else {"image", "variant_images"}
    if not options.variants:
        skip.add("variant_images")
    columns = [c for c in dataset.column_names if c not in skip]
    for index, record in enumerate(_dataset_rows(dataset, columns)):
        cap = options.max_image_bytes
        data = _image_data(record["image"], cap) if options.check_images else b""
        images = [RawImage("image", data)]
        refs: list[ImageRef] = [partial(_arrow_image, base, index)]
        if variants is not None:
            listed = (
                record["variant_images"]
                if options.check_images
                else [None] * len(variants[index].values or ())
            )
            if not listed:
                images.append(RawImage("variant_images", "no variant images (--variants)"))
                refs.append(partial(bytes))
            for k, item in enumerate(listed or ()):
                data = _image_data(item, cap) if options.check_images else b""
                images.append(RawImage(f"variant_images[{k}]", data))
                refs.append(partial(_arrow_variant, variants, index, k))
        yield record, images, refs


def _arrow_image(column: Any, index: int) -> bytes:
    return bytes(column[index]["bytes"].as_py())


def _arrow_variant(column: Any, index: int, k: int) -> bytes:
    return bytes(column[index].values[k]["bytes"].as_py())


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _release_arrow_memory() -> None:
    """Hand the batches' memory back: Arrow's allocator otherwise keeps it for reuse."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _finish(
    name: str,
    revision: str | None,
    parts: list[tuple[list[Row], dict[str, ImageRef], list[Problem]]],
    intake: ImageIntake | None,
    captions_path: Path | None = None,
) -> Benchmark:
    if intake is not None:
        intake.close()
    _release_arrow_memory()
    problems = [problem for _, _, found in parts for problem in found]
    if problems:
        raise DataError(problems)
    rows = tuple(row for found, _, _ in parts for row in found)
    images = {key: ref for _, refs, _ in parts for key, ref in refs.items()}
    decoded = intake.decoded if intake is not None else 0
    return Benchmark(name, revision, rows, images, captions_path, decoded)


def load_official(
    splits: Iterable[Split] = SPLITS,
    revision: str | None = None,
    repo: str = OFFICIAL_DATASET,
    options: LoadOptions = LoadOptions(),
) -> Benchmark:
    """The official dataset from the hub through `datasets` (cached by `datasets`).

    `repo` may also name a local snapshot of the hub repository.
    """
    datasets = _quiet_datasets()

    parts = []
    intake = ImageIntake() if options.check_images else None
    for split in splits:
        try:
            dataset = datasets.load_dataset(repo, split=split, revision=revision)
        except Exception as error:
            raise ConfigError(
                f"cannot load {repo} split {split} (revision {revision or 'main'}): "
                f"{type(error).__name__}: {error}; --dataset official (the default) is the "
                "hub dataset: offline, try --dataset sample (bundled)"
            ) from error
        parts.append(_check(_dataset_records(dataset, options), split, f"{repo}:{split}", intake))
    return _finish(repo, revision, parts, intake)


def _parquet_problems(path: Path, split: Split) -> list[Problem]:
    import pyarrow.parquet as pq

    if (reason := regular_file(path)) is not None:  # a FIFO would block the read
        return [Problem(str(path), split, None, "", reason)]
    try:
        schema = pq.read_schema(path)
    except Exception as error:
        return [Problem(str(path), split, None, "", f"not a readable parquet file ({error})")]
    return [
        Problem(str(path), split, None, column, "column is missing")
        for column in REQUIRED_COLUMNS
        if column not in schema.names
    ]


def load_parquet_dir(
    directory: Path,
    splits: Iterable[Split] = SPLITS,
    name: str | None = None,
    options: LoadOptions = LoadOptions(),
) -> Benchmark:
    """A local directory in the official layout: `data/type_a-*.parquet`, `data/type_b-*…`."""
    datasets = _quiet_datasets()

    files = {split: sorted((directory / "data").glob(f"{split}-*.parquet")) for split in splits}
    problems = [
        Problem(str(directory / "data"), split, None, "", f"no {split}-*.parquet file")
        for split, found in files.items()
        if not found
    ]
    problems += [
        problem
        for split, found in files.items()
        for path in found
        for problem in _parquet_problems(path, split)
    ]
    if problems:
        raise DataError(problems)
    parts = []
    intake = ImageIntake() if options.check_images else None
    for split, found in files.items():
        source = ", ".join(str(path) for path in found)
        try:
            dataset = datasets.load_dataset(
                "parquet", data_files={split: [str(path) for path in found]}, split=split
            )
        except Exception as error:
            raise DataError([Problem(source, split, None, "", f"cannot load: {error}")]) from error
        parts.append(_check(_dataset_records(dataset, options), split, source, intake))
    captions = directory / "captions.json"
    return _finish(
        name or str(directory), None, parts, intake, captions if captions.is_file() else None
    )


def _jsonl_records(
    path: Path, root: Path, split: Split, problems: list[Problem], options: LoadOptions
) -> Iterator[ImageRecord]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as error:
                problems.append(
                    Problem(str(path), split, f"line {number}", "", f"not valid UTF-8 ({error})")
                )
                continue
            except ValueError as error:
                problems.append(
                    Problem(str(path), split, f"line {number}", "", f"invalid JSON ({error})")
                )
                continue
            if not isinstance(record, dict):
                problems.append(
                    Problem(str(path), split, f"line {number}", "", "expected a JSON object")
                )
                continue
            fields = [("image", record.get("image"))]
            if options.variants:
                listed = record.get("variant_images")
                if not isinstance(listed, list) or not listed:
                    listed = [None]
                fields += [(f"variant_images[{k}]", value) for k, value in enumerate(listed)]
            images: list[RawImage] = []
            refs: list[ImageRef] = []
            for field_name, value in fields:
                image, ref = _jsonl_image(value, root, options)
                images.append(RawImage(field_name, image))
                refs.append(ref)
            yield record, images, refs


def _jsonl_image(value: object, root: Path, options: LoadOptions) -> tuple[bytes | str, ImageRef]:
    """The image a JSONL record names (its bytes, or why it is refused) and how to read it
    again: only a regular file inside the dataset directory, read up to the cap."""
    path = dataset_file(root, value, options.max_image_bytes)
    if isinstance(path, str):
        return path, partial(bytes)
    ref = partial(_read_image, path, options.max_image_bytes)
    if not options.check_images:
        return b"", ref
    data = read_capped(path, options.max_image_bytes)
    if isinstance(data, str):
        return f"{value!r} {data}", partial(bytes)
    return data, ref


def _read_image(path: Path, cap: int) -> bytes:
    """An unchecked image's bytes, read when a request needs them."""
    data = read_capped(path, cap)
    if isinstance(data, str):
        raise DataError([Problem(str(path), "", None, "", data)])
    return data


def load_jsonl_dir(
    directory: Path,
    splits: Iterable[Split] = SPLITS,
    name: str | None = None,
    options: LoadOptions = LoadOptions(),
) -> Benchmark:
    """`type_a.jsonl` / `type_b.jsonl` with image paths relative to the directory."""
    parts = []
    intake = ImageIntake() if options.check_images else None
    for split in splits:
        path = directory / f"{split}.jsonl"
        if not path.is_file():
            raise DataError([Problem(str(path), split, None, "", "file not found")])
        problems: list[Problem] = []
        rows, images, found = _check(
            _jsonl_records(path, directory, split, problems, options), split, str(path), intake
        )
        parts.append((rows, images, problems + found))
    captions = directory / "captions.json"
    return _finish(
        name or str(directory), None, parts, intake, captions if captions.is_file() else None
    )


def load_benchmark(
    dataset: str,
    splits: Iterable[Split] = SPLITS,
    revision: str | None = None,
    options: LoadOptions = LoadOptions(),
) -> Benchmark:
    """Resolve `official`, `sample` or a directory (parquet or JSONL layout) and load it."""
    splits = tuple(dict.fromkeys(splits))
    if dataset == "official":
        return load_official(splits, revision, options=options)
    if dataset == "sample":
        return load_parquet_dir(SAMPLE_DIR, splits, name="sample", options=options)
    directory = Path(dataset)
    if not directory.is_dir():
        raise ConfigError(f"--dataset {dataset!r}: expected 'official', 'sample' or a directory")
    if (directory / "data").is_dir():
        return load_parquet_dir(directory, splits, options=options)
    if any((directory / f"{split}.jsonl").is_file() for split in splits):
        return load_jsonl_dir(directory, splits, options=options)
    raise ConfigError(
        f"--dataset {dataset!r}: found neither data/<split>-*.parquet nor <split>.jsonl"
    )
