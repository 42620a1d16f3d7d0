"""Invalid data is refused with a `DataError` locating every problem by file, split, row, field."""

from __future__ import annotations

import io
import json
import pathlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from datagen import (
    DELETE,
    big_blank_png,
    image_field,
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    jpeg_bytes,
    make_dataset,
    make_split,
    parquet_path,
    png_bytes,
    png_with_garbage_idat,
    write_jsonl_dir,
    write_parquet_dir,
)
from mtmcs.data.captions import load_captions, parse_captions
from mtmcs.data.loaders import load_benchmark, load_jsonl_dir, load_parquet_dir
from mtmcs.data.records import check_image
from mtmcs.errors import ConfigError, DataError, Problem

Records = dict[str, list[dict[str, Any]]]


def _parquet_error(tmp_path: Path, records: Records, **kwargs: Any) -> DataError:
    directory = write_parquet_dir(tmp_path, records, **kwargs)
    with pytest.raises(DataError) as caught:
        load_benchmark(str(directory), tuple(records))
    return caught.value


def _jsonl_error(tmp_path: Path, records: Records) -> DataError:
    directory = write_jsonl_dir(tmp_path, records)
    with pytest.raises(DataError) as caught:
        load_benchmark(str(directory), tuple(records))
    return caught.value


def _where(error: DataError) -> set[tuple[str, Any, str]]:
    return {(p.split, p.row_id, p.field) for p in error.problems}


def _only(error: DataError) -> Problem:
    assert len(error.problems) == 1, str(error)
    return error.problems[0]


def _assert_summary(error: DataError) -> None:
    """`str()` is a count line, then one line per problem, each naming where it is."""
    lines = str(error).splitlines()
    assert lines[0] == f"{len(error.problems)} problem(s) in the data:"
    assert lines[1:] == [str(problem) for problem in error.problems]
    for problem, line in zip(error.problems, lines[1:], strict=True):
        assert line.startswith(f"{problem.source}: ")
        assert problem.split in line
        if problem.row_id is not None:
            assert f"row {problem.row_id}" in line
        if problem.field:
            assert f"field {problem.field}:" in line
        assert line.endswith(problem.message)


# --------------------------------------------------------------------------- missing turns


def test_type_a_empty_unsafe_r3_is_reported_with_file_split_row_and_field(
    tmp_path: Path,
) -> None:
    records = {"type_a": make_split("type_a", 3, {1: {"multimodal_dialogue.unsafe_r3": ""}})}
    error = _parquet_error(tmp_path, records)
    problem = _only(error)
    assert problem == Problem(
        str(parquet_path(tmp_path, "type_a")),
        "type_a",
        1,
        "multimodal_dialogue.unsafe_r3",
        "is empty",
    )
    _assert_summary(error)
    assert str(error).splitlines()[1] == (
        f"{parquet_path(tmp_path, 'type_a')}: type_a row 1 "
        "field multimodal_dialogue.unsafe_r3: is empty"
    )


def test_type_b_null_safe_r1_is_reported(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", 2, {0: {"unimodal_dialogue.safe_r1": None}})}
    problem = _only(_parquet_error(tmp_path, records))
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(parquet_path(tmp_path, "type_b")),
        "type_b",
        0,
        "unimodal_dialogue.safe_r1",
    )
    assert problem.message == "is empty"


