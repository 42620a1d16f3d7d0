"""Images as providers send them: base64 of the original bytes, encoded once while in use."""

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


def _media_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MEDIA_TYPES.items() if data.startswith(magic)), None)


class ImageEncoder:
    """Turns image ids into `EncodedImage`s, each encoded once while it is in use.

    PNG, JPEG, GIF and WebP bytes are sent as they are (no decode); other formats are
    converted to PNG once. `release` drops an image nobody needs any more, which keeps
    memory to the images of the dialogues in flight.
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
        media_type = _media_type(data)
        if media_type is None:
            with Image.open(io.BytesIO(data)) as image:
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
            data, media_type = buffer.getvalue(), "image/png"
        prefix = f"data:{media_type};base64,".encode("ascii")
        return EncodedImage(media_type, prefix + base64.b64encode(data))
