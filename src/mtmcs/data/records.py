"""Raw records of the official schema → typed rows, reporting every problem precisely."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image, UnidentifiedImageError

from mtmcs.errors import Problem
from mtmcs.models.images import convert_for_wire, is_web_safe
from mtmcs.protocol.dialogues import turn_fields
from mtmcs.protocol.prompts import option_letters
from mtmcs.protocol.text import invalid_code_points
from mtmcs.protocol.types import (
    INTENTS,
    MODALITIES,
    TURN_FIELDS,
    DialogueFields,
    McqItem,
    ModalityContent,
    Row,
    Split,
    TfItem,
)


class _Checker:
    """Collects the problems of one record."""

    def __init__(self, source: str, split: Split, row_id: object) -> None:
        self.source = source
        self.split = split
        self.row_id = row_id if isinstance(row_id, int | str) else None
        self.problems: list[Problem] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.source, self.split, self.row_id, field, message))

    def text(self, value: object, field: str, *, required: bool = True) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.add(field, f"expected a string, got {type(value).__name__}")
            return ""
        if required and not value.strip():
            self.add(field, "is empty")
        if invalid := invalid_code_points(value):
            self.add(field, f"contains {invalid} invalid code point(s) (lone UTF-16 surrogates)")
        return value

    def items(self, value: object, field: str) -> list[Mapping[str, Any]]:
        if not isinstance(value, list | tuple):
            self.add(field, f"expected a list, got {type(value).__name__}")
            return []
        good: list[Mapping[str, Any]] = []
        for index, item in enumerate(value):
            if isinstance(item, Mapping):
                good.append(item)
            else:
                self.add(f"{field}[{index}]", f"expected an object, got {type(item).__name__}")
        return good


@cache
def _needed_turns(split: Split) -> frozenset[str]:
    """The turn fields a dialogue of `split` must fill (of either intent)."""
    return frozenset(name for intent in INTENTS for name in turn_fields(split, intent))


def _dialogue(check: _Checker, value: object, field: str) -> DialogueFields:
    if not isinstance(value, Mapping):
        check.add(field, f"expected an object with turns, got {type(value).__name__}")
        return DialogueFields()
    needed = _needed_turns(check.split)
    turns = {
        name: check.text(value.get(name), f"{field}.{name}", required=name in needed)
        for name in TURN_FIELDS
    }
    return DialogueFields(**turns)


def _mcq(check: _Checker, value: object, field: str) -> tuple[McqItem, ...]:
    items: list[McqItem] = []
    for index, item in enumerate(check.items(value, field)):
        where = f"{field}[{index}]"
        question = check.text(item.get("question"), f"{where}.question")
        question_type = check.text(item.get("question_type"), f"{where}.question_type")
        if question_type and not question_type.strip().lower().startswith(("safe", "unsafe")):
            check.add(
                f"{where}.question_type",
                f"{question_type!r} starts with neither 'safe' nor 'unsafe'",
            )
        raw_options = item.get("options")
        options: list[str] = []
        if not isinstance(raw_options, list | tuple) or len(raw_options) < 2:
            check.add(f"{where}.options", "expected a list of at least 2 options")
        else:
            options = [
                check.text(option, f"{where}.options[{i}]") for i, option in enumerate(raw_options)
            ]
        truth = item.get("ground_truth")
        letters = option_letters(len(options))
        letter = truth.strip().upper() if isinstance(truth, str) else ""
        if options and (len(letter) != 1 or letter not in letters):
            check.add(
                f"{where}.ground_truth",
                f"{truth!r} is not one of the option letters {', '.join(letters)}",
            )
        truth = letter
        items.append(McqItem(question, question_type, tuple(options), truth))
    return tuple(items)


def _tf(check: _Checker, value: object, field: str) -> tuple[TfItem, ...]:
    items: list[TfItem] = []
    for index, item in enumerate(check.items(value, field)):
        where = f"{field}[{index}]"
        question = check.text(item.get("question"), f"{where}.question")
        truth = item.get("ground_truth")
        if not isinstance(truth, bool):
            check.add(f"{where}.ground_truth", f"expected true or false, got {truth!r}")
            truth = False
        items.append(TfItem(question, truth))
    return tuple(items)


def check_image(data: bytes | None) -> str | None:
    """Why these bytes are not a usable image, or `None` (see `prepare_image`)."""
    prepared = prepare_image(data)
    return prepared if isinstance(prepared, str) else None


def prepare_image(data: bytes | None) -> bytes | str:
    """The bytes to send for an image, or why it is not usable.

    Pixels are decoded (not just the headers checked) and oversized images are refused
    before decoding, so a decompression bomb costs nothing. An image providers would not
    take as it is (a TIFF, a CMYK JPEG, 16-bit grey, …) is converted here, once; one that
    cannot be converted is refused, so no image passes validation to fail every call.
    """
    if not data:
        return "no image bytes"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.verify()  # chunk checksums and structure
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # every pixel
                return data if is_web_safe(image) else _converted(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"image too large to decode safely ({error})"
    except UnidentifiedImageError:
        return "cannot decode image: not in a format Pillow can read"
    except Exception as error:  # PIL raises many types for corrupt files
        return f"cannot decode image ({type(error).__name__}: {error})"


def _converted(image: Image.Image) -> bytes | str:
    try:
        return convert_for_wire(image)
    except Exception as error:  # a mode Pillow decodes but cannot convert
        return (
            f"image mode {image.mode} cannot be converted to PNG or JPEG for sending "
            f"({type(error).__name__}: {error}); convert the file to PNG"
        )


@dataclass(frozen=True, slots=True)
class RawImage:
    """An image of a record as the loader read it: bytes, or the reason it could not."""

    field: str
    data: bytes | str | None


def image_id(split: Split, row_id: int, variant: int = 0) -> str:
    """The id by which requests and the store refer to a row's image (or its k-th variant)."""
    return f"{split}/{row_id}" if variant == 0 else f"{split}/{row_id}/v{variant}"