@pytest.mark.parametrize(
    ("split", "field"),
    [
        ("type_a", "multimodal_dialogue.r1"),
        ("type_a", "unimodal_dialogue.safe_r3"),
        ("type_b", "multimodal_dialogue.r3"),
        ("type_b", "unimodal_dialogue.unsafe_r1"),
    ],
)
def test_whitespace_only_needed_turn_counts_as_missing(
    tmp_path: Path, split: str, field: str
) -> None:
    records = {split: make_split(split, 1, {0: {field: "  \n\t"}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.split, problem.row_id, problem.field, problem.message) == (
        split,
        0,
        field,
        "is empty",
    )


def test_turn_missing_from_a_jsonl_dialogue_object_is_reported(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", 1, {0: {"multimodal_dialogue.r2": DELETE}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.source, problem.field) == (
        str(tmp_path / "type_b.jsonl"),
        "multimodal_dialogue.r2",
    )


# --------------------------------------------------------------------------- wrong types


def test_mcq_options_that_are_not_a_list_are_reported(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 2, {1: {"unimodal_mcq.0.options": "A, B, C, D"}})}
    error = _jsonl_error(tmp_path, records)
    problem = error.problems[0]
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(tmp_path / "type_a.jsonl"),
        "type_a",
        1,
        "unimodal_mcq[0].options",
    )
    assert "list" in problem.message
    _assert_summary(error)


def test_bad_options_do_not_also_blame_a_valid_ground_truth(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"unimodal_mcq.0.options": "A, B, C, D"}})}
    error = _jsonl_error(tmp_path, records)
    assert [p.field for p in error.problems] == ["unimodal_mcq[0].options"]


def test_mcq_question_that_is_not_a_string_is_reported(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", 1, {0: {"multimodal_mcq.2.question": 42}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.row_id, problem.field) == (0, "multimodal_mcq[2].question")
    assert problem.message == "expected a string, got int"


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("multimodal_mcq", {"question": "q"}, "multimodal_mcq", "expected a list, got dict"),
        ("unimodal_tf", "true", "unimodal_tf", "expected a list, got str"),
        ("multimodal_mcq.1", "not an object", "multimodal_mcq[1]", "expected an object"),
        ("unimodal_tf.0.question", ["a", "list"], "unimodal_tf[0].question", "got list"),
        ("multimodal_dialogue", ["r1", "r2"], "multimodal_dialogue", "expected an object"),
        ("unimodal_dialogue.r2", 7, "unimodal_dialogue.r2", "expected a string, got int"),
        ("unsafe_intent", None, "unsafe_intent", "is empty"),
        ("multimodal_mcq.0.options.2", 3, "multimodal_mcq[0].options[2]", "got int"),
        ("multimodal_mcq.0.options", ["only one"], "multimodal_mcq[0].options", "at least 2"),
        ("unimodal_mcq.3.question_type", "neutral", "unimodal_mcq[3].question_type", "neither"),
        ("id", "7", "id", "non-negative integer"),
        ("id", -1, "id", "non-negative integer"),
        ("id", True, "id", "non-negative integer"),
    ],
)
def test_wrongly_typed_field_is_reported_by_its_path(
    tmp_path: Path, path: str, value: Any, field: str, words: str
) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {path: value}})}
    error = _jsonl_error(tmp_path, records)
    assert field in {p.field for p in error.problems}, str(error)
    problem = next(p for p in error.problems if p.field == field)
    assert problem.split == "type_a"
    assert problem.source == str(tmp_path / "type_a.jsonl")
    assert words in problem.message


def test_jsonl_row_with_a_missing_column_is_reported(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"unimodal_mcq": DELETE}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.row_id, problem.field) == (0, "unimodal_mcq")


# --------------------------------------------------------------------------- ground truths


def test_mcq_ground_truth_letter_outside_the_options_is_reported(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", 3, {2: {"unimodal_mcq.1.ground_truth": "E"}})}
    error = _parquet_error(tmp_path, records)
    problem = _only(error)
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(parquet_path(tmp_path, "type_b")),
        "type_b",
        2,
        "unimodal_mcq[1].ground_truth",
    )
    assert "'E'" in problem.message and "A, B, C, D" in problem.message
    _assert_summary(error)


@pytest.mark.parametrize("truth", ["", " ", None, 1, "1", "option A"])
def test_mcq_ground_truth_that_is_not_a_letter_is_reported(tmp_path: Path, truth: Any) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"multimodal_mcq.0.ground_truth": truth}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert problem.field == "multimodal_mcq[0].ground_truth"


