"""Images inside a `datasets` Arrow file, located without being read, read when needed.

The file is memory-mapped only to find where each image's bytes lie (the address of the
`bytes` buffer of the image column, less the mapping's start, is their offset in the file):
the image pages are never touched, so they never count in the process's memory. The bytes
are read with `pread` when they are checked or sent.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from functools import partial
from typing import Any

from mtmcs.data.intake import ImageRecord, ImageRef
from mtmcs.data.paths import megabytes
from mtmcs.data.records import RawImage
from mtmcs.errors import DataError, Problem


class ArrowFiles:
    """Image bytes inside a dataset's Arrow files, read by offset (`pread`) when needed.

    The files are memory-mapped only to find where each image lies: its pages are never
    touched, so they never count in the process's memory.
    """

    def __init__(self) -> None:
        self._descriptors: dict[str, int] = {}

    def ref(self, filename: str, offset: int, length: int) -> ImageRef:
        """How to read `length` bytes at `offset` of `filename`."""
        descriptor = self._descriptors.get(filename)
        if descriptor is None:
            descriptor = self._descriptors[filename] = os.open(filename, os.O_RDONLY)
        return partial(_pread, filename, descriptor, offset, length)


def _pread(filename: str, descriptor: int, offset: int, length: int) -> bytes:
    data = os.pread(descriptor, length, offset)
    if len(data) != length:
        raise DataError([Problem(filename, "", None, "", "image bytes cut short (file changed?)")])
    return data


Span = tuple[int, int] | None
"""Where an image's bytes lie in a mapped file (offset, length); `None`: no bytes."""


def _spans(images: Any, base: int, size: int) -> list[Span] | None:
    """The span of each value of an Arrow `struct<bytes, path>` array in a file mapped at
    `base`, or `None` when its bytes are not in the mapping (compressed files)."""
    import numpy as np
    import pyarrow as pa

    child = images.field("bytes")
    kind = np.int64 if pa.types.is_large_binary(child.type) else np.int32
    _, offsets_buffer, data = child.buffers()
    if data is None or not base <= data.address <= base + size:
        return None
    start = data.address - base
    first = images.offset + child.offset
    offsets = np.frombuffer(offsets_buffer, dtype=kind)[first : first + len(images) + 1]
    # As lists: pyarrow's `to_numpy` of a boolean array imports pandas (0.2 s and 40 MB).
    valid = np.array(images.is_valid().to_pylist(), dtype=bool) & np.array(
        child.is_valid().slice(images.offset).to_pylist()[: len(images)], dtype=bool
    )
    return [
        (start + int(low), int(high - low)) if ok and high > low else None
        for low, high, ok in zip(offsets[:-1], offsets[1:], valid, strict=True)
    ]


def _image_span(span: Span, cap: int) -> str | None:
    """Why an image of this span is refused before it is read, or `None`."""
    if span is None:
        return "no image bytes"
    if span[1] > cap:
        return f"image is {megabytes(span[1])}, over the {megabytes(cap)} cap"
    return None


def arrow_columns(filename: str) -> list[str]:
    """The columns of an Arrow stream file, read from its schema."""
    import pyarrow as pa

    with pa.memory_map(filename) as mapped:
        return list(pa.ipc.open_stream(mapped).schema.names)


def mapped_records(
    filename: str, columns: list[str], variants: bool, cap: int, files: ArrowFiles
) -> Iterator[ImageRecord] | None:
    """Records of one Arrow file (`columns` of each, and its images: the base image, then
    the variants with `variants`) with images as spans of the file, refused at once when
    over `cap` bytes or empty; `None` when the file's image bytes cannot be located (then
    they are read the plain way)."""
    import pyarrow as pa

    with pa.memory_map(filename) as mapped:
        base = mapped.read_buffer(1).address if mapped.size() else 0
        mapped.seek(0)
        batches = list(pa.ipc.open_stream(mapped))
        located: list[tuple[Any, list[Span], list[list[Span]] | None]] = []
        for batch in batches:
            spans = _spans(batch.column("image"), base, mapped.size())
            listed_spans = None
            if variants:
                listed = batch.column("variant_images")
                flat = _spans(listed.values, base, mapped.size())
                if flat is None:
                    return None
                bounds = listed.offsets.to_pylist()
                listed_spans = [flat[low:high] for low, high in itertools.pairwise(bounds)]
            if spans is None:
                return None
            located.append((batch.select(columns).to_pylist(), spans, listed_spans))
    return _records_from_spans(filename, located, cap, files)


def _records_from_spans(
    filename: str,
    located: list[tuple[Any, list[Span], list[list[Span]] | None]],
    cap: int,
    files: ArrowFiles,
) -> Iterator[ImageRecord]:
    for records, spans, variants in located:
        for index, record in enumerate(records):
            fields = [("image", spans[index])]
            if variants is not None:
                if not variants[index]:
                    fields.append(("variant_images", None))
                fields += [(f"variant_images[{k}]", s) for k, s in enumerate(variants[index])]
            images: list[RawImage] = []
            refs: list[ImageRef] = []
            for name, span in fields:
                reason = _image_span(span, cap)
                if name == "variant_images":
                    reason = "no variant images (--variants)"
                images.append(RawImage(name, reason))
                refs.append(partial(bytes) if span is None else files.ref(filename, *span))
            yield record, images, refs