def parse_record(
    record: Mapping[str, Any],
    split: Split,
    source: str,
    images: Sequence[RawImage],
    check_images: bool = True,
) -> tuple[Row | None, list[Problem]]:
    """Check one record of the official schema and build its typed row.

    `images` are the base image then any variant images the loader read; each is decoded
    here unless `check_images` is off (a reason from the loader is always reported).
    Returns the row, or `None` when any problem was found, with every problem.
    """
    raw_id = record.get("id")
    check = _Checker(source, split, raw_id)
    if isinstance(raw_id, bool) or not isinstance(raw_id, int) or raw_id < 0:
        check.add("id", f"expected a non-negative integer, got {raw_id!r}")
    unsafe_intent = check.text(record.get("unsafe_intent"), "unsafe_intent")
    contents = {}
    for modality in MODALITIES:
        contents[modality] = ModalityContent(
            dialogue=_dialogue(check, record.get(f"{modality}_dialogue"), f"{modality}_dialogue"),
            mcq=_mcq(check, record.get(f"{modality}_mcq"), f"{modality}_mcq"),
            tf=_tf(check, record.get(f"{modality}_tf"), f"{modality}_tf"),
        )
    for image in images:
        if isinstance(image.data, str):
            check.add(image.field, image.data)
        elif check_images and (reason := check_image(image.data)) is not None:
            check.add(image.field, reason)
    if check.problems or not isinstance(raw_id, int):
        return None, check.problems
    row = Row(
        split=split,
        id=raw_id,
        image_id=image_id(split, raw_id),
        unsafe_intent=unsafe_intent,
        multimodal=contents["multimodal"],
        unimodal=contents["unimodal"],
        variant_image_ids=tuple(image_id(split, raw_id, k) for k in range(1, len(images))),
    )
    return row, []


def duplicate_problems(ids: Sequence[object], split: Split, source: str) -> list[Problem]:
    """One problem per repeated occurrence of an id within a split."""
    seen: set[object] = set()
    problems: list[Problem] = []
    for raw_id in ids:
        if not isinstance(raw_id, int | str):
            continue  # already reported as a bad id
        if raw_id in seen:
            row_id = raw_id if isinstance(raw_id, int | str) else None
            problems.append(Problem(source, split, row_id, "id", "duplicate id"))
        seen.add(raw_id)
    return problems