@pytest.mark.parametrize("truth", ["AB", "BCD"])
def test_multi_letter_mcq_ground_truth_is_reported(tmp_path: Path, truth: str) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"multimodal_mcq.0.ground_truth": truth}})}
    directory = write_jsonl_dir(tmp_path, records)
    with pytest.raises(DataError) as caught:
        load_jsonl_dir(directory, ("type_a",))
    assert _only(caught.value).field == "multimodal_mcq[0].ground_truth"


@pytest.mark.parametrize("truth", ["True", "false", 1, 0, None])
def test_tf_ground_truth_that_is_not_a_bool_is_reported(tmp_path: Path, truth: Any) -> None:
    records = {"type_a": make_split("type_a", 2, {1: {"multimodal_tf.1.ground_truth": truth}})}
    error = _jsonl_error(tmp_path, records)
    problem = _only(error)
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(tmp_path / "type_a.jsonl"),
        "type_a",
        1,
        "multimodal_tf[1].ground_truth",
    )
    assert repr(truth) in problem.message
    _assert_summary(error)


# --------------------------------------------------------------------------- images


def _truncated_jpeg() -> bytes:
    data = jpeg_bytes()
    return data[: len(data) // 2]


def _truncated_png() -> bytes:
    data = png_bytes((32, 32))
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(range(256)) * 4, id="random-bytes"),
        pytest.param(_truncated_png(), id="truncated-png"),
        pytest.param(png_bytes()[:-6], id="png-cut-inside-iend"),
        pytest.param(b"", id="empty"),
    ],
)
def test_undecodable_image_is_reported_on_the_image_field(tmp_path: Path, data: bytes) -> None:
    records = {
        "type_a": make_split("type_a", 2, {1: {"image": image_field(data)}}),
        "type_b": make_split("type_b", 1),
    }
    error = _parquet_error(tmp_path, records)
    problem = _only(error)
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(parquet_path(tmp_path, "type_a")),
        "type_a",
        1,
        "image",
    )
    assert "image" in problem.message
    _assert_summary(error)


def test_undecodable_jsonl_image_file_is_reported(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", 1, {0: {"image": image_field(b"\x89PNG garbage")}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.source, problem.row_id, problem.field) == (
        str(tmp_path / "type_b.jsonl"),
        0,
        "image",
    )
    assert "cannot decode image" in problem.message


def test_jsonl_image_file_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"image": "images/missing.png"}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.field, problem.row_id) == ("image", 0)
    assert "missing.png" in problem.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_truncated_jpeg(), id="truncated-jpeg"),
        pytest.param(png_with_garbage_idat(png_bytes((16, 16))), id="png-garbage-idat"),
    ],
)
def test_image_whose_pixels_cannot_be_decoded_is_reported(data: bytes) -> None:
    # decoding it later (when sending it to a model) fails:
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as image:
        image.load()
    assert check_image(data) is not None


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(20000, 20000, id="over-twice-the-limit"),  # Pillow raises
        pytest.param(10000, 10000, id="over-the-limit"),  # Pillow only warns
    ],
)
def test_decompression_bomb_is_reported_not_decoded(
    tmp_path: Path, width: int, height: int
) -> None:
    bomb = big_blank_png(width, height)
    assert len(bomb) < 100_000  # tiny to store, huge to decode
    records = {"type_b": make_split("type_b", 2, {0: {"image": image_field(bomb)}})}
    problem = _only(_parquet_error(tmp_path, records))
    assert (problem.split, problem.row_id, problem.field) == ("type_b", 0, "image")
    assert "too large" in problem.message


