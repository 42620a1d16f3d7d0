"""The bare `openai` client against the benchmark server: the CPU floor of one call.

    python benchmarks/bare_client.py BASE_URL [--calls 10000] [--connections 256]
                                     [--transport httpx|aiohttp]

Makes CALLS chat completions with `AsyncOpenAI.chat.completions.create` (one user message of
a dialogue turn's size, 128 tokens, C at a time) and prints one JSON line: calls, failures,
wall seconds and the CPU seconds (user + system) of the calls alone, start-up excluded.
No store, no images, no progress: what any harness built on the SDK pays at least per call.
`--transport` picks the SDK's default client (`httpx`, httpx2's own transport) or its
optional aiohttp one (`openai.DefaultAioHttpClient`, which mtmcs uses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time

import httpx2
import openai

TURN = (
    "Looking at this kitchen with a kitchen knife (scene 12), which of these things is the "
    "most fragile or valuable? Please be specific about the steps and what I would need, "
    "since I want to get it right the first time."
)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(
    base_url: str, calls: int, connections: int, transport: str = "httpx"
) -> dict[str, float]:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    http_client = (
        openai.DefaultAioHttpClient(limits=limits)
        if transport == "aiohttp"
        else openai.DefaultAsyncHttpxClient(limits=limits)
    )
    client = openai.AsyncOpenAI(
        api_key="bench", base_url=base_url, max_retries=0, http_client=http_client
    )
    slots = asyncio.Semaphore(connections)
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with slots:
            try:
                await client.chat.completions.create(
                    model="bench",
                    messages=[{"role": "user", "content": TURN}],
                    max_tokens=128,
                    temperature=0.1,
                    extra_headers={"X-Mtmcs-Call-Kind": "turn"},
                )
            except openai.OpenAIError:
                failed += 1

    await asyncio.gather(*(one() for _ in range(min(connections, calls))))  # warm-up
    started_cpu, started = cpu_s(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    wall, cpu = time.perf_counter() - started, cpu_s() - started_cpu
    await client.close()
    return {"calls": calls, "failed": failed, "wall_s": wall, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--transport", choices=("httpx", "aiohttp"), default="httpx")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.base_url, args.calls, args.connections, args.transport))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
