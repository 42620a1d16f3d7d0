"""Hostile datasets: paths that escape the dataset directory, FIFOs, devices, directories and
oversized files are refused with file, row and field, never opened (nothing hangs or reads
without limit); images in any mode Pillow opens are converted once for the wire and every
multimodal call of a run over them is answered."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image

import mtmcs.data.records
import mtmcs.models.images
from command import invoke
from datagen import (
    image_field,
    isolated_datasets_cache,  # noqa: F401  (autouse fixture)
    jpeg_bytes,
    make_split,
    parquet_path,
    png_bytes,
    write_jsonl_dir,
    write_parquet_dir,
)
from fakeserver import FakeServer, RecordedRequest
from mtmcs.data.captions import load_captions
from mtmcs.data.loaders import (
    Benchmark,
    LoadOptions,
    load_benchmark,
    load_jsonl_dir,
    load_parquet_dir,
)
from mtmcs.data.paths import read_capped
from mtmcs.data.records import check_image, prepare_image
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.errors import ConfigError, DataError, Problem
from mtmcs.models.images import ImageEncoder

T = TypeVar("T")
PROMPTLY = 20.0  # seconds: a blocked open of a FIFO would never finish
WEB_SAFE = {("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("JPEG", "L"), ("JPEG", "RGB")}


def within(seconds: float, work: Callable[[], T]) -> T:
    """`work()` in a daemon thread; fails the test if it has not finished in `seconds`."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a FIFO?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def problems_of(load: Callable[[], Benchmark]) -> list[Problem]:
    with pytest.raises(DataError) as caught:
        within(PROMPTLY, load)
    return list(caught.value.problems)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real paths of every file opened through `os.open` (how dataset files are read)."""
    calls: list[str] = []
    original = os.open

    def spy(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        calls.append(os.path.realpath(path))
        return original(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return calls


def jsonl_dataset(directory: Path, *images: str) -> Path:
    """`type_a.jsonl` with one row per image path (ids 0, 1, …), images as given."""
    overrides = {position: {"image": value} for position, value in enumerate(images)}
    return write_jsonl_dir(directory, {"type_a": make_split("type_a", len(images), overrides)})


def load_type_a(directory: Path, **options: Any) -> Callable[[], Benchmark]:
    return lambda: load_jsonl_dir(directory, ("type_a",), options=LoadOptions(**options))


def only_image_problem(problems: list[Problem], directory: Path, row: int = 0) -> Problem:
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.source, problem.split, problem.row_id, problem.field) == (
        str(directory / "type_a.jsonl"),
        "type_a",
        row,
        "image",
    )
    return problem


# --------------------------------------------------------------------------- paths


def test_image_path_escaping_with_dotdot_is_refused_and_not_opened(
    tmp_path: Path, opened: list[str]
) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    directory = jsonl_dataset(tmp_path / "dataset", "images/../../outside.png")
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert "must be a path inside the dataset directory" in problem.message
    assert str(outside.resolve()) not in opened


def test_absolute_image_path_outside_is_refused_and_not_opened(
    tmp_path: Path, opened: list[str]
) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    directory = jsonl_dataset(tmp_path / "dataset", str(outside))
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert "must be a path inside the dataset directory" in problem.message
    assert str(outside.resolve()) not in opened


def test_symlink_to_an_image_outside_is_refused_and_not_opened(
    tmp_path: Path, opened: list[str]
) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())  # a valid image: only the escape can fail the row
    directory = jsonl_dataset(tmp_path / "dataset", "images/link.png")
    (directory / "images" / "link.png").symlink_to(outside)
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert f"resolves to {outside.resolve()}, outside the dataset directory" in problem.message
    assert str(outside.resolve()) not in opened


def test_symlink_to_dev_zero_is_refused_without_reading(tmp_path: Path, opened: list[str]) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/zero.png")
    (directory / "images" / "zero.png").symlink_to("/dev/zero")
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert "resolves to /dev/zero, outside the dataset directory" in problem.message
    assert "/dev/zero" not in opened


def test_character_device_inside_the_dataset_is_refused_without_opening(
    tmp_path: Path, opened: list[str]
) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/zero.png")
    device = directory / "images" / "zero.png"
    try:  # the same device as /dev/zero, inside the directory
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert problem.message == "'images/zero.png' is a character device, not a regular file"
    assert str(device) not in opened


def test_fifo_named_as_an_image_is_refused_promptly_and_never_opened(
    tmp_path: Path, opened: list[str]
) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/ok.png", "images/pipe.png")
    (directory / "images" / "ok.png").write_bytes(png_bytes())
    fifo = directory / "images" / "pipe.png"
    os.mkfifo(fifo)
    problem = only_image_problem(problems_of(load_type_a(directory)), directory, row=1)
    assert problem.message == "'images/pipe.png' is a FIFO, not a regular file"
    assert str(fifo) not in opened


def test_fifo_is_refused_in_a_dry_run_too(tmp_path: Path, opened: list[str]) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/pipe.png")
    os.mkfifo(directory / "images" / "pipe.png")
    problems = problems_of(load_type_a(directory, check_images=False))
    assert "is a FIFO, not a regular file" in only_image_problem(problems, directory).message
    assert not opened


def test_fifo_named_as_a_variant_image_is_refused_with_its_field(
    tmp_path: Path, opened: list[str]
) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/ok.png")
    (directory / "images" / "ok.png").write_bytes(png_bytes())
    fifo = directory / "images" / "pipe.png"
    os.mkfifo(fifo)
    record = json.loads((directory / "type_a.jsonl").read_text())
    record["variant_images"] = ["images/ok.png", "images/pipe.png"]
    (directory / "type_a.jsonl").write_text(json.dumps(record) + "\n")
    problems = problems_of(load_type_a(directory, variants=True))
    assert [(p.row_id, p.field, p.message) for p in problems] == [
        (0, "variant_images[1]", "'images/pipe.png' is a FIFO, not a regular file")
    ]
    assert str(fifo) not in opened


def test_an_image_swapped_for_a_fifo_after_a_dry_run_load_is_refused_when_read(
    tmp_path: Path,
) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/photo.png")
    image = directory / "images" / "photo.png"
    image.write_bytes(png_bytes())
    benchmark = within(PROMPTLY, load_type_a(directory, check_images=False))
    image.unlink()
    os.mkfifo(image)
    with pytest.raises(DataError) as caught:
        within(PROMPTLY, lambda: benchmark.image_bytes("type_a/0"))
    assert str(caught.value.problems[0]) == f"{image}: is a FIFO, not a regular file"


def test_directory_named_as_an_image_is_refused(tmp_path: Path) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/folder.png")
    (directory / "images" / "folder.png").mkdir()
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert problem.message == "'images/folder.png' is a directory, not a regular file"


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/loop.png")
    (directory / "images" / "loop.png").symlink_to("loop.png")
    problem = only_image_problem(problems_of(load_type_a(directory)), directory)
    assert problem.message.startswith("'images/loop.png' cannot be resolved")


def test_symlink_to_an_image_inside_the_dataset_is_read(tmp_path: Path) -> None:
    directory = jsonl_dataset(tmp_path / "dataset", "images/link.png")
    data = png_bytes(color=(1, 2, 3))
    (directory / "photos").mkdir()
    (directory / "photos" / "real.png").write_bytes(data)
    (directory / "images" / "link.png").symlink_to("../photos/real.png")
    benchmark = within(PROMPTLY, load_type_a(directory))
    assert benchmark.image_bytes("type_a/0") == data


def test_image_over_the_cap_is_refused_by_its_size_before_reading(
    tmp_path: Path, opened: list[str]
) -> None:
    data = jpeg_bytes()
    directory = jsonl_dataset(tmp_path / "dataset", "images/big.jpg")
    (directory / "images" / "big.jpg").write_bytes(data)
    problems = problems_of(load_type_a(directory, max_image_bytes=1000))
    problem = only_image_problem(problems, directory)
    assert problem.message == f"'images/big.jpg' is {len(data)} bytes, over the 1000 bytes cap"
    assert str((directory / "images" / "big.jpg").resolve()) not in opened


def test_image_bytes_over_the_cap_in_a_parquet_dataset_are_refused(tmp_path: Path) -> None:
    data = jpeg_bytes()
    records = make_split("type_a", 2, {1: {"image": image_field(data)}})
    records[0]["image"] = image_field(png_bytes())
    directory = write_parquet_dir(tmp_path / "dataset", {"type_a": records})
    options = LoadOptions(max_image_bytes=1000)
    problems = problems_of(lambda: load_parquet_dir(directory, ("type_a",), options=options))
    assert [(p.split, p.row_id, p.field, p.message) for p in problems] == [
        ("type_a", 1, "image", f"image is {len(data)} bytes, over the 1000 bytes cap")
    ]


def test_a_file_whose_size_lies_is_read_only_up_to_the_cap() -> None:
    # procfs reports size 0 for a regular file with content: the stat check cannot see it
    assert os.stat("/proc/self/status").st_size == 0
    assert read_capped(Path("/proc/self/status"), 100) == (
        "grew over the 100 bytes cap while it was read"
    )


def test_a_device_swapped_in_after_the_check_is_not_read() -> None:
    assert read_capped(Path("/dev/zero"), 1000) == "is a character device, not a regular file"


@pytest.mark.parametrize("in_memory", [False, True])
def test_a_parquet_image_with_a_path_and_no_bytes_is_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: bool
) -> None:
    target = tmp_path / "elsewhere.png"
    target.write_bytes(png_bytes())  # `datasets` looks at the file when writing
    records = make_split("type_a", 1, {0: {"image": {"bytes": None, "path": str(target)}}})
    directory = write_parquet_dir(tmp_path / "dataset", {"type_a": records})
    target.unlink()
    os.mkfifo(target)  # opening it now would block for ever
    if in_memory:  # `datasets` then keeps the table in memory, with no cache file
        import datasets

        monkeypatch.setattr(datasets.config, "IN_MEMORY_MAX_SIZE", 10**9)
    problems = problems_of(lambda: load_parquet_dir(directory, ("type_a",)))
    assert [(p.row_id, p.field, p.message) for p in problems] == [(0, "image", "no image bytes")]


def test_parquet_file_that_is_a_fifo_is_refused_promptly(tmp_path: Path) -> None:
    directory = tmp_path / "dataset"
    os.makedirs(directory / "data")
    os.mkfifo(parquet_path(directory, "type_a"))
    problems = problems_of(lambda: load_parquet_dir(directory, ("type_a",)))
    assert [(p.source, p.message) for p in problems] == [
        (str(parquet_path(directory, "type_a")), "is a FIFO, not a regular file")
    ]


def test_captions_file_that_is_a_fifo_or_too_large_is_a_one_line_error(tmp_path: Path) -> None:
    fifo = tmp_path / "captions.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as caught:
        within(PROMPTLY, lambda: load_captions(fifo))
    assert (
        str(caught.value) == f"cannot read captions file {fifo}: it is a FIFO, not a regular file"
    )
    large = tmp_path / "large.json"
    large.write_text(json.dumps({"0": "x" * 200}))
    with pytest.raises(ConfigError) as caught:
        load_captions(large, cap=100)
    size = large.stat().st_size
    assert str(caught.value).endswith(f"large.json: it is {size} bytes, over the 100 bytes cap")


def test_validate_command_reports_a_fifo_and_an_escape_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(png_bytes())
    directory = jsonl_dataset(tmp_path / "dataset", "../outside.png", "images/pipe.png")
    os.mkfifo(directory / "images" / "pipe.png")
    env = {"COLUMNS": "1000", "NO_COLOR": "1", "FORCE_COLOR": None}
    result = within(
        PROMPTLY,
        lambda: invoke(
            "data", "validate", "--dataset", str(directory), "--split", "type_a", env=env
        ),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    source = directory / "type_a.jsonl"
    assert result.stderr.splitlines() == [
        "error: 2 problem(s) in the data:",
        f"{source}: type_a row 0 field image: '../outside.png' must be a path inside the "
        "dataset directory (no absolute or '..')",
        f"{source}: type_a row 1 field image: 'images/pipe.png' is a FIFO, not a regular file",
    ]


# --------------------------------------------------------------------------- image modes


def saved(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def photo() -> Image.Image:
    """A real photo: the astronaut of the bundled sample (scikit-image, public domain)."""
    benchmark = load_benchmark("sample", ("type_a",), options=LoadOptions(check_images=False))
    with Image.open(io.BytesIO(benchmark.image_bytes("type_a/1"))) as image:
        return image.convert("RGB").resize((128, 128))


def grey_ramp(dtype: type[np.generic], low: float, high: float) -> Image.Image:
    values = np.linspace(low, high, 64 * 48).reshape(48, 64).astype(dtype)
    return Image.fromarray(values)


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 8, 16))
    image.info["transparency"] = 0
    return image


def hostile_images() -> dict[str, bytes]:
    """Images in modes providers reject or mangle, made with Pillow."""
    rgb = photo()
    float_ramp = np.linspace(0.0, 1.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    float_ramp[0, 0] = np.nan
    return {
        "cmyk.tiff": saved(rgb.convert("CMYK"), "TIFF"),
        "cmyk.jpg": saved(rgb.convert("CMYK"), "JPEG"),
        "float.tiff": saved(Image.fromarray(float_ramp), "TIFF"),
        "i16.png": saved(grey_ramp(np.uint16, 0, 4095), "PNG"),
        "i16.tiff": saved(grey_ramp(np.uint16, 0, 65535), "TIFF"),
        "i32.tiff": saved(grey_ramp(np.int32, -1000, 1000), "TIFF"),
        "palette-transparent.png": saved(palette_with_transparency(), "PNG"),
        "la.png": saved(Image.new("LA", (8, 8), (128, 64)), "PNG"),
        "bilevel.png": saved(Image.new("1", (8, 8), 1), "PNG"),
        "photo.bmp": saved(rgb, "BMP"),
        "photo.png": saved(rgb, "PNG"),  # already web-safe: sent as it is
    }


HOSTILE = hostile_images()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_image_mode_passes_validation_in_a_web_safe_form(name: str) -> None:
    data = HOSTILE[name]
    assert check_image(data) is None
    prepared = prepare_image(data)
    assert isinstance(prepared, bytes)
    image = decoded(prepared)
    assert (image.format, image.mode) in WEB_SAFE
    unchecked = base64.b64decode(ImageEncoder(lambda _: data)("x").data)
    assert unchecked == prepared  # the encoder alone (a dry run) converts the same way


def test_already_web_safe_images_are_sent_byte_for_byte() -> None:
    for data in (HOSTILE["photo.png"], jpeg_bytes(), saved(Image.new("RGB", (4, 4)), "GIF")):
        assert prepare_image(data) == data
        assert base64.b64decode(ImageEncoder({"x": data}.__getitem__)("x").data) == data


def test_cmyk_jpeg_becomes_an_rgb_jpeg_of_the_same_photo() -> None:
    image = decoded(base64.b64decode(ImageEncoder(lambda _: HOSTILE["cmyk.jpg"])("x").data))
    assert (image.format, image.mode) == ("JPEG", "RGB")
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(photo(), np.int16))
    assert difference.mean() < 8


def test_deep_and_float_grey_are_stretched_to_the_full_8_bit_range() -> None:
    for name in ("i16.png", "i16.tiff", "i32.tiff", "float.tiff"):
        prepared = prepare_image(HOSTILE[name])
        assert isinstance(prepared, bytes)
        image = decoded(prepared)
        assert image.mode == "L" and image.getextrema() == (0, 255), name
        assert image.getpixel((63, 47)) == 255  # the end of the ramp, not clipped mid-way


def test_palette_transparency_survives_as_alpha() -> None:
    prepared = prepare_image(HOSTILE["palette-transparent.png"])
    assert isinstance(prepared, bytes)
    image = decoded(prepared)
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (0, 0, 0, 0)
    assert image.getpixel((15, 0)) == (255, 0, 0, 255)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The mode of every image converted for the wire, at validation or by the encoder."""
    calls: list[str] = []
    original = mtmcs.models.images.convert_for_wire

    def counted(image: Image.Image) -> bytes:
        calls.append(image.mode)
        return original(image)

    monkeypatch.setattr(mtmcs.models.images, "convert_for_wire", counted)
    monkeypatch.setattr(mtmcs.data.records, "convert_for_wire", counted)
    yield calls


