"""The build's images before any call: content ids, downscaling, duplicates.

Each source image is copied into `OUT/images/ID.EXT`, where ID is the first 16 hex digits
of the sha256 of its bytes. An image no larger than `max_side` on its longer side is copied
byte for byte; a larger one is downscaled (Lanczos, EXIF orientation applied) to `max_side`,
saved as JPEG (quality 95) from a JPEG, else PNG. The calls, the dataset and the review
read this copy, so the dataset holds the images the models saw and no longer depends on
where the source folder is. An exact copy of an earlier image (same sha256) and a near copy
(difference hash within `NEAR_DUPLICATE_BITS` of 64 bits) are dropped with the reason.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from mtmcs.build.pipeline import Drop
from mtmcs.data.records import check_image

IMAGES_FOLDER = "images"
MAX_SIDE = 1024
NEAR_DUPLICATE_BITS = 4
JPEG_QUALITY = 95


def content_id(data: bytes) -> str:
    """The id of an image's bytes: 16 hex digits of their sha256."""
    return hashlib.sha256(data).hexdigest()[:16]


def difference_hash(image: Image.Image) -> int:
    """A 64-bit perceptual hash: brightness gradients of a 9×8 grey thumbnail."""
    small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    pixels = small.tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (pixels[row * 9 + col] < pixels[row * 9 + col + 1])
    return bits


def downscaled(data: bytes, max_side: int) -> tuple[bytes, str]:
    """`data` as it is when it fits in `max_side`, else downscaled; the bytes and suffix."""
    with Image.open(io.BytesIO(data)) as image:
        fmt = image.format or "PNG"
        suffix = {"JPEG": ".jpg", "MPO": ".jpg", "GIF": ".gif", "WEBP": ".webp"}.get(fmt, ".png")
        if max(image.size) <= max_side:
            return data, suffix
        if fmt in ("JPEG", "MPO"):
            image.draft("RGB", (max_side, max_side))  # decode at a reduced scale: fast
        shown = ImageOps.exif_transpose(image)
        shown.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        if fmt in ("JPEG", "MPO"):
            shown.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
            return buffer.getvalue(), ".jpg"
        has_alpha = shown.mode in ("RGBA", "LA", "PA") or "transparency" in shown.info
        shown.convert("RGBA" if has_alpha else "RGB").save(buffer, format="PNG")
        return buffer.getvalue(), ".png"


@dataclass(frozen=True)
class StagedImage:
    """A source image and the copy the build uses (`file`, relative to OUT)."""

    source: Path
    id: str
    sha256: str
    file: str
    size: tuple[int, int]
    original_size: tuple[int, int]

    def record(self) -> dict[str, object]:
        """What `build_report.json` lists per image."""
        return {
            "source": self.source.name,
            "file": self.file,
            "sha256": self.sha256,
            "size": list(self.size),
            "original_size": list(self.original_size),
            "downscaled": self.size != self.original_size,
        }


def stage_images(
    sources: Sequence[Path], out: Path, max_side: int
) -> tuple[list[StagedImage], list[Drop]]:
    """Copy (downscaled) each usable, distinct image into `OUT/images`; the copies and the
    duplicates dropped. An undecodable image is left to the pipeline's image check."""
    folder = out / IMAGES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[StagedImage] = []
    drops: list[Drop] = []
    seen: dict[str, StagedImage] = {}
    hashes: list[tuple[int, StagedImage]] = []
    for source in sources:
        data = source.read_bytes()
        if check_image(data) is not None:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            twin_name = seen[digest].source.name
            drops.append(Drop("dedupe", source.name, f"exact duplicate of {twin_name}"))
            continue
        small, suffix = downscaled(data, max_side)
        with Image.open(io.BytesIO(data)) as image:
            original_size = image.size
        with Image.open(io.BytesIO(small)) as image:
            size = image.size
            dhash = difference_hash(image)
        twin = next(
            (
                (other, bits)
                for bits, other in hashes
                if (bits ^ dhash).bit_count() <= NEAR_DUPLICATE_BITS
            ),
            None,
        )
        if twin is not None:
            other, bits = twin
            distance = (bits ^ dhash).bit_count()
            drops.append(
                Drop(
                    "dedupe",
                    source.name,
                    f"near duplicate of {other.source.name} (perceptual hash distance "
                    f"{distance} of 64)",
                )
            )
            continue
        image_id = digest[:16]
        file = f"{IMAGES_FOLDER}/{image_id}{suffix}"
        target = out / file
        if not target.is_file() or target.read_bytes() != small:
            target.write_bytes(small)
        entry = StagedImage(source, image_id, digest, file, size, original_size)
        seen[digest] = entry
        hashes.append((dhash, entry))
        staged.append(entry)
    return staged, drops