def test_image_over_a_lowered_pixel_limit_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    records = {"type_a": make_split("type_a", 1, {0: {"image": image_field(png_bytes((40, 40)))}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.field, problem.row_id) == ("image", 0)
    assert "too large" in problem.message


# --------------------------------------------------------------------------- ids


def test_duplicate_id_is_reported_once_per_repeat(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", ids=[0, 1, 1, 2, 1])}
    error = _parquet_error(tmp_path, records)
    assert [(p.split, p.row_id, p.field, p.message) for p in error.problems] == [
        ("type_a", 1, "id", "duplicate id"),
        ("type_a", 1, "id", "duplicate id"),
    ]
    assert all(p.source == str(parquet_path(tmp_path, "type_a")) for p in error.problems)
    _assert_summary(error)


def test_duplicate_id_in_jsonl_is_reported(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", ids=[5, 5])}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.source, problem.row_id, problem.field) == (
        str(tmp_path / "type_b.jsonl"),
        5,
        "id",
    )


def test_unhashable_jsonl_id_is_reported_not_crashing(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"id": [1]}})}
    directory = write_jsonl_dir(tmp_path, records)
    with pytest.raises(DataError) as caught:
        load_jsonl_dir(directory, ("type_a",))
    assert "id" in {p.field for p in caught.value.problems}


# --------------------------------------------------------------------------- many problems


def test_every_problem_in_every_row_and_split_is_reported(tmp_path: Path) -> None:
    overrides = {
        "type_a": {
            0: {
                "multimodal_dialogue.unsafe_r3": "",
                "unimodal_mcq.3.ground_truth": "Z",
                "multimodal_tf.0.ground_truth": None,
            },
            2: {"image": image_field(b"not an image at all")},
        },
        "type_b": {
            1: {"unimodal_dialogue.safe_r1": None, "unsafe_intent": ""},
        },
    }
    error = _parquet_error(tmp_path, make_dataset(3, overrides))
    assert _where(error) == {
        ("type_a", 0, "multimodal_dialogue.unsafe_r3"),
        ("type_a", 0, "unimodal_mcq[3].ground_truth"),
        ("type_a", 0, "multimodal_tf[0].ground_truth"),
        ("type_a", 2, "image"),
        ("type_b", 1, "unimodal_dialogue.safe_r1"),
        ("type_b", 1, "unsafe_intent"),
    }
    assert len(error.problems) == 6
    sources = {p.split: p.source for p in error.problems}
    assert sources == {
        "type_a": str(parquet_path(tmp_path, "type_a")),
        "type_b": str(parquet_path(tmp_path, "type_b")),
    }
    _assert_summary(error)


def test_jsonl_problems_of_several_kinds_are_all_reported(tmp_path: Path) -> None:
    directory = write_jsonl_dir(
        tmp_path,
        {"type_a": make_split("type_a", ids=[0, 1, 1], overrides={0: {"unsafe_intent": 3}})},
    )
    path = directory / "type_a.jsonl"
    path.write_text(path.read_text() + "{broken\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_jsonl_dir(directory, ("type_a",))
    assert _where(caught.value) == {
        ("type_a", "line 4", ""),
        ("type_a", 0, "unsafe_intent"),
        ("type_a", 1, "id"),
    }


def test_long_problem_lists_are_summarised_after_50_lines(tmp_path: Path) -> None:
    records = {
        "type_a": make_split(
            "type_a",
            30,
            {i: {"unsafe_intent": "", "multimodal_dialogue.r2": ""} for i in range(30)},
        )
    }
    error = _jsonl_error(tmp_path, records)
    assert len(error.problems) == 60
    lines = str(error).splitlines()
    assert lines[0] == "60 problem(s) in the data:"
    assert len(lines) == 1 + 50 + 1
    assert lines[-1] == "… and 10 more"


# --------------------------------------------------------------------------- parquet files


def test_corrupted_parquet_file_is_reported_by_its_path(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path, make_dataset(1))
    bad = parquet_path(directory, "type_a")
    bad.write_bytes(b"PAR1 these are not the bytes of a parquet file")
    with pytest.raises(DataError) as caught:
        load_parquet_dir(directory)
    problem = _only(caught.value)
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(bad),
        "type_a",
        None,
        "",
    )
    assert "not a readable parquet file" in problem.message
    assert str(caught.value).splitlines()[1].startswith(f"{bad}: type_a: not a readable")


