"""Ray scale-out scenario, run by test_ray.py in a network namespace that has only loopback.

A local Ray instance binds some ports on every interface; inside the namespace, every
interface is loopback. Prints one JSON line with what it measured.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from fakeserver import FakeServer
from mtmcs.engine.ray_run import run_with_ray
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from test_run_e2e import standard_reply


def main(work: Path) -> None:
    with FakeServer(standard_reply) as server:
        config = RunConfig(
            model="openai-compatible/m",
            judge="openai-compatible/judge",
            dataset="sample",
            limit=3,
            out=work / "single",
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(max_connections=8),
        )
        single = run_benchmark(config)
        single_calls = server.request_count
        server.clear()
        sharded = run_with_ray(replace(config, out=work / "ray"), "local", shards=3)
        ray_calls = server.request_count
        server.clear()
        rerun = run_with_ray(replace(config, out=work / "ray"), "local", shards=3)
        rerun_calls = server.request_count
    metrics = [name for name in single.summary if name != "metadata"]
    print(
        json.dumps(
            {
                "single_calls": single_calls,
                "ray_calls": ray_calls,
                "rerun_calls": rerun_calls,
                "same_metrics": all(single.summary[m] == sharded.summary[m] for m in metrics),
                "ray_metadata": sharded.summary["metadata"]["ray"],
                "rerun_complete": rerun.complete,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
