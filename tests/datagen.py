"""Build small, valid MTMCS-Bench datasets in the official schema, and corrupt them on purpose.

A *record* is one row as ``datasets`` yields it with undecoded images: ``image`` is
``{"bytes": ..., "path": None}`` and ``variant_images`` a list of such dicts. Tests start from
valid records (``make_record`` / ``make_split``) and change single fields through *overrides*:
a mapping from a dotted path (``"multimodal_dialogue.unsafe_r3"``, ``"unimodal_mcq.2.options"``,
``"image"``) to the new value, or to ``DELETE`` to remove the key.

Writers:

- ``write_parquet_dir(DIR, {"type_a": [...], "type_b": [...]})`` → ``DIR/data/<split>-00000-of-
  00001.parquet`` through ``datasets.Dataset.from_dict(columns, features=official_features())``;
- ``write_jsonl_dir(DIR, {...})`` → ``DIR/<split>.jsonl`` with ``image`` a path relative to DIR
  of a file under ``DIR/images/`` (a record whose ``image`` is already a string keeps it as is,
  so tests can write absolute or ``..`` paths).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mtmcs.data.features import official_features
from mtmcs.protocol.types import SPLITS, TURN_FIELDS

DELETE = object()
"""Override value that removes the key instead of setting it."""

NEEDED_TURNS = {
    "type_a": ("r1", "r2", "unsafe_r3", "safe_r3"),
    "type_b": ("unsafe_r1", "safe_r1", "r2", "r3"),
}
MODALITIES = ("multimodal", "unimodal")
MCQ_TYPES = (
    "unsafe_intent_recognition",
    "safe_intent_recognition",
    "unsafe_goal",
    "safe_goal",
)


# --------------------------------------------------------------------------- images


def png_bytes(size: tuple[int, int] = (8, 6), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real, small RGB PNG made with Pillow."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    """A real JPEG with some texture (so that truncating it cuts into the scan data)."""
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        yield png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        offset += 12 + length


def big_blank_png(width: int, height: int) -> bytes:
    """A real, valid 1-bit grayscale PNG of width × height, all black, a few KB to store.

    Written chunk by chunk with zlib, since Pillow would need width × height bytes of memory
    to build it (400 MB for 20000 × 20000).
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte "none" + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def png_with_garbage_idat(png: bytes) -> bytes:
    """The PNG with its pixel data replaced by garbage, every chunk CRC still correct."""
    out = png[:8]
    for kind, data in _chunks(png):
        out += _chunk(kind, b"not zlib data " * 8 if kind == b"IDAT" else data)
    return out


def image_field(data: bytes) -> dict[str, Any]:
    """An image as ``datasets`` yields it undecoded."""
    return {"bytes": data, "path": None}


# --------------------------------------------------------------------------- records


def _dialogue(split: str, row_id: int, modality: str) -> dict[str, str | None]:
    # Unused turns: "" in type_a, None in type_b (the official data has both kinds of empty).
    empty: str | None = "" if split == "type_a" else None
    turns: dict[str, str | None] = dict.fromkeys(TURN_FIELDS, empty)
    for name in NEEDED_TURNS[split]:
        turns[name] = f"{split} row {row_id} {modality} turn {name}: what about this scene?"
    return turns


def _mcq(split: str, row_id: int, modality: str) -> list[dict[str, Any]]:
    options = [
        f"safe goal of row {row_id}",
        f"unsafe goal of row {row_id}",
        "an unrelated hobby",
        "an unrelated errand",
    ]
    return [
        {
            "question": f"{split}/{row_id}/{modality} question {index}: what is the user's goal?",
            "question_type": question_type,
            "options": list(options),
            "ground_truth": "B" if question_type.startswith("unsafe") else "A",
        }
        for index, question_type in enumerate(MCQ_TYPES)
    ]


def _tf(split: str, row_id: int, modality: str) -> list[dict[str, Any]]:
    return [
        {
            "question": f"{split}/{row_id}/{modality}: the user means no harm.",
            "ground_truth": False,
        },
        {"question": f"{split}/{row_id}/{modality}: the user intends harm.", "ground_truth": True},
    ]


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with ``DELETE`` remove) the value at a dotted path; digits index lists."""
    *parents, last = path.split(".")
    target: Any = record
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value


def make_record(
    split: str, row_id: int, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A valid record of `split` with id `row_id`, then `overrides` applied (dotted paths)."""
    record: dict[str, Any] = {
        "id": row_id,
        "image": image_field(png_bytes(color=(row_id % 256, 40, 200 if split == "type_a" else 90))),
        "variant_images": [image_field(png_bytes((4, 4), (i * 60, 0, 0))) for i in range(3)],
        "unsafe_intent": f"harmful goal number {row_id}",
    }
    for modality in MODALITIES:
        record[f"{modality}_dialogue"] = _dialogue(split, row_id, modality)
        record[f"{modality}_mcq"] = _mcq(split, row_id, modality)
        record[f"{modality}_tf"] = _tf(split, row_id, modality)
    for path, value in (overrides or {}).items():
        set_path(record, path, copy.deepcopy(value) if value is not DELETE else value)
    return record


def make_split(
    split: str,
    count: int = 3,
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
    ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """`count` valid records with ids 0…count-1 (or `ids`); overrides keyed by row position."""
    chosen = list(ids) if ids is not None else list(range(count))
    return [
        make_record(split, row_id, (overrides or {}).get(position))
        for position, row_id in enumerate(chosen)
    ]


def make_dataset(
    count: int = 3, overrides: Mapping[str, Mapping[int, Mapping[str, Any]]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Both splits; overrides keyed by split, then row position."""
    return {split: make_split(split, count, (overrides or {}).get(split)) for split in SPLITS}


# --------------------------------------------------------------------------- writers


def parquet_path(directory: Path, split: str) -> Path:
    return directory / "data" / f"{split}-00000-of-00001.parquet"


def write_parquet_dir(
    directory: Path,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    drop_columns: Sequence[str] = (),
) -> Path:
    """Write each split as the official parquet file; `drop_columns` leaves columns out."""
    features = official_features()
    for column in drop_columns:
        del features[column]
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        columns = {name: [record.get(name) for record in records] for name in features}
        import datasets

        datasets.disable_progress_bars()
        datasets.Dataset.from_dict(columns, features=features).to_parquet(
            str(parquet_path(directory, split))
        )
    return directory


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        raise TypeError("bytes cannot go to JSONL; images are written as files")
    return value


def write_jsonl_dir(directory: Path, splits: Mapping[str, Sequence[Mapping[str, Any]]]) -> Path:
    """Write ``DIR/<split>.jsonl``; image bytes go to ``DIR/images/<split>-<id>.png``."""
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        lines = []
        for position, record in enumerate(records):
            out = dict(record)
            image = out.get("image")
            if isinstance(image, Mapping):
                name = f"{split}-{position:04d}-{out.get('id')}.png"
                (images / name).write_bytes(image["bytes"])
                out["image"] = f"images/{name}"
            out.pop("variant_images", None)  # JSONL layout: only the base image is read
            lines.append(json.dumps(out, default=_jsonable))
        (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def isolated_datasets_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep `datasets`' arrow cache of the test parquet files out of the user's home.

    Autouse in every test module that imports it (module scope: it is in place before the
    module's other module-scoped fixtures load data). Subprocesses get it through the env.
    """
    import datasets

    cache = tmp_path_factory.getbasetemp() / "hf-datasets-cache"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        patch.setenv("HF_DATASETS_CACHE", str(cache))
        yield cache
