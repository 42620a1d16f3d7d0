"""--variants: multimodal dialogues also run on each row's variant images."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from fakeserver import FakeServer, RecordedRequest
from mtmcs.data.loaders import LoadOptions, load_benchmark
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from test_run_e2e import kind_of, standard_reply


def image_urls(request: RecordedRequest) -> list[str]:
    return [
        part["image_url"]["url"]
        for message in request.body["messages"]
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part["type"] == "image_url"
    ]


def config(server: FakeServer, out: Path, variants: bool) -> RunConfig:
    return RunConfig(
        model="openai-compatible/m",
        judge="openai-compatible/judge",
        dataset="sample",
        splits=("type_a",),
        limit=1,
        variants=variants,
        out=out,
        max_retries=0,
        base_urls=(server.base_url,),
        judge_base_urls=(server.base_url,),
        settings=RunSettings(max_connections=8),
    )


def test_variant_run_sends_each_variant_image_and_reports_each_variant(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    # Not checked here: a check would record the data as validated, and the run below
    # would then decode nothing (`mtmcs.data.validated`).
    unchecked = LoadOptions(variants=True, check_images=False)
    benchmark = load_benchmark("sample", ("type_a",), options=unchecked)
    row = min(benchmark.rows, key=lambda r: r.id)
    base_url = base64.b64encode(benchmark.image_bytes(row.image_id)).decode()

    def answer(request: RecordedRequest) -> str:
        if kind_of(request) == "mcq":  # the base image (or none) gets A, every variant B
            urls = image_urls(request)
            return "A" if not urls or base_url in urls[0] else "B"
        return standard_reply(request)

    server = fake_server(answer)
    result = run_benchmark(config(server, tmp_path, variants=True))
    assert result.complete
    calls = result.summary["metadata"]["calls"]
    assert (calls["model"]["made"], calls["judge"]["made"]) == (24 + 3 * 12, 4 + 3 * 2)
    # Validation decodes every image of the split once (12 rows × 4); sending encodes only
    # the 4 images of the row that runs.
    assert result.summary["metadata"]["images"] == {"decoded": 12 * 4, "encoded": 4}

    sent = {url.split(",", 1)[1] for r in server.requests for url in image_urls(r)}
    expected = {
        base64.b64encode(benchmark.image_bytes(i)).decode()
        for i in (row.image_id, *row.variant_image_ids)
    }
    assert sent == expected and len(expected) == 4

    cells = result.summary["type_a"]
    assert list(cells) == [
        "multimodal",
        "unimodal",
        "multimodal@v1",
        "multimodal@v2",
        "multimodal@v3",
        "overall",
        "variant_consistency",
    ]
    for variant in ("multimodal@v1", "multimodal@v2", "multimodal@v3"):
        assert cells[variant]["safety_awareness"]["n"] == 1
        assert cells[variant]["safe_mcq_accuracy"]["n"] == 2
    consistency = cells["variant_consistency"]
    assert consistency["judged_outcome"]["value"] == 1.0  # the judge always says 4
    assert consistency["mcq_answers"] == {**consistency["mcq_answers"], "value": 0.0, "n": 4}
    assert cells["overall"]["mcq_accuracy"]["n"] == 8  # base images only


def test_base_results_are_shared_with_a_run_without_variants(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    with_variants = run_benchmark(config(server, tmp_path, variants=True))
    server.clear()
    without = run_benchmark(config(server, tmp_path, variants=False))
    assert server.request_count == 0
    for cell in ("multimodal", "unimodal", "overall"):
        assert without.summary["type_a"][cell] == with_variants.summary["type_a"][cell]
    assert "variant_consistency" not in without.summary["type_a"]
