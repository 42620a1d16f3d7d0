"""Parquet files `datasets` converted before are read from its Arrow conversion without
importing `datasets`; any change of the parquet or the Arrow files goes through it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datagen import (
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    make_dataset,
    write_parquet_dir,
)
from mtmcs.data.converted import known_conversion
from mtmcs.data.loaders import LoadOptions, load_parquet_dir

LOAD = """
import json, sys
from pathlib import Path
from mtmcs.data.loaders import LoadOptions, load_parquet_dir
benchmark = load_parquet_dir(Path(sys.argv[1]), options=LoadOptions(variants=True))
print(json.dumps({
    "datasets": "datasets" in sys.modules,
    "pandas": "pandas" in sys.modules,
    "intents": [row.unsafe_intent for row in benchmark.rows],
    "images": [len(benchmark.image_bytes(row.image_id)) for row in benchmark.rows],
    "decoded": benchmark.images_decoded,
}))
"""


def load_in_a_new_process(directory: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(directory)],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
        timeout=300,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def parquet_files(directory: Path) -> list[Path]:
    return sorted((directory / "data").glob("type_a-*.parquet"))


def test_a_second_load_reads_the_conversion_without_datasets(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(3))
    first = load_in_a_new_process(directory)
    assert first["datasets"] and first["decoded"]
    again = load_in_a_new_process(directory)
    assert again["datasets"] is False and again["pandas"] is False
    assert again["decoded"] == 0  # validated before, by the same Arrow files' content
    assert (again["intents"], again["images"]) == (first["intents"], first["images"])


def test_a_changed_parquet_file_goes_through_datasets_again(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(3))
    load_parquet_dir(directory, options=LoadOptions())
    assert known_conversion(parquet_files(directory), "type_a") is not None
    changed = make_dataset(3)
    changed["type_a"][2]["unsafe_intent"] = "A different intent."
    write_parquet_dir(directory, changed)
    assert known_conversion(parquet_files(directory), "type_a") is None
    again = load_in_a_new_process(directory)
    assert again["datasets"] is True
    assert "A different intent." in again["intents"]  # type: ignore[operator]


def test_a_changed_or_lost_arrow_file_goes_through_datasets_again(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(3))
    load_parquet_dir(directory, options=LoadOptions())
    arrow = known_conversion(parquet_files(directory), "type_a")
    assert arrow
    arrow[0].write_bytes(arrow[0].read_bytes())  # the same bytes, written again
    assert known_conversion(parquet_files(directory), "type_a") is None
    load_parquet_dir(directory, options=LoadOptions())  # converted again, remembered again
    arrow = known_conversion(parquet_files(directory), "type_a")
    assert arrow
    arrow[0].unlink()
    assert known_conversion(parquet_files(directory), "type_a") is None
