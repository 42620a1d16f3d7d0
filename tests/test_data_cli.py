"""The `mtmcs data` commands: in process through typer's CliRunner (the same app, exit codes
and messages), and through the real console entry point in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from command import Invoked, invoke
from datagen import (
    image_field,
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    make_dataset,
    make_split,
    parquet_path,
    png_bytes,
    write_jsonl_dir,
    write_parquet_dir,
)
from mtmcs.data.loaders import load_benchmark
from mtmcs.errors import DataError
from mtmcs.protocol.dialogues import expand_row

_SCRIPT = shutil.which("mtmcs", path=str(Path(sys.executable).parent))
COMMAND = [_SCRIPT] if _SCRIPT else [sys.executable, "-c", "from mtmcs.cli import main; main()"]
Result = Invoked


@pytest.fixture(scope="module")
def mtmcs():  # type: ignore[no-untyped-def]
    """`mtmcs ARGS…` in this process, as the console prints for an 80-column pipe."""

    def run(*args: str) -> Result:
        return invoke(*args, env={"COLUMNS": "80", "NO_COLOR": "1", "FORCE_COLOR": None})

    return run


def entry_point(cache: Path, *args: str) -> Result:
    """`mtmcs ARGS…` through the installed console script, in a subprocess."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(cache),
        "COLUMNS": "80",  # what rich uses when not on a terminal; fixed so output is stable
        "NO_COLOR": "1",
    }
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _squash(text: str) -> str:
    """Text without any whitespace: immune to the terminal wrapping long lines."""
    return "".join(text.split())


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells and cells[0] in ("type_a", "type_b"):
            rows[cells[0]] = cells[1:]
    return rows


# --------------------------------------------------------------------------- the sample


def test_validate_sample_exits_zero_and_says_no_problems(isolated_datasets_cache: Path) -> None:  # noqa: F811
    result = entry_point(isolated_datasets_cache, "data", "validate", "--dataset", "sample")
    assert result.returncode == 0, result.stderr
    assert "sample: 24 rows, no problems" in result.stdout
    assert "Traceback" not in result.stderr


def test_stats_sample_prints_rows_dialogues_questions_and_calls_per_split(mtmcs) -> None:  # type: ignore[no-untyped-def]
    result = mtmcs("data", "stats", "--dataset", "sample")
    assert result.returncode == 0, result.stderr
    assert "model calls" in result.stdout and "judge calls" in result.stdout
    # split: rows, dialogues, MCQ, TF, model calls, judge calls
    expected = ["12", "48", "96", "48", "288", "48"]
    assert _table_rows(result.stdout) == {"type_a": expected, "type_b": expected}


def test_split_option_selects_one_split(mtmcs) -> None:  # type: ignore[no-untyped-def]
    stats = mtmcs("data", "stats", "--dataset", "sample", "--split", "type_b")
    assert stats.returncode == 0, stats.stderr
    assert _table_rows(stats.stdout) == {"type_b": ["12", "48", "96", "48", "288", "48"]}
    validate = mtmcs("data", "validate", "--dataset", "sample", "--split", "type_a")
    assert validate.returncode == 0, validate.stderr
    assert "sample: 12 rows, no problems" in validate.stdout


def test_show_prints_the_four_dialogues_of_the_row_with_their_turns(mtmcs) -> None:  # type: ignore[no-untyped-def]
    result = mtmcs("data", "show", "3", "--dataset", "sample", "--split", "type_b")
    assert result.returncode == 0, result.stderr
    row = next(r for r in load_benchmark("sample", ("type_b",)).rows if r.id == 3)
    out = _squash(result.stdout)
    assert _squash(f"type_b row 3 unsafe intent: {row.unsafe_intent}") in out
    for dialogue in expand_row(row):
        assert dialogue.id in result.stdout
        for number, turn in enumerate(dialogue.turns, start=1):
            assert _squash(f"R{number}: {turn}") in out
    fields = row.multimodal.dialogue
    assert _squash(fields.unsafe_r1) in out and _squash(fields.safe_r1) in out
    # each dialogue block lists its own turns, in order
    unsafe_block = result.stdout.split("type_b/000003/multimodal/unsafe")[1].split(
        "type_b/000003/multimodal/safe"
    )[0]
    squashed = _squash(unsafe_block)
    positions = [squashed.index(_squash(t)) for t in (fields.unsafe_r1, fields.r2, fields.r3)]
    assert positions == sorted(positions)
    assert _squash(fields.safe_r1) not in squashed


