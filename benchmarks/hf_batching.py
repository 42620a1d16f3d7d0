"""Batched generation of the `hf/` provider against one request per `generate`.

    python benchmarks/hf_batching.py                       # a tiny random LLaVA, built here
    python benchmarks/hf_batching.py --model hf/llava-hf/llava-v1.6-mistral-7b-hf --device cuda

Sends the same mixed requests (turn 1 with the image, later turns as text) concurrently,
as the engine does, once per batch size, and prints per batch size: wall time, requests per
second, `generate` calls, the speed-up over batch size 1 (measured in the same run) and how
many replies are identical to batch size 1's (greedy decoding; in float32 they all should
be, in bfloat16 padding may change the rounding).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "mtmcs" / "data" / "sample" / "data" / "type_a-00000-of-00001.parquet"


def requests(count: int, max_tokens: int) -> list[Any]:
    """`count` requests: every third one a first turn with the image, the rest text turns."""
    from mtmcs.models.base import ChatRequest
    from mtmcs.protocol.messages import Message

    made = []
    for index in range(count):
        question = f"Request {index}: what should I keep in mind about item {index % 7}?"
        if index % 3 == 0:
            messages: tuple[Message, ...] = (Message("user", question, "photo"),)
        else:
            messages = (
                Message("user", "Tell me about this place."),
                Message("assistant", "It looks like a quiet street with a few shops."),
                Message("user", question * (1 + index % 4)),
            )
        made.append(ChatRequest(messages=messages, max_tokens=max_tokens, temperature=0.0))
    return made


def photo_bytes() -> bytes:
    """The first photo of the bundled sample."""
    import pyarrow.parquet as pq

    image: bytes = pq.read_table(SAMPLE, columns=["image"]).column("image")[0].as_py()["bytes"]
    return image


async def timed(model: Any, batch: list[Any]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    completions = await asyncio.gather(*(model.complete(request) for request in batch))
    return time.perf_counter() - started, [c.text for c in completions]


def run(model_name: str, sizes: list[int], count: int, max_tokens: int, device: str) -> None:
    from mtmcs.models.images import ImageEncoder
    from mtmcs.models.registry import ProviderOptions, create_model

    data = photo_bytes()
    images = ImageEncoder(lambda _: data)
    batch = requests(count, max_tokens)
    reference: list[str] | None = None
    base_s: float | None = None
    print(f"model {model_name} on {device}: {count} requests, max_tokens {max_tokens}")
    print(f"{'batch':>5} {'wall s':>8} {'req/s':>7} {'generate':>8} {'speed-up':>8} {'same':>6}")
    for size in sizes:
        options = ProviderOptions(batch_size=size, device=device, dtype="float32")
        model: Any = create_model(model_name, images, options)
        calls = 0
        generate = model.model.generate

        def counted(*args: Any, _generate: Any = generate, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return _generate(*args, **kwargs)

        model.model.generate = counted
        asyncio.run(timed(model, batch[:2]))  # warm-up: loading, kernels
        calls = 0
        wall, replies = asyncio.run(timed(model, batch))
        asyncio.run(model.aclose())
        reference = reference or replies
        base_s = base_s or wall
        same = sum(a == b for a, b in zip(reference, replies, strict=True))
        print(
            f"{size:>5} {wall:>8.2f} {count / wall:>7.1f} {calls:>8} "
            f"{base_s / wall:>7.2f}x {same:>3}/{count}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hf/<id or dir> (default: a tiny random LLaVA)")
    parser.add_argument("--batch-sizes", default="1,4,16", help="comma-separated")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sizes = sorted({1, *(int(size) for size in args.batch_sizes.split(","))})  # 1: the baseline
    if args.model:
        run(args.model, sizes, args.requests, args.max_tokens, args.device)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_llava

    with tempfile.TemporaryDirectory(prefix="mtmcs-tiny-") as scratch:
        tiny = build_llava(Path(scratch) / "llava")
        run(tiny.name, sizes, args.requests, args.max_tokens, args.device)


if __name__ == "__main__":
    main()
