"""Images as providers send them: base64 of web-safe bytes, encoded once while in use.

Web-safe: PNG, JPEG, GIF or WebP in a mode every provider decodes (8-bit grey, RGB, RGBA;
palette for GIF). Anything else Pillow opens (TIFF, BMP; CMYK JPEG, 16-bit or float grey,
palette with transparency, LA, …) is converted once (`wire_bytes`): to RGB JPEG from a JPEG,
else to PNG (RGB, RGBA, or 8-bit grey scaled from the image's own range).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

_MEDIA_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An image ready to send, held once as the ASCII bytes of its `data:` URL."""

    media_type: str
    data_url: bytes

    @property
    def data(self) -> str:
        """The base64 payload alone (Anthropic's form)."""
        return self.data_url[len(f"data:{self.media_type};base64,") :].decode("ascii")


_WEB_MODES = {
    "PNG": {"L", "RGB", "RGBA"},
    "JPEG": {"L", "RGB"},
    "MPO": {"L", "RGB"},  # a camera's multi-picture JPEG: a JPEG on the wire
    "GIF": {"P", "L", "RGB", "RGBA"},
    "WEBP": {"RGB", "RGBA"},
}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_JPEG_QUALITY = 95


def _media_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MEDIA_TYPES.items() if data.startswith(magic)), None)


def is_web_safe(image: Image.Image) -> bool:
    """Whether an opened image (headers read, pixels not needed) can be sent as it is."""
    return image.mode in _WEB_MODES.get(image.format or "", set())


def _scaled_grey(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float grey as 8-bit 'L', its finite range stretched to 0…255."""
    import numpy as np

    values = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(values)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = np.where(finite, (values - low) * scale, 0.0)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L")


def convert_for_wire(image: Image.Image) -> bytes:
    """An opened image as web-safe bytes: RGB JPEG from a JPEG, else PNG (see module)."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        converted = _scaled_grey(image)
    elif mode in _ALPHA_MODES or "transparency" in image.info:
        converted = image.convert("RGBA")
    else:
        converted = image.convert("L" if mode in ("1", "L") else "RGB")
    buffer = io.BytesIO()
    if image.format in ("JPEG", "MPO") and converted.mode in ("L", "RGB"):
        converted.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    else:
        converted.save(buffer, format="PNG")
    return buffer.getvalue()


def wire_bytes(data: bytes) -> bytes:
    """`data` itself when web-safe (only the headers are read), else converted once.

    Bytes of a known format whose headers Pillow cannot read are sent as they are: the
    dataset's validation refuses undecodable images; a provider reports any it is sent.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError):
        if _media_type(data) is not None:
            return data
        raise
    with image:
        return data if is_web_safe(image) else convert_for_wire(image)


class ImageEncoder:
    """Turns image ids into `EncodedImage`s, each encoded once while it is in use.

    Web-safe bytes (validated images are, see `wire_bytes`) are sent as they are, after
    reading their headers; others are converted once. `release` drops an image nobody needs
    any more, which keeps memory to the images of the dialogues in flight.
    """

    def __init__(self, read: Callable[[str], bytes]) -> None:
        self._read = read
        self._cache: dict[str, EncodedImage] = {}
        self.encoded = 0

    def __call__(self, image_id: str) -> EncodedImage:
        cached = self._cache.get(image_id)
        if cached is None:
            cached = self._cache[image_id] = self._encode(self._read(image_id))
            self.encoded += 1
        return cached

    def read_bytes(self, image_id: str) -> bytes:
        """An image's original bytes, read afresh (not cached): for providers that decode."""
        return self._read(image_id)

    def release(self, image_id: str) -> None:
        """Forget an image (it is encoded again if asked for later)."""
        self._cache.pop(image_id, None)

    @staticmethod
    def _encode(data: bytes) -> EncodedImage:
        data = wire_bytes(data)
        media_type = _media_type(data) or "image/png"
        prefix = f"data:{media_type};base64,".encode("ascii")
        return EncodedImage(media_type, prefix + base64.b64encode(data))