# --------------------------------------------------------------------------- invalid data


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataError]:
    directory = tmp_path_factory.mktemp("cli") / "bad"
    overrides = {
        "type_a": {
            0: {"multimodal_dialogue.unsafe_r3": ""},
            1: {"unimodal_mcq.2.ground_truth": "E"},
        },
        "type_b": {1: {"image": image_field(png_bytes((32, 32))[:60])}},  # truncated
    }
    write_parquet_dir(directory, make_dataset(2, overrides))
    with pytest.raises(DataError) as caught:
        load_benchmark(str(directory))
    assert len(caught.value.problems) == 3
    return directory, caught.value


@pytest.fixture(scope="module")
def bad_validate(mtmcs, bad_dataset: tuple[Path, DataError]) -> Result:  # type: ignore[no-untyped-def]
    return mtmcs("data", "validate", "--dataset", str(bad_dataset[0]))


def test_validate_invalid_dataset_exits_nonzero_without_a_traceback(
    bad_validate: Result,
) -> None:
    assert bad_validate.returncode == 2
    assert "Traceback" not in bad_validate.stderr
    assert "Traceback" not in bad_validate.stdout
    assert bad_validate.stderr.startswith("error: 3 problem(s) in the data:")


def test_validate_invalid_dataset_names_file_row_and_field_of_every_problem(
    bad_validate: Result, bad_dataset: tuple[Path, DataError]
) -> None:
    directory, error = bad_dataset
    err = _squash(bad_validate.stderr)
    for problem in error.problems:
        assert _squash(str(problem)) in err
    for split, row, field in [
        ("type_a", 0, "multimodal_dialogue.unsafe_r3"),
        ("type_a", 1, "unimodal_mcq[2].ground_truth"),
        ("type_b", 1, "image"),
    ]:
        assert _squash(f"{parquet_path(directory, split)}: {split} row {row} field {field}:") in err


def test_validate_prints_each_problem_on_exactly_one_line(
    bad_validate: Result, bad_dataset: tuple[Path, DataError]
) -> None:
    lines = bad_validate.stderr.splitlines()
    assert lines[1:] == [str(problem) for problem in bad_dataset[1].problems]


def test_validate_reports_a_corrupted_parquet_file(mtmcs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    directory = write_parquet_dir(tmp_path / "d", make_dataset(1))
    parquet_path(directory, "type_a").write_bytes(b"garbage")
    result = mtmcs("data", "validate", "--dataset", str(directory))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert _squash(f"{parquet_path(directory, 'type_a')}: type_a: not a readable parquet") in (
        _squash(result.stderr)
    )


def test_validate_of_a_missing_directory_is_a_one_line_config_error(mtmcs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = mtmcs("data", "validate", "--dataset", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --dataset")
    assert _squash("expected 'official', 'sample' or a directory") in _squash(result.stderr)


@pytest.mark.parametrize("case", ["closing-tag-in-a-value", "style-tag-in-the-path"])
def test_validate_prints_problem_text_verbatim(mtmcs, tmp_path: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    if case == "closing-tag-in-a-value":
        directory = tmp_path / "plain"
        overrides = {0: {"multimodal_mcq.0.ground_truth": "[/E]"}}
        expected = "'[/E]' is not one of the option letters"
    else:
        directory = tmp_path / "set[bold]"
        overrides = {0: {"multimodal_dialogue.r2": ""}}
        expected = str(directory / "type_a.jsonl")
    write_jsonl_dir(directory, {"type_a": make_split("type_a", 1, overrides)})
    result = mtmcs("data", "validate", "--dataset", str(directory), "--split", "type_a")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert _squash(expected) in _squash(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("data", "show", "99", "--dataset", "sample"), id="unknown-row"),
        pytest.param(
            ("data", "validate", "--dataset", "sample", "--split", "type_c"), id="bad-split"
        ),
        pytest.param(("data", "validate", "--no-such-option"), id="unknown-option"),
    ],
)
def test_usage_errors_are_reported_without_a_traceback(mtmcs, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = mtmcs(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_the_entry_point_reports_a_usage_error_without_a_traceback(
    isolated_datasets_cache: Path,  # noqa: F811
) -> None:
    result = entry_point(isolated_datasets_cache, "data", "validate", "--split", "type_c")
    assert result.returncode == 2
    assert "type_c" in result.stderr and "Traceback" not in result.stderr