def test_corrupted_parquet_files_of_both_splits_are_both_reported(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path, make_dataset(1))
    for split in ("type_a", "type_b"):
        parquet_path(directory, split).write_bytes(b"garbage")
    with pytest.raises(DataError) as caught:
        load_parquet_dir(directory)
    assert {p.split for p in caught.value.problems} == {"type_a", "type_b"}


def test_parquet_file_missing_columns_reports_each_column(tmp_path: Path) -> None:
    records = {"type_b": make_split("type_b", 1)}
    error = _parquet_error(tmp_path, records, drop_columns=("unimodal_tf", "unsafe_intent"))
    assert sorted((p.field, p.message) for p in error.problems) == [
        ("unimodal_tf", "column is missing"),
        ("unsafe_intent", "column is missing"),
    ]
    assert {(p.source, p.split, p.row_id) for p in error.problems} == {
        (str(parquet_path(tmp_path, "type_b")), "type_b", None)
    }
    _assert_summary(error)


def test_parquet_without_the_optional_variant_images_column_loads(tmp_path: Path) -> None:
    directory = write_parquet_dir(
        tmp_path, {"type_a": make_split("type_a", 2)}, drop_columns=("variant_images",)
    )
    assert len(load_parquet_dir(directory, ("type_a",)).rows) == 2


# --------------------------------------------------------------------------- JSONL files


