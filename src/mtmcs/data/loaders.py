"""Loaders: the official hub dataset, a local parquet directory, JSONL + images, the sample."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mtmcs.data.records import duplicate_problems, parse_record
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

ImageRef = Callable[[], bytes]


@dataclass(frozen=True)
class Benchmark:
    """Validated rows of one or both splits, their images and where they came from."""

    name: str
    revision: str | None
    rows: tuple[Row, ...]
    images: Mapping[str, ImageRef] = field(repr=False)
    captions_path: Path | None = None

    def image_bytes(self, image_id: str) -> bytes:
        """The encoded bytes of an image, read on demand."""
        return self.images[image_id]()


ImageRecord = tuple[dict[str, Any], bytes | str | None, ImageRef]


def _check(
    records: Iterable[ImageRecord], split: Split, source: str
) -> tuple[list[Row], dict[str, ImageRef], list[Problem]]:
    rows: list[Row] = []
    images: dict[str, ImageRef] = {}
    problems: list[Problem] = []
    ids: list[object] = []
    for record, image, ref in records:
        ids.append(record.get("id"))
        row, found = parse_record(record, split, source, image)
        problems += found
        if row is not None:
            rows.append(row)
            images[row.image_id] = ref
    problems += duplicate_problems(ids, split, source)
    return rows, images, problems


def _dataset_records(dataset: Any) -> Iterator[ImageRecord]:
    for index, record in enumerate(dataset):
        image = record.get("image")
        data = image.get("bytes") if isinstance(image, Mapping) else None
        yield record, data, partial(_dataset_image, dataset, index)


def _dataset_image(dataset: Any, index: int) -> bytes:
    image = dataset[index]["image"]
    return bytes(image["bytes"])


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _undecoded(dataset: Any) -> Any:
    """The same dataset with images as raw bytes: decoding happens once, when sending."""
    from datasets import Image, List

    dataset = dataset.cast_column("image", Image(decode=False))
    if "variant_images" in dataset.column_names:
        dataset = dataset.cast_column("variant_images", List(Image(decode=False)))
    return dataset


def _finish(
    name: str,
    revision: str | None,
    parts: list[tuple[list[Row], dict[str, ImageRef], list[Problem]]],
    captions_path: Path | None = None,
) -> Benchmark:
    problems = [problem for _, _, found in parts for problem in found]
    if problems:
        raise DataError(problems)
    rows = tuple(row for found, _, _ in parts for row in found)
    images = {key: ref for _, refs, _ in parts for key, ref in refs.items()}
    return Benchmark(name, revision, rows, images, captions_path)


def load_official(
    splits: Iterable[Split] = SPLITS, revision: str | None = None, repo: str = OFFICIAL_DATASET
) -> Benchmark:
    """The official dataset from the hub through `datasets` (cached by `datasets`).

    `repo` may also name a local snapshot of the hub repository.
    """
    datasets = _quiet_datasets()

    parts = []
    for split in splits:
        try:
            dataset = datasets.load_dataset(repo, split=split, revision=revision)
        except Exception as error:
            raise ConfigError(
                f"cannot load {repo} split {split} (revision {revision or 'main'}): "
                f"{type(error).__name__}: {error}"
            ) from error
        parts.append(_check(_dataset_records(_undecoded(dataset)), split, f"{repo}:{split}"))
    return _finish(repo, revision, parts)


def _parquet_problems(path: Path, split: Split) -> list[Problem]:
    import pyarrow.parquet as pq

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
    directory: Path, splits: Iterable[Split] = SPLITS, name: str | None = None
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
    for split, found in files.items():
        source = ", ".join(str(path) for path in found)
        try:
            dataset = datasets.load_dataset(
                "parquet", data_files={split: [str(path) for path in found]}, split=split
            )
        except Exception as error:
            raise DataError([Problem(source, split, None, "", f"cannot load: {error}")]) from error
        parts.append(_check(_dataset_records(_undecoded(dataset)), split, source))
    captions = directory / "captions.json"
    return _finish(name or str(directory), None, parts, captions if captions.is_file() else None)


def _jsonl_records(
    path: Path, root: Path, split: Split, problems: list[Problem]
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
            image_path = _image_path(record.get("image"), root)
            if isinstance(image_path, str):
                yield record, image_path, partial(bytes)
                continue
            data: bytes | str
            try:
                data = image_path.read_bytes()
            except OSError as error:
                data = f"cannot read {image_path}: {error.strerror}"
            yield record, data, partial(image_path.read_bytes)


def _image_path(value: object, root: Path) -> Path | str:
    """The image file of a JSONL record, or the reason it is refused."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return "expected a relative path to an image file"
    candidate = Path(value)
    if candidate.is_absolute() or ".." in candidate.parts:
        return f"{value!r} must be a path inside the dataset directory (no absolute or '..')"
    return root / candidate


def load_jsonl_dir(
    directory: Path, splits: Iterable[Split] = SPLITS, name: str | None = None
) -> Benchmark:
    """`type_a.jsonl` / `type_b.jsonl` with image paths relative to the directory."""
    parts = []
    for split in splits:
        path = directory / f"{split}.jsonl"
        if not path.is_file():
            raise DataError([Problem(str(path), split, None, "", "file not found")])
        problems: list[Problem] = []
        rows, images, found = _check(
            _jsonl_records(path, directory, split, problems), split, str(path)
        )
        parts.append((rows, images, problems + found))
    captions = directory / "captions.json"
    return _finish(name or str(directory), None, parts, captions if captions.is_file() else None)


def load_benchmark(
    dataset: str, splits: Iterable[Split] = SPLITS, revision: str | None = None
) -> Benchmark:
    """Resolve `official`, `sample` or a directory (parquet or JSONL layout) and load it."""
    splits = tuple(dict.fromkeys(splits))
    if dataset == "official":
        return load_official(splits, revision)
    if dataset == "sample":
        return load_parquet_dir(SAMPLE_DIR, splits, name="sample")
    directory = Path(dataset)
    if not directory.is_dir():
        raise ConfigError(f"--dataset {dataset!r}: expected 'official', 'sample' or a directory")
    if (directory / "data").is_dir():
        return load_parquet_dir(directory, splits)
    if any((directory / f"{split}.jsonl").is_file() for split in splits):
        return load_jsonl_dir(directory, splits)
    raise ConfigError(
        f"--dataset {dataset!r}: found neither data/<split>-*.parquet nor <split>.jsonl"
    )
