"""Image intake: decode every image once, in parallel, and keep its bytes out of memory.

Images are read once, to be checked; the bytes of the good ones, as they will be sent (an
image providers would not take as it is is converted here, once: `prepare_image`), go to an
unlinked spool file and are read back (`pread`) when a request needs them, so a run holds
only the images of the dialogues under way. Identical bytes (the two splits share their
photos) are decoded and stored once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from mtmcs.data.records import RawImage, prepare_image

ImageRef = Callable[[], bytes]


class Spool:
    """Bytes appended to an unlinked temporary file, read back by offset."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="mtmcs-images-")  # noqa: SIM115 (lives on)
        self._end = 0

    def append(self, data: bytes) -> ImageRef:
        """Store bytes; return how to read them back."""
        offset = self._end
        os.pwrite(self._file.fileno(), data, offset)
        self._end += len(data)
        return partial(self._read, offset, len(data))

    def _read(self, offset: int, length: int) -> bytes:
        return os.pread(self._file.fileno(), length, offset)


class ImageIntake:
    """Checks images in a thread pool (Pillow decodes without the GIL) and spools them."""

    def __init__(self, workers: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2))
        self._spool = Spool()
        self._seen: dict[bytes, tuple[str | None, ImageRef | None]] = {}
        self.decoded = 0

    def take(self, images: Sequence[RawImage]) -> list[tuple[RawImage, ImageRef | None]]:
        """Each image with the reason in place of its bytes if it does not decode, and, if it
        does, how to read its bytes back."""
        digests = [
            hashlib.blake2b(image.data, digest_size=16).digest()
            if isinstance(image.data, bytes)
            else b""
            for image in images
        ]
        new = {
            digest: image.data
            for digest, image in zip(digests, images, strict=True)
            if digest and digest not in self._seen and isinstance(image.data, bytes)
        }
        for digest, prepared in zip(new, self._pool.map(prepare_image, new.values()), strict=True):
            self._seen[digest] = (
                (prepared, None)
                if isinstance(prepared, str)
                else (None, self._spool.append(prepared))
            )
        self.decoded += len(new)
        taken: list[tuple[RawImage, ImageRef | None]] = []
        for digest, image in zip(digests, images, strict=True):
            if not digest:
                taken.append((image, None))
                continue
            verdict, ref = self._seen[digest]
            taken.append((RawImage(image.field, verdict) if verdict else image, ref))
        return taken

    def close(self) -> None:
        """Stop the worker threads (the spooled bytes stay readable)."""
        self._pool.shutdown()