def hostile_dataset(directory: Path) -> Path:
    names = sorted(HOSTILE)
    jsonl_dataset(directory, *(f"images/{name}" for name in names))
    for name in names:
        (directory / "images" / name).write_bytes(HOSTILE[name])
    captions = {str(row): f"Picture {row}." for row in range(len(names))}
    (directory / "captions.json").write_text(json.dumps(captions))
    return directory


def test_images_are_converted_once_at_validation_and_sent_as_spooled(
    tmp_path: Path, conversions: list[str]
) -> None:
    benchmark = load_type_a(hostile_dataset(tmp_path / "dataset"))()
    assert len(conversions) == len(HOSTILE) - 1  # all but the PNG photo
    encoder = ImageEncoder(benchmark.image_bytes)
    for row in benchmark.rows:
        spooled = benchmark.image_bytes(row.image_id)
        assert (decoded(spooled).format, decoded(spooled).mode) in WEB_SAFE
        assert base64.b64decode(encoder(row.image_id).data) == spooled
    assert len(conversions) == len(HOSTILE) - 1  # none more when sent


def sent_images(request: RecordedRequest) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in request.body["messages"]
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


def reply(request: RecordedRequest) -> str:
    kind = request.call_kind
    if kind == "mcq":
        return "A"
    if kind == "tf":
        return "True"
    if kind == "turn":
        return "A reply."
    return '{"score": 4, "explanation": "Reasonable."}'


def test_a_run_over_every_image_mode_answers_every_multimodal_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    directory = hostile_dataset(tmp_path / "dataset")
    server = fake_server(reply)
    result = run_benchmark(
        RunConfig(
            model="openai-compatible/test-model",
            judge="openai-compatible/judge",
            dataset=str(directory),
            splits=("type_a",),
            out=tmp_path / "run",
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(max_connections=8, judge_max_connections=4),
        )
    )
    assert result.complete
    calls = result.summary["metadata"]["calls"]
    assert calls["model"]["failed"] == 0 and calls["judge"]["failed"] == 0
    assert calls["model"]["made"] == 24 * len(HOSTILE)
    urls = [url for request in server.requests for url in sent_images(request)]
    assert len(urls) == 12 * len(HOSTILE)  # 6 multimodal turns and 6 questions a row
    for url in set(urls):
        header, payload = url.split(",", 1)
        image = decoded(base64.b64decode(payload))
        assert (image.format, image.mode) in WEB_SAFE
        assert header == f"data:image/{str(image.format).lower()};base64"
    assert {base64.b64decode(url.split(",", 1)[1]) for url in urls} == {
        prepare_image(data) for data in HOSTILE.values()
    }
