"""The inspect task and `mtmcs run` on the same scripted replies: figures side by side.

    python benchmarks/inspect_parity.py [--limit N] [--out DIR]

Starts the loopback test server with the content-decided replies of the tests
(`tests/content_replies.py`), runs `inspect eval mtmcs/mtmcs` on the bundled sample (every row,
or the first N of each split) through inspect's `openai-api/` provider, then `mtmcs run` on the
same server, and prints every figure of both, whether they are equal, and the wall time of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from inspect_ai import eval as inspect_eval

from content_replies import content_reply
from fakeserver import FakeServer
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="parity-")))
    args = parser.parse_args()
    with FakeServer(content_reply) as server:
        os.environ.update(PARITY_BASE_URL=server.base_url, PARITY_API_KEY="none")
        started = time.perf_counter()
        (log,) = inspect_eval(
            "mtmcs/mtmcs",
            model="openai-api/parity/model-under-test",
            task_args={"judge": "openai-api/parity/judge", "limit": args.limit},
            log_dir=str(args.out / "inspect-logs"),
            display="none",
            max_retries=0,
        )
        inspect_s = time.perf_counter() - started
        inspect_calls = server.request_count
        server.clear()
        started = time.perf_counter()
        config = RunConfig(
            model="openai-compatible/model-under-test",
            judge="openai-compatible/judge",
            dataset="sample",
            limit=args.limit,
            out=args.out / "run",
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(max_connections=32, judge_max_connections=16),
        )
        summary = run_benchmark(config).summary
        run_s = time.perf_counter() - started
        run_calls = server.request_count
    assert log.results is not None and log.samples is not None
    theirs = {key: m.value for s in log.results.scores for key, m in s.metrics.items()}
    ours = {
        f"{split}/{cell}/{name}": stat["value"]
        for split in ("type_a", "type_b")
        for cell, stats in summary.get(split, {}).items()
        for name, stat in stats.items()
    }
    print("| figure | inspect eval | mtmcs run | equal |\n|---|---|---|---|")
    for key, value in ours.items():
        inspect_value = theirs.get(key)
        print(f"| {key} | {inspect_value} | {value} | {inspect_value == value} |")
    print(
        f"\ninspect: {len(log.samples)} samples, {inspect_calls} calls, {inspect_s:.1f} s; "
        f"mtmcs run: {run_calls} calls, {run_s:.1f} s; all equal: "
        f"{all(theirs.get(k) == v for k, v in ours.items() if v is not None)}"
        f" and no extra figure: {set(theirs) <= set(ours)}"
    )


if __name__ == "__main__":
    main()
