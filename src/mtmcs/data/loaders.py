"""Loaders: the official hub dataset, a local parquet directory, JSONL + images, the sample."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mtmcs.data.arrow_images import ArrowFiles, arrow_columns, mapped_records
from mtmcs.data.converted import known_conversion, remember_conversion
from mtmcs.data.intake import DeferredChecks, ImageIntake, ImageRecord, ImageRef, Where
from mtmcs.data.paths import MAX_IMAGE_BYTES, dataset_file, megabytes, read_capped, regular_file
from mtmcs.data.records import RawImage, duplicate_problems, parse_record
from mtmcs.data.validated import FileDigests, fingerprint, is_validated, record_validated
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
    pending: DeferredChecks | None = field(default=None, repr=False)
    """Image checks still running (`LoadOptions.defer_checks`): a run awaits an image's
    before sending it and reports their problems when it ends."""
    sources: tuple[Path, ...] | None = field(default=None, repr=False)
    """Every file the rows and images were read from and every directory listed to find
    them (`None` where they are not all known: a hub dataset, one held in memory): a finished
    run is up to date while none of them changed (`mtmcs.engine.finished`)."""

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
    defer_checks: bool = False
    """Decode images not validated before in the background, after the load returns
    (`Benchmark.pending`), rather than before; text, paths and sizes are checked at once."""


CHECK_BATCH = 32


def _check(
    records: Iterable[ImageRecord],
    split: Split,
    source: str,
    intake: ImageIntake | DeferredChecks | None,
) -> tuple[list[Row], dict[str, ImageRef], list[Problem]]:
    """Typed rows and every problem; images go through `intake`, a batch at a time, or are
    queued for checks in the background (`DeferredChecks`)."""
    rows: list[Row] = []
    images: dict[str, ImageRef] = {}
    problems: list[Problem] = []
    ids: list[object] = []
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, CHECK_BATCH)):
        flat = [image for _, raw, _ in batch for image in raw]
        lazy = [ref for _, _, refs in batch for ref in refs]
        if isinstance(intake, ImageIntake):  # the whole batch at once, decoded in parallel
            taken = intake.take(flat, lazy)
            flat = [image for image, _ in taken]
            lazy = [checked or ref for (_, checked), ref in zip(taken, lazy, strict=True)]
        start = 0
        for record, raw, _ in batch:
            end = start + len(raw)
            ids.append(record.get("id"))
            row, found = parse_record(record, split, source, flat[start:end], check_images=False)
            problems += found
            if row is not None:
                rows.append(row)
                keys = (row.image_id, *row.variant_image_ids)
                refs = lazy[start:end]
                if isinstance(intake, DeferredChecks):
                    refs = [
                        intake.add(key, image, ref, Where(source, split, row.id, image.field))
                        for key, image, ref in zip(keys, flat[start:end], refs, strict=True)
                    ]
                images.update(zip(keys, refs, strict=True))
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
    """Rows of `columns` of a dataset held in memory, a batch at a time, as raw Arrow
    (decoding would open an image's `path`)."""
    for table in dataset.select_columns(columns).with_format("arrow").iter(CHECK_BATCH):
        yield from table.to_pylist()


def _text_columns(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c not in ("image", "variant_images")]


def _mapped(
    filenames: Sequence[str], columns: list[str], options: LoadOptions, files: ArrowFiles
) -> Iterator[ImageRecord] | None:
    """Records of Arrow files with their images located in the files (`mapped_records`);
    `None` when some file's images cannot be located."""
    cap = options.max_image_bytes
    mapped = [mapped_records(name, columns, options.variants, cap, files) for name in filenames]
    if not mapped or any(records is None for records in mapped):
        return None
    return itertools.chain.from_iterable(records or () for records in mapped)


def _dataset_records(
    dataset: Any, options: LoadOptions, files: ArrowFiles
) -> Iterator[ImageRecord]:
    """Records with their images, which are read only where they are checked or sent: from
    the dataset's Arrow files by offset, or, for a dataset held in memory, from its rows."""
    columns = _text_columns(dataset.column_names)
    filenames = [entry["filename"] for entry in dataset.cache_files]
    if (mapped := _mapped(filenames, columns, options, files)) is not None:
        yield from mapped
        return
    wanted = columns + ["image"] + (["variant_images"] if options.variants else [])
    cap = options.max_image_bytes
    for record in _dataset_rows(dataset, wanted):
        data = _image_data(record["image"], cap)
        images = [RawImage("image", data)]
        refs: list[ImageRef] = [partial(bytes, data) if isinstance(data, bytes) else partial(bytes)]
        if options.variants:
            listed = record["variant_images"]
            if not listed:
                images.append(RawImage("variant_images", "no variant images (--variants)"))
                refs.append(partial(bytes))
            for k, item in enumerate(listed or ()):
                data = _image_data(item, cap)
                images.append(RawImage(f"variant_images[{k}]", data))
                refs.append(partial(bytes, data) if isinstance(data, bytes) else partial(bytes))
        yield record, images, refs


def _quiet_datasets() -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _release_arrow_memory() -> None:
    """Hand the batches' memory back: Arrow's allocator otherwise keeps it for reuse."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


class _Checks:
    """How one load checks its images: decoded by one intake (shared by the splits, so
    their common photos are decoded once), at once or in the background, unless the same
    data passed before (`mtmcs.data.validated`)."""

    def __init__(self, options: LoadOptions) -> None:
        self.options = options
        self.files = ArrowFiles()
        self._digests = FileDigests() if options.check_images else None
        self._intake: ImageIntake | None = None
        self._passing: list[str | Future[str | None] | None] = []
        self._unhashed: list[tuple[Sequence[Path], dict[str, object]]] = []
        self.deferred: DeferredChecks | None = None

    def intake_for(
        self, paths: Sequence[Path], split: Split, layout: str
    ) -> ImageIntake | DeferredChecks | None:
        """How to check a split read from `paths`: `None` when its images need no decoding
        (not asked for, or the same bytes passed every check before)."""
        if self._digests is None:
            return None
        context: dict[str, object] = {
            "split": split,
            "layout": layout,
            "variants": self.options.variants,
            "max_image_bytes": self.options.max_image_bytes,
        }
        defer = self.options.defer_checks
        key = fingerprint(paths, self._digests, context, known_only=defer)
        if is_validated(key):
            return None
        if key is None and defer:  # new files: hashed after the checks, not before them
            self._unhashed.append((paths, context))
        else:
            self._passing.append(key)
        return self.uncached()

    def uncached(self) -> ImageIntake | DeferredChecks | None:
        """How to check images without the cache (`None` when they are not checked)."""
        if not self.options.check_images:
            return None
        if self._intake is None:  # in the background, one worker leaves the run a core
            self._intake = ImageIntake(workers=1 if self.options.defer_checks else None)
        if not self.options.defer_checks:
            return self._intake
        if self.deferred is None:
            self.deferred = DeferredChecks(self._intake, self._done)
        return self.deferred

    @property
    def decoded(self) -> int:
        """How many distinct images were decoded."""
        return self._intake.decoded if self._intake is not None else 0

    def _done(self, passed: bool) -> None:
        """Record the data as validated if it `passed`; keep the file digests."""
        if passed:
            for key in self._passing:
                record_validated(key.result() if isinstance(key, Future) else key)
        if self._digests is not None:
            self._digests.save()

    def close(self, passed: bool) -> None:
        """After the load: stop the intake unless its checks go on in the background;
        remember the data that `passed` every check."""
        if self.deferred is not None and self._intake is not None and passed:
            for paths, context in self._unhashed:  # queued behind every image's check
                job = self._intake.later(fingerprint, paths, self._digests, context)
                self._passing.append(job)
            return  # `DeferredChecks.finish` ends it
        if self._intake is not None:
            self._intake.close(cancel=True)
        self._done(passed)


def _finish(
    name: str,
    revision: str | None,
    parts: list[tuple[list[Row], dict[str, ImageRef], list[Problem]]],
    checks: _Checks,
    captions_path: Path | None = None,
    sources: Sequence[Path] | None = None,
) -> Benchmark:
    problems = [problem for _, _, found in parts for problem in found]
    checks.close(passed=not problems)
    _release_arrow_memory()
    if problems:
        raise DataError(problems)
    rows = tuple(row for found, _, _ in parts for row in found)
    images = {key: ref for _, refs, _ in parts for key, ref in refs.items()}
    return Benchmark(
        name,
        revision,
        rows,
        images,
        captions_path,
        checks.decoded,
        checks.deferred,
        None if sources is None else tuple(dict.fromkeys(sources)),
    )


def _arrow_paths(dataset: Any) -> list[Path]:
    return [Path(entry["filename"]) for entry in dataset.cache_files]


def _check_dataset(
    dataset: Any, split: Split, source: str, checks: _Checks
) -> tuple[list[Row], dict[str, ImageRef], list[Problem]]:
    """One split read through `datasets`; a dataset held in memory is always checked."""
    paths = _arrow_paths(dataset)
    intake = checks.intake_for(paths, split, "arrow") if paths else checks.uncached()
    records = _dataset_records(dataset, checks.options, checks.files)
    return _check(records, split, source, intake)


def _check_converted(
    arrow: Sequence[Path], split: Split, source: str, checks: _Checks
) -> tuple[list[Row], dict[str, ImageRef], list[Problem]] | None:
    """One split read straight from the Arrow files `datasets` made of it before
    (`mtmcs.data.converted`); `None` when their images cannot be located there."""
    filenames = [str(path) for path in arrow]
    columns = _text_columns(arrow_columns(filenames[0]))
    records = _mapped(filenames, columns, checks.options, checks.files)
    if records is None:
        return None
    return _check(records, split, source, checks.intake_for(arrow, split, "arrow"))


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
    checks = _Checks(options)
    # A hub commit never changes; a branch, or a local snapshot, may.
    pinned = repo == OFFICIAL_DATASET and re.fullmatch("[0-9a-f]{40}", revision or "")
    sources: list[Path] | None = [] if pinned else None
    for split in splits:
        try:
            dataset = datasets.load_dataset(repo, split=split, revision=revision)
        except Exception as error:
            checks.close(passed=False)
            raise ConfigError(
                f"cannot load {repo} split {split} (revision {revision or 'main'}): "
                f"{type(error).__name__}: {error}; --dataset official (the default) is the "
                "hub dataset: offline, try --dataset sample (bundled)"
            ) from error
        parts.append(_check_dataset(dataset, split, f"{repo}:{split}", checks))
        arrow = _arrow_paths(dataset)
        sources = sources + arrow if sources is not None and arrow else None
    return _finish(repo, revision, parts, checks, sources=sources)


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
    """A local directory in the official layout: `data/type_a-*.parquet`, `data/type_b-*…`;
    parquet files `datasets` converted before are read from its conversion, without it."""
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
    checks = _Checks(options)
    sources: list[Path] | None = [directory, directory / "data"]
    for split, found in files.items():
        source = ", ".join(str(path) for path in found)
        arrow = known_conversion(found, split)
        part = None if arrow is None else _check_converted(arrow, split, source, checks)
        if part is None:
            try:
                dataset = _quiet_datasets().load_dataset(
                    "parquet", data_files={split: [str(path) for path in found]}, split=split
                )
            except Exception as error:
                checks.close(passed=False)
                raise DataError(
                    [Problem(source, split, None, "", f"cannot load: {error}")]
                ) from error
            arrow = _arrow_paths(dataset)
            remember_conversion(found, split, arrow)
            part = _check_dataset(dataset, split, source, checks)
        parts.append(part)
        sources = sources + found + arrow if sources is not None and arrow else None
    captions = directory / "captions.json"
    captions_path = captions if captions.is_file() else None
    if sources is not None and captions_path is not None:
        sources.append(captions_path)
    return _finish(name or str(directory), None, parts, checks, captions_path, sources)


def _jsonl_records(
    path: Path, root: Path, split: Split, problems: list[Problem], options: LoadOptions
) -> Iterator[tuple[ImageRecord, list[tuple[Path, object]]]]:
    """Records with their images (not read: checked through their refs) and the image
    files they name."""
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
            files: list[tuple[Path, object]] = []
            for field_name, value in fields:
                found = dataset_file(root, value, options.max_image_bytes)
                if isinstance(found, str):
                    images.append(RawImage(field_name, found))
                    refs.append(partial(bytes))
                    continue
                images.append(RawImage(field_name, None))
                refs.append(partial(_read_image, found, options.max_image_bytes))
                files.append((found, value))
            yield (record, images, refs), files


def _with_bytes(record: ImageRecord, files: list[tuple[Path, object]], cap: int) -> ImageRecord:
    """A JSONL record with the bytes of its image files read, to be checked."""
    named, images, refs = record
    read = iter(files)
    filled = []
    for image in images:
        if image.data is None:
            path, value = next(read)
            data = read_capped(path, cap)
            image = RawImage(image.field, f"{value!r} {data}" if isinstance(data, str) else data)
        filled.append(image)
    return named, filled, refs


def _read_image(path: Path, cap: int) -> bytes:
    """An image file's bytes, read when a request needs them; `DataError` when they cannot
    be (the file was swapped for a FIFO, grew, …)."""
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
    checks = _Checks(options)
    sources = [directory]
    for split in splits:
        path = directory / f"{split}.jsonl"
        if not path.is_file():
            checks.close(passed=False)
            raise DataError([Problem(str(path), split, None, "", "file not found")])
        problems: list[Problem] = []
        listed = list(_jsonl_records(path, directory, split, problems, options))
        files = [path, *(file for _, named in listed for file, _ in named)]
        sources += files
        intake = checks.intake_for(files, split, "jsonl") if not problems else checks.uncached()
        cap = options.max_image_bytes
        records = (
            _with_bytes(record, named, cap) if intake is not None else record
            for record, named in listed
        )
        rows, images, found = _check(records, split, str(path), intake)
        parts.append((rows, images, problems + found))
    captions = directory / "captions.json"
    captions_path = captions if captions.is_file() else None
    if captions_path is not None:
        sources.append(captions_path)
    return _finish(name or str(directory), None, parts, checks, captions_path, sources)


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
