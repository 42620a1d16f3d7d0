"""Image intake: decode every image once, in parallel, and keep its bytes out of memory.

Images are read where they lie (a dataset's Arrow file, by offset; an image file) by the
worker that checks them, and read again from there when a request needs them, so a run
holds only the images of the dialogues under way. An image providers would not take as it
is is converted here, once (`prepare_image`), and the converted bytes go to an unlinked
spool file, read back (`pread`) when needed. Identical bytes (the two splits share their
photos) are decoded once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from mtmcs.data.records import RawImage, prepare_image
from mtmcs.errors import DataError, Problem

T = TypeVar("T")
ImageRef = Callable[[], bytes]
"""Reads an image's bytes (`DataError` when they can no longer be read)."""

ImageRecord = tuple[dict[str, Any], list[RawImage], list[ImageRef]]
"""A record, its images as read (bytes; a reason; `None`: read through its ref when checked)
and how to read each image's bytes."""


class Spool:
    """Bytes appended to an unlinked temporary file, read back by offset."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="mtmcs-images-")  # noqa: SIM115 (lives on)
        self._end = 0
        self._lock = threading.Lock()

    def append(self, data: bytes) -> ImageRef:
        """Store bytes; return how to read them back."""
        with self._lock:
            offset = self._end
            self._end += len(data)
        os.pwrite(self._file.fileno(), data, offset)
        return partial(self._read, offset, len(data))

    def _read(self, offset: int, length: int) -> bytes:
        return os.pread(self._file.fileno(), length, offset)


Verdict = tuple[str | None, ImageRef | None]
"""Why an image is refused, or how to read the bytes to send."""


class ImageIntake:
    """Checks images in a thread pool (Pillow decodes without the GIL); spools converted ones."""

    def __init__(self, workers: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2))
        self._spool = Spool()
        self._seen: dict[bytes, Verdict] = {}
        self._lock = threading.Lock()
        self.decoded = 0

    def take(
        self, images: Sequence[RawImage], refs: Sequence[ImageRef]
    ) -> list[tuple[RawImage, ImageRef | None]]:
        """Each image with the reason in place of its bytes if it cannot be read or decoded,
        and, if it can, how to read the bytes to send. An image whose `data` is `None` is
        read through its ref, in a worker."""
        verdicts = self._pool.map(self.check, images, refs)
        taken: list[tuple[RawImage, ImageRef | None]] = []
        for image, (reason, ref) in zip(images, verdicts, strict=True):
            taken.append((RawImage(image.field, reason) if reason else image, ref))
        return taken

    def later(self, work: Callable[..., T], *args: object) -> Future[T]:
        """Run `work(*args)` in the pool, after the checks queued before it."""
        return self._pool.submit(work, *args)

    def submit(self, image: RawImage, ref: ImageRef) -> Future[Verdict]:
        """Check one image in the background (`check`)."""
        return self._pool.submit(self.check, image, ref)

    def check(self, image: RawImage, ref: ImageRef) -> Verdict:
        """Why an image is refused, or how to read the bytes to send (read through `ref`
        when its `data` is `None`)."""
        data = image.data
        if isinstance(data, str):
            return data, None
        if data is None:
            try:
                data = ref()
            except DataError as error:
                return "; ".join(problem.message for problem in error.problems), None
        digest = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            seen = self._seen.get(digest)
        if seen is not None:
            return seen
        prepared = prepare_image(data)
        if isinstance(prepared, str):
            verdict: Verdict = (prepared, None)
        else:
            verdict = (None, ref if prepared is data else self._spool.append(prepared))
        with self._lock:
            if digest not in self._seen:
                self._seen[digest] = verdict
                self.decoded += 1
        return verdict

    def close(self, *, cancel: bool = False) -> None:
        """Stop the worker threads (the spooled bytes stay readable); `cancel` drops the
        checks not started yet."""
        self._pool.shutdown(cancel_futures=cancel)


@dataclass(frozen=True, slots=True)
class Where:
    """Where an image is in a dataset, for the problem reported when it is refused."""

    source: str
    split: str
    row_id: int
    field: str


class DeferredChecks:
    """Image checks made in the background while a run makes its calls, in the order the
    images were added (the run's row order): an image is sent only after it passed
    (`future`); the problems of those that did not are reported when the run ends
    (`finish`), which also records the data as validated when every image passed."""

    def __init__(self, intake: ImageIntake, on_done: Callable[[bool], None]) -> None:
        self._intake = intake
        self._on_done = on_done
        self._checks: dict[str, tuple[Future[Verdict], Where]] = {}

    def add(self, image_id: str, image: RawImage, ref: ImageRef, where: Where) -> ImageRef:
        """Queue an image's check; return how to read the bytes to send once it passed."""
        self._checks[image_id] = (self._intake.submit(image, ref), where)
        return partial(self._read, image_id)

    def future(self, image_id: str) -> Future[Verdict] | None:
        """The check of an image (`None`: none was deferred)."""
        check = self._checks.get(image_id)
        return None if check is None else check[0]

    def _read(self, image_id: str) -> bytes:
        future, where = self._checks[image_id]
        reason, ref = future.result()
        if ref is None:
            raise DataError(
                [Problem(where.source, where.split, where.row_id, where.field, reason or "")]
            )
        return ref()

    @property
    def decoded(self) -> int:
        """How many distinct images were decoded so far."""
        return self._intake.decoded

    def finish(self) -> list[Problem]:
        """Wait for every check; the problems of the images refused."""
        problems = []
        for future, where in self._checks.values():
            reason, _ = future.result()
            if reason is not None:
                problems.append(
                    Problem(where.source, where.split, where.row_id, where.field, reason)
                )
        self._intake.close()
        self._on_done(not problems)
        return problems

    def cancel(self) -> None:
        """Drop the checks not started yet (a run that stopped early)."""
        self._intake.close(cancel=True)
        self._on_done(False)