@pytest.fixture
def read_bytes_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path whose bytes are read through `Path.read_bytes`."""
    calls: list[Path] = []
    original = pathlib.Path.read_bytes

    def spy(self: Path) -> bytes:
        calls.append(self)
        return original(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", spy)
    return calls


def _outside_image(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    return outside


def test_jsonl_absolute_image_path_is_refused_and_not_read(
    tmp_path: Path, read_bytes_calls: list[Path]
) -> None:
    outside = _outside_image(tmp_path)  # a valid image: only the refusal can fail the row
    directory = tmp_path / "dataset"
    records = {"type_a": make_split("type_a", 1, {0: {"image": str(outside)}})}
    error = _jsonl_error(directory, records)
    problem = _only(error)
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(directory / "type_a.jsonl"),
        "type_a",
        0,
        "image",
    )
    assert "must be a path inside the dataset directory" in problem.message
    assert outside.resolve() not in {p.resolve() for p in read_bytes_calls}


@pytest.mark.parametrize("relative", ["../outside.png", "images/../../outside.png"])
def test_jsonl_image_path_with_dotdot_is_refused_and_not_read(
    tmp_path: Path, read_bytes_calls: list[Path], relative: str
) -> None:
    outside = _outside_image(tmp_path)
    directory = tmp_path / "dataset"
    records = {"type_b": make_split("type_b", 1, {0: {"image": relative}})}
    problem = _only(_jsonl_error(directory, records))
    assert (problem.row_id, problem.field) == (0, "image")
    assert repr(relative) in problem.message
    assert outside.resolve() not in {p.resolve() for p in read_bytes_calls}


@pytest.mark.parametrize("value", [None, "", 12])
def test_jsonl_image_that_is_not_a_path_is_reported(tmp_path: Path, value: Any) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"image": value}})}
    problem = _only(_jsonl_error(tmp_path, records))
    assert (problem.field, problem.message) == (
        "image",
        "expected a relative path to an image file",
    )


def test_jsonl_line_that_is_not_json_is_reported_with_its_line_number(tmp_path: Path) -> None:
    directory = write_jsonl_dir(tmp_path, {"type_a": make_split("type_a", 1)})
    path = directory / "type_a.jsonl"
    # line 1: a valid record; line 2 blank (skipped but counted); 3: not JSON; 4: not an object
    path.write_text(path.read_text() + "\nthis is not JSON\n[1, 2, 3]\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_jsonl_dir(directory, ("type_a",))
    error = caught.value
    assert [(p.source, p.split, p.row_id, p.field) for p in error.problems] == [
        (str(directory / "type_a.jsonl"), "type_a", "line 3", ""),
        (str(directory / "type_a.jsonl"), "type_a", "line 4", ""),
    ]
    assert "invalid JSON" in error.problems[0].message
    assert error.problems[1].message == "expected a JSON object"
    assert "type_a row line 3: invalid JSON" in str(error)


def test_jsonl_file_with_invalid_utf8_is_reported(tmp_path: Path) -> None:
    write_jsonl_dir(tmp_path, {"type_a": make_split("type_a", 1)})
    path = tmp_path / "type_a.jsonl"
    path.write_bytes(path.read_bytes() + b'{"id": "\xff\xfe"}\n')
    with pytest.raises(DataError) as caught:
        load_jsonl_dir(tmp_path, ("type_a",))
    assert caught.value.problems[0].source == str(path)


def test_jsonl_image_path_with_nul_is_reported(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"image": "images/a\x00.png"}})}
    directory = write_jsonl_dir(tmp_path, records)
    with pytest.raises(DataError) as caught:
        load_jsonl_dir(directory, ("type_a",))
    assert _only(caught.value).field == "image"


# --------------------------------------------------------------------------- captions


def test_valid_captions_map_int_ids_to_stripped_text() -> None:
    assert parse_captions('{"0": " A dog. ", "12": "A cat."}', "c.json") == {
        0: "A dog.",
        12: "A cat.",
    }


def test_captions_file_that_is_a_json_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "captions.json"
    path.write_text('["A dog.", "A cat."]', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_captions(path)
    problem = _only(caught.value)
    assert problem.source == str(path)
    assert "expected a JSON object" in problem.message and "list" in problem.message


def test_captions_that_are_not_json_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "captions.json"
    path.write_text("{'0': 'single quotes'}", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_captions(path)


def test_non_string_or_empty_captions_are_all_reported() -> None:
    text = json.dumps({"0": "fine", "1": 3, "2": None, "3": "  ", "4": ["a"]})
    with pytest.raises(DataError) as caught:
        parse_captions(text, "captions.json")
    error = caught.value
    assert [p.row_id for p in error.problems] == ["1", "2", "3", "4"]
    assert all(p.message == "caption is not a non-empty string" for p in error.problems)
    assert all(p.source == "captions.json" for p in error.problems)


def test_non_numeric_caption_keys_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "captions.json"
    path.write_text(
        json.dumps({"0": "ok", "abc": "x", "-1": "y", "1.5": "z", "": "w"}), encoding="utf-8"
    )
    with pytest.raises(DataError) as caught:
        load_captions(path)
    assert [p.row_id for p in caught.value.problems] == ["abc", "-1", "1.5", ""]
    assert all(p.message == "key is not a row id" for p in caught.value.problems)
    assert all(p.source == str(path) for p in caught.value.problems)


def test_missing_captions_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read captions file"):
        load_captions(tmp_path / "absent.json")


def test_caption_key_with_a_non_ascii_digit_is_reported() -> None:
    with pytest.raises(DataError):
        parse_captions('{"\u00b2": "superscript two"}', "captions.json")


def test_two_caption_keys_for_the_same_id_are_reported() -> None:
    with pytest.raises(DataError):
        parse_captions('{"1": "first", "01": "second"}', "captions.json")


def test_file_level_captions_problem_reads_cleanly() -> None:
    with pytest.raises(DataError) as caught:
        parse_captions("[]", "captions.json")
    line = str(caught.value).splitlines()[1]
    assert ": :" not in line
