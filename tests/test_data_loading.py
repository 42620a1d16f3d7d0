"""Loading the benchmark: the bundled sample, local parquet / JSONL directories, turn assembly."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from datagen import (
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    make_dataset,
    make_split,
    parquet_path,
    write_jsonl_dir,
    write_parquet_dir,
)
from mtmcs.data.captions import load_captions
from mtmcs.data.loaders import (
    SAMPLE_DIR,
    Benchmark,
    load_benchmark,
    load_jsonl_dir,
    load_parquet_dir,
)
from mtmcs.errors import ConfigError, DataError
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.types import Row

EXPECTED_TURNS = {
    ("type_a", "unsafe"): ("r1", "r2", "unsafe_r3"),
    ("type_a", "safe"): ("r1", "r2", "safe_r3"),
    ("type_b", "unsafe"): ("unsafe_r1", "r2", "r3"),
    ("type_b", "safe"): ("safe_r1", "r2", "r3"),
}


@pytest.fixture(scope="module")
def sample() -> Benchmark:
    return load_benchmark("sample")


def _row(benchmark: Benchmark, split: str, row_id: int) -> Row:
    return next(row for row in benchmark.rows if row.split == split and row.id == row_id)


# --------------------------------------------------------------------------- the sample


def test_sample_loads_24_rows_12_per_split_with_ids_0_to_11(sample: Benchmark) -> None:
    assert sample.name == "sample"
    assert len(sample.rows) == 24
    for split in ("type_a", "type_b"):
        assert sorted(row.id for row in sample.rows if row.split == split) == list(range(12))


def test_sample_rows_have_split_scoped_image_ids(sample: Benchmark) -> None:
    assert {row.image_id for row in sample.rows} == {
        f"{split}/{i}" for split in ("type_a", "type_b") for i in range(12)
    }


def test_each_sample_row_expands_to_four_dialogues_with_stable_ids(sample: Benchmark) -> None:
    row = _row(sample, "type_a", 3)
    dialogues = expand_row(row)
    assert [d.id for d in dialogues] == [
        "type_a/000003/multimodal/unsafe",
        "type_a/000003/multimodal/safe",
        "type_a/000003/unimodal/unsafe",
        "type_a/000003/unimodal/safe",
    ]
    assert [(d.modality, d.intent) for d in dialogues] == [
        ("multimodal", "unsafe"),
        ("multimodal", "safe"),
        ("unimodal", "unsafe"),
        ("unimodal", "safe"),
    ]
    assert all(d.split == "type_a" and d.row_id == 3 for d in dialogues)


def test_every_sample_row_gives_four_distinct_dialogues(sample: Benchmark) -> None:
    ids = [d.id for row in sample.rows for d in expand_row(row)]
    assert len(ids) == 96
    assert len(set(ids)) == 96


def test_safe_and_unsafe_dialogues_of_one_scenario_share_a_pair_id(sample: Benchmark) -> None:
    for row in sample.rows:
        dialogues = expand_row(row)
        for modality in ("multimodal", "unimodal"):
            pair = {d.pair_id for d in dialogues if d.modality == modality}
            assert pair == {f"{row.split}/{row.id:06d}/{modality}"}
        assert len({d.pair_id for d in dialogues}) == 2


def test_unsafe_dialogue_gets_unsafe_mcqs_and_both_tf_items(sample: Benchmark) -> None:
    for row in sample.rows:
        for dialogue in expand_row(row):
            if dialogue.intent != "unsafe":
                continue
            content = row.content(dialogue.modality)
            mcqs = [q for q in dialogue.questions if q.kind == "mcq"]
            tfs = [q for q in dialogue.questions if q.kind == "tf"]
            expected = [m for m in content.mcq if m.question_type.startswith("unsafe")]
            assert [q.text for q in mcqs] == [m.question for m in expected]
            assert [q.ground_truth for q in mcqs] == [m.ground_truth for m in expected]
            assert [q.options for q in mcqs] == [m.options for m in expected]
            assert [(q.text, q.ground_truth) for q in tfs] == [
                (t.question, t.ground_truth) for t in content.tf
            ]
            assert len(tfs) == 2


def test_safe_dialogue_gets_only_the_safe_mcqs(sample: Benchmark) -> None:
    for row in sample.rows:
        for dialogue in expand_row(row):
            if dialogue.intent != "safe":
                continue
            content = row.content(dialogue.modality)
            assert all(q.kind == "mcq" for q in dialogue.questions)
            expected = [m.question for m in content.mcq if m.question_type.startswith("safe")]
            assert [q.text for q in dialogue.questions] == expected
            assert expected, "every sample row has safe MCQs"


def test_question_ids_keep_the_row_position_of_each_item(sample: Benchmark) -> None:
    row = _row(sample, "type_b", 3)
    by_id = {d.id: d for d in expand_row(row)}
    unsafe = by_id["type_b/000003/multimodal/unsafe"]
    safe = by_id["type_b/000003/multimodal/safe"]
    positions = {
        intent: [
            f"mcq/{i}"
            for i, m in enumerate(row.multimodal.mcq)
            if m.question_type.startswith(intent)
        ]
        for intent in ("unsafe", "safe")
    }
    assert [q.id.split("/", 4)[4] for q in unsafe.questions] == [
        *positions["unsafe"],
        "tf/0",
        "tf/1",
    ]
    assert [q.id.split("/", 4)[4] for q in safe.questions] == positions["safe"]
    assert all(q.id.startswith(unsafe.id + "/") for q in unsafe.questions)


@pytest.mark.parametrize(("split", "intent"), sorted(EXPECTED_TURNS))
def test_turns_are_assembled_per_split_and_intent(
    sample: Benchmark, split: str, intent: str
) -> None:
    names = EXPECTED_TURNS[(split, intent)]
    for row in (r for r in sample.rows if r.split == split):
        for dialogue in expand_row(row):
            if dialogue.intent != intent:
                continue
            fields = row.content(dialogue.modality).dialogue
            assert dialogue.turns == tuple(getattr(fields, name) for name in names)
            assert all(turn.strip() for turn in dialogue.turns)


def test_type_a_unsafe_dialogue_ends_with_unsafe_r3_and_safe_with_safe_r3(
    sample: Benchmark,
) -> None:
    row = _row(sample, "type_a", 0)
    fields = row.multimodal.dialogue
    by_intent = {d.intent: d for d in expand_row(row, ("multimodal",))}
    assert by_intent["unsafe"].turns == (fields.r1, fields.r2, fields.unsafe_r3)
    assert by_intent["safe"].turns == (fields.r1, fields.r2, fields.safe_r3)
    assert fields.unsafe_r3 != fields.safe_r3


def test_type_b_unsafe_dialogue_starts_with_unsafe_r1_and_safe_with_safe_r1(
    sample: Benchmark,
) -> None:
    row = _row(sample, "type_b", 3)
    fields = row.unimodal.dialogue
    by_intent = {d.intent: d for d in expand_row(row, ("unimodal",))}
    assert by_intent["unsafe"].turns == (fields.unsafe_r1, fields.r2, fields.r3)
    assert by_intent["safe"].turns == (fields.safe_r1, fields.r2, fields.r3)
    assert fields.unsafe_r1 != fields.safe_r1


def test_unimodal_dialogues_have_no_image_and_multimodal_ones_the_row_image(
    sample: Benchmark,
) -> None:
    for row in sample.rows:
        for dialogue in expand_row(row):
            if dialogue.modality == "unimodal":
                assert dialogue.image_id is None
            else:
                assert dialogue.image_id == row.image_id == f"{row.split}/{row.id}"


def test_expand_row_can_restrict_modalities(sample: Benchmark) -> None:
    dialogues = expand_row(sample.rows[0], ("unimodal",))
    assert [d.id for d in dialogues] == [
        "type_a/000000/unimodal/unsafe",
        "type_a/000000/unimodal/safe",
    ]


def test_sample_image_bytes_are_readable_images(sample: Benchmark) -> None:
    for row in (_row(sample, "type_a", 3), _row(sample, "type_b", 11)):
        data = sample.image_bytes(row.image_id)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.width > 0 and image.height > 0


def test_sample_has_its_captions_file(sample: Benchmark) -> None:
    assert sample.captions_path == SAMPLE_DIR / "captions.json"
    assert sample.captions_path is not None and sample.captions_path.is_file()
    captions = load_captions(sample.captions_path)
    assert set(captions) == set(range(12))
    assert all(caption.strip() for caption in captions.values())


# --------------------------------------------------------------------------- parquet and JSONL


def test_parquet_and_jsonl_directories_of_the_same_records_load_to_equal_rows(
    tmp_path: Path,
) -> None:
    records = make_dataset(3)
    from_parquet = load_benchmark(str(write_parquet_dir(tmp_path / "pq", records)))
    from_jsonl = load_benchmark(str(write_jsonl_dir(tmp_path / "js", records)))
    assert len(from_parquet.rows) == 6
    assert from_parquet.rows == from_jsonl.rows
    for row in from_parquet.rows:
        assert from_parquet.image_bytes(row.image_id) == from_jsonl.image_bytes(row.image_id)


def test_generated_rows_keep_every_field(tmp_path: Path) -> None:
    records = make_dataset(2)
    benchmark = load_parquet_dir(write_parquet_dir(tmp_path, records))
    row = _row(benchmark, "type_b", 1)
    record = records["type_b"][1]
    assert row.unsafe_intent == record["unsafe_intent"]
    assert row.multimodal.dialogue.unsafe_r1 == record["multimodal_dialogue"]["unsafe_r1"]
    assert row.unimodal.dialogue.r1 == ""  # None in the record: empty, not "None"
    assert [m.options for m in row.unimodal.mcq] == [
        tuple(m["options"]) for m in record["unimodal_mcq"]
    ]
    assert [t.ground_truth for t in row.multimodal.tf] == [False, True]
    assert benchmark.image_bytes(row.image_id) == record["image"]["bytes"]


def test_dataset_directory_layout_picks_the_loader(tmp_path: Path) -> None:
    records = make_dataset(1)
    parquet = load_benchmark(str(write_parquet_dir(tmp_path / "pq", records)))
    jsonl = load_benchmark(str(write_jsonl_dir(tmp_path / "js", records)))
    assert parquet.name == str(tmp_path / "pq")
    assert jsonl.name == str(tmp_path / "js")
    assert parquet.revision is None and jsonl.revision is None


def test_captions_json_next_to_the_data_is_picked_up(tmp_path: Path) -> None:
    records = make_dataset(1)
    directory = write_jsonl_dir(tmp_path, records)
    assert load_benchmark(str(directory)).captions_path is None
    (directory / "captions.json").write_text('{"0": "A red square."}', encoding="utf-8")
    assert load_benchmark(str(directory)).captions_path == directory / "captions.json"


def test_lowercase_ground_truth_letter_is_normalised_to_uppercase(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 1, {0: {"multimodal_mcq.0.ground_truth": " c "}})}
    benchmark = load_jsonl_dir(write_jsonl_dir(tmp_path, records), ("type_a",))
    assert benchmark.rows[0].multimodal.mcq[0].ground_truth == "C"


def test_a_turn_the_split_does_not_use_may_be_empty(tmp_path: Path) -> None:
    records = {
        "type_a": make_split("type_a", 1, {0: {"multimodal_dialogue.r3": None}}),
        "type_b": make_split("type_b", 1, {0: {"unimodal_dialogue.safe_r3": ""}}),
    }
    assert len(load_parquet_dir(write_parquet_dir(tmp_path, records)).rows) == 2


def test_same_id_in_both_splits_is_not_a_duplicate(tmp_path: Path) -> None:
    records = make_dataset(2)
    benchmark = load_parquet_dir(write_parquet_dir(tmp_path, records))
    assert sorted((row.split, row.id) for row in benchmark.rows) == [
        ("type_a", 0),
        ("type_a", 1),
        ("type_b", 0),
        ("type_b", 1),
    ]


# --------------------------------------------------------------------------- split selection


def test_split_selection_loads_only_that_split_of_the_sample() -> None:
    benchmark = load_benchmark("sample", ("type_b",))
    assert len(benchmark.rows) == 12
    assert {row.split for row in benchmark.rows} == {"type_b"}
    assert set(benchmark.images) == {f"type_b/{i}" for i in range(12)}


def test_split_selection_does_not_need_the_other_split_file(tmp_path: Path) -> None:
    records = {"type_a": make_split("type_a", 2)}
    parquet = load_benchmark(str(write_parquet_dir(tmp_path / "pq", records)), ("type_a",))
    jsonl = load_benchmark(str(write_jsonl_dir(tmp_path / "js", records)), ("type_a",))
    assert [(r.split, r.id) for r in parquet.rows] == [("type_a", 0), ("type_a", 1)]
    assert parquet.rows == jsonl.rows


def test_split_selection_does_not_read_the_other_split_file(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path, make_dataset(1))
    parquet_path(directory, "type_b").write_bytes(b"garbage, not parquet")
    assert len(load_benchmark(str(directory), ("type_a",)).rows) == 1


def test_missing_split_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    parquet = write_parquet_dir(tmp_path / "pq", {"type_a": make_split("type_a", 1)})
    with pytest.raises(DataError) as caught:
        load_benchmark(str(parquet))
    (problem,) = caught.value.problems
    assert (problem.source, problem.split) == (str(parquet / "data"), "type_b")
    assert "type_b-*.parquet" in problem.message

    jsonl = write_jsonl_dir(tmp_path / "js", {"type_b": make_split("type_b", 1)})
    with pytest.raises(DataError) as caught:
        load_benchmark(str(jsonl))
    (problem,) = caught.value.problems
    assert (problem.source, problem.split) == (str(jsonl / "type_a.jsonl"), "type_a")


def test_naming_a_split_twice_loads_it_once() -> None:
    benchmark = load_benchmark("sample", ("type_a", "type_a"))
    assert len(benchmark.rows) == 12


def test_dataset_that_is_not_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected 'official', 'sample' or a directory"):
        load_benchmark(str(tmp_path / "nowhere"))


def test_directory_without_either_layout_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ConfigError, match="neither"):
        load_benchmark(str(tmp_path))
