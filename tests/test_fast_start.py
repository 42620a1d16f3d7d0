"""Instant reruns and a fast start: validation remembered by the data's content, images read
where they lie and checked once, in the background, while the run goes on.

A dataset that passed every check is recorded by a fingerprint of its files' bytes; a load
of the same bytes decodes nothing. Any change of an image byte, of a text field, or of the
checks' version is a miss. Text, paths, file kinds and size caps are checked on every load,
so a hostile dataset is refused even when its images are taken as validated."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import mtmcs.data.loaders
import mtmcs.data.validated
from datagen import (
    image_field,
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    make_dataset,
    make_split,
    png_bytes,
    png_with_garbage_idat,
    write_jsonl_dir,
    write_parquet_dir,
)
from fakeserver import FakeServer, RecordedRequest
from mtmcs.data.loaders import Benchmark, LoadOptions, load_jsonl_dir, load_parquet_dir
from mtmcs.engine.finished import FINISHED_FILE
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.errors import DataError
from mtmcs.models.images import ImageEncoder


def cmyk_jpeg() -> bytes:
    """A JPEG providers would not take as it is: converted once before it is sent."""
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 12), (10, 200, 30, 5)).save(buffer, format="JPEG")
    return buffer.getvalue()


def jsonl_split(directory: Path, count: int = 3, **overrides: Any) -> Path:
    records = make_split("type_a", count, {0: overrides} if overrides else None)
    return write_jsonl_dir(directory, {"type_a": records})


def load_jsonl(directory: Path, **options: Any) -> Benchmark:
    return load_jsonl_dir(directory, ("type_a",), options=LoadOptions(**options))


def image_files(directory: Path) -> list[Path]:
    return sorted((directory / "images").iterdir())


def wire(benchmark: Benchmark) -> dict[str, bytes]:
    """The data URL each image is sent as."""
    encoder = ImageEncoder(benchmark.image_bytes)
    ids = [image for row in benchmark.rows for image in (row.image_id, *row.variant_image_ids)]
    return {image: encoder(image).data_url for image in ids}


# --------------------------------------------------------------------------- the cache


def test_an_unchanged_dataset_is_decoded_once_then_taken_as_validated(tmp_path: Path) -> None:
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(3))
    first = load_parquet_dir(directory, options=LoadOptions(variants=True))
    again = load_parquet_dir(directory, options=LoadOptions(variants=True))
    assert first.images_decoded > 0
    assert again.images_decoded == 0
    assert again.rows == first.rows
    assert wire(again) == wire(first)


def test_a_changed_image_byte_is_decoded_again_and_a_broken_one_refused(tmp_path: Path) -> None:
    directory = jsonl_split(tmp_path / "dataset")
    assert load_jsonl(directory).images_decoded == 3
    target = image_files(directory)[0]
    broken = png_with_garbage_idat(target.read_bytes())
    stamp = target.stat()
    target.write_bytes(broken)
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the old mtime: still seen
    with pytest.raises(DataError) as caught:
        load_jsonl(directory)
    assert [(p.row_id, p.field) for p in caught.value.problems] == [(0, "image")]
    assert "cannot decode image" in caught.value.problems[0].message


def test_a_changed_text_field_is_a_miss(tmp_path: Path) -> None:
    directory = jsonl_split(tmp_path / "dataset")
    assert load_jsonl(directory).images_decoded == 3
    assert load_jsonl(directory).images_decoded == 0
    lines = (directory / "type_a.jsonl").read_text().replace("harmful goal number 1", "other")
    (directory / "type_a.jsonl").write_text(lines)
    changed = load_jsonl(directory)
    assert changed.images_decoded == 3
    assert {row.unsafe_intent for row in changed.rows} >= {"other"}


def test_a_new_version_of_the_checks_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(2))
    assert load_parquet_dir(directory).images_decoded > 0
    assert load_parquet_dir(directory).images_decoded == 0
    monkeypatch.setattr(
        mtmcs.data.validated, "VALIDATION_VERSION", mtmcs.data.validated.VALIDATION_VERSION + 1
    )
    assert load_parquet_dir(directory).images_decoded > 0


def test_a_dataset_with_a_bad_image_is_never_recorded_as_validated(tmp_path: Path) -> None:
    bad = png_with_garbage_idat(png_bytes())
    directory = jsonl_split(tmp_path / "dataset", image=image_field(bad))
    for _ in range(2):  # refused on every load, not only the first
        with pytest.raises(DataError):
            load_jsonl(directory)
    assert not list(Path(os.environ["MTMCS_VALIDATION_CACHE"]).glob("*.ok"))


def test_a_hostile_dataset_is_refused_even_when_its_images_count_as_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mtmcs.data.loaders, "is_validated", lambda key: True)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    records = make_split(
        "type_a",
        4,
        {
            0: {"image": "../outside.png"},
            1: {"image": "images/fifo.png"},
            2: {"multimodal_dialogue.r2": ""},
        },
    )
    directory = write_jsonl_dir(tmp_path / "dataset", {"type_a": records})
    os.mkfifo(directory / "images" / "fifo.png")
    with pytest.raises(DataError) as caught:
        load_jsonl(directory)
    found = {(p.row_id, p.field) for p in caught.value.problems}
    assert found == {(0, "image"), (1, "image"), (2, "multimodal_dialogue.r2")}
    assert "FIFO" in str(caught.value)


def test_an_image_over_the_cap_is_refused_on_a_cache_hit_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(2))
    assert load_parquet_dir(directory).images_decoded > 0
    with pytest.raises(DataError) as caught:  # the cap is part of the fingerprint's context
        load_parquet_dir(directory, options=LoadOptions(max_image_bytes=10))
    assert all("over the" in p.message for p in caught.value.problems)
    monkeypatch.setattr(mtmcs.data.loaders, "is_validated", lambda key: True)
    with pytest.raises(DataError):  # and checked before the cache is asked
        load_parquet_dir(directory, options=LoadOptions(max_image_bytes=10))


# --------------------------------------------------------------------------- lazy images


def test_images_read_lazily_or_checked_later_go_on_the_wire_as_checked_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = {"type_a": {1: {"image": image_field(cmyk_jpeg())}}}
    directory = write_parquet_dir(tmp_path / "dataset", make_dataset(3, overrides))
    eager = load_parquet_dir(directory, options=LoadOptions(variants=True))
    hit = load_parquet_dir(directory, options=LoadOptions(variants=True))
    unchecked = load_parquet_dir(directory, options=LoadOptions(variants=True, check_images=False))
    assert (eager.images_decoded, hit.images_decoded) != (0, 0) and hit.images_decoded == 0
    monkeypatch.setenv("MTMCS_VALIDATION_CACHE", str(tmp_path / "fresh"))  # nothing validated
    deferred = load_parquet_dir(directory, options=LoadOptions(variants=True, defer_checks=True))
    assert deferred.pending is not None
    sent = wire(eager)
    assert wire(hit) == sent and wire(unchecked) == sent and wire(deferred) == sent
    assert deferred.pending.finish() == []
    assert base64.b64decode(sent["type_a/1"].split(b",", 1)[1])[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(base64.b64decode(sent["type_a/1"].split(b",", 1)[1]))).mode == (
        "RGB"
    )


# --------------------------------------------------------------------------- runs


def reply(request: RecordedRequest) -> str:
    kind = request.call_kind
    if kind == "mcq":
        return "A"
    if kind == "tf":
        return "True"
    if kind == "turn":
        return "A reply."
    return '{"score": 4, "explanation": "Reasonable."}'


def run_config(directory: Path, out: Path, server: FakeServer) -> RunConfig:
    return RunConfig(
        model="openai-compatible/test-model",
        judge="openai-compatible/judge",
        dataset=str(directory),
        splits=("type_a",),
        out=out,
        base_urls=(server.base_url,),
        judge_base_urls=(server.base_url,),
        max_retries=0,
        settings=RunSettings(max_connections=8, judge_max_connections=4),
    )


def captioned(directory: Path, rows: int) -> Path:
    (directory / "captions.json").write_text(
        "{" + ",".join(f'"{row}": "Picture {row}."' for row in range(rows)) + "}"
    )
    return directory


def test_a_rerun_of_a_finished_run_makes_no_call_and_decodes_nothing(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    directory = captioned(write_parquet_dir(tmp_path / "dataset", make_dataset(2)), 2)
    server = fake_server(reply)
    first = run_benchmark(run_config(directory, tmp_path / "run", server))
    assert first.complete and first.summary["metadata"]["images"]["decoded"] == 2
    made = len(server.requests)
    assert made == 2 * 28
    assert run_benchmark(run_config(directory, tmp_path / "run", server)).up_to_date
    (tmp_path / "run" / FINISHED_FILE).unlink()  # replayed: every call from the store
    again = run_benchmark(run_config(directory, tmp_path / "run", server))
    assert len(server.requests) == made
    calls = again.summary["metadata"]["calls"]
    assert (calls["model"]["made"], calls["judge"]["made"]) == (0, 0)
    assert (calls["model"]["cached"], calls["judge"]["cached"]) == (48, 8)
    assert again.summary["metadata"]["images"]["decoded"] == 0
    assert {k: v for k, v in again.summary.items() if k != "metadata"} == {
        k: v for k, v in first.summary.items() if k != "metadata"
    }


def test_an_image_refused_while_the_run_goes_on_is_never_sent_and_stops_the_run(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    bad = png_with_garbage_idat(png_bytes(color=(1, 2, 3)))
    records = make_split("type_a", 3, {1: {"image": image_field(bad)}})
    directory = captioned(write_parquet_dir(tmp_path / "dataset", {"type_a": records}), 3)
    server = fake_server(reply)
    with pytest.raises(DataError) as caught:
        run_benchmark(run_config(directory, tmp_path / "run", server))
    assert [(p.row_id, p.field) for p in caught.value.problems] == [(1, "image")]
    sent = [r for r in server.requests if base64.b64encode(bad).decode() in str(r.body)]
    assert sent == []
    # The two good rows in full; of row 1 only its unimodal dialogues (12 + 2 calls).
    assert len(server.requests) == 3 * 28 - 14
    assert not list(Path(os.environ["MTMCS_VALIDATION_CACHE"]).glob("*.ok"))
