"""Scale-out with Ray: rows in shards, each shard one Ray task running the same engine.

Each task starts from a copy of the run's store (so a resumed run repeats nothing), runs its
shard, and returns its store file; the driver merges the shards into the run's store and
computes the summary from it exactly as a single-process run does (every call is then found
in the store). Workers need the dataset (the hub cache or the same path) and the API keys,
which are passed in the tasks' environment.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtmcs.engine.run import RunConfig, RunResult, plan_run, run_benchmark
from mtmcs.engine.store import Store
from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint
from mtmcs.keys import SECRET_VARIABLES
from mtmcs.scoring.rundir import STORE_FILE, RunDir
from mtmcs.scoring.runfiles import RayShards


def run_shard(config: RunConfig, index: int, count: int, seed_store: bytes) -> dict[str, Any]:
    """Run one shard in a scratch directory; return its store file and call counts."""
    with tempfile.TemporaryDirectory(prefix="mtmcs-shard-") as scratch:
        out = Path(scratch)
        if seed_store:
            (out / STORE_FILE).write_bytes(seed_store)
        shard = replace(config, out=out, shard=(index, count), check_images=False)
        result = run_benchmark(shard)
        return {
            "store": (out / STORE_FILE).read_bytes(),
            "calls": result.summary["metadata"]["calls"],
        }


def _init_ray(address: str) -> Any:
    try:
        import ray
    except ImportError as error:
        raise ConfigError(f"--ray needs Ray: {install_hint('ray')}") from error
    secrets = {name: os.environ[name] for name in SECRET_VARIABLES if os.environ.get(name)}
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "runtime_env": {"env_vars": secrets},
    }
    if address == "local":
        ray.init(_node_ip_address="127.0.0.1", **options)
    else:
        ray.init(address=address, **options)
    return ray


def run_with_ray(
    config: RunConfig,
    address: str,
    shards: int,
    on_shard: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run a benchmark as `shards` Ray tasks and merge them into one run.

    `address` is `local` (start a Ray instance on this machine), `auto` (join the running
    cluster) or a Ray address such as `ray://head:10001`.
    """
    plan = plan_run(config)  # check the data once, here, before any task starts
    shards = max(1, min(shards, len(plan.rows)))
    config.out.mkdir(parents=True, exist_ok=True)
    store_path = RunDir(config.out).store_path
    Store(store_path).close()  # create it (or fail now if another run holds it)
    ray = _init_ray(address)
    try:
        seed = ray.put(store_path.read_bytes())
        task = ray.remote(num_cpus=1)(run_shard)
        pending = [task.remote(config, index, shards, seed) for index in range(shards)]
        made: dict[str, dict[str, int]] = {}
        done = 0
        store = Store(store_path)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                result = ray.get(ready[0])
                with tempfile.NamedTemporaryFile(suffix=".sqlite") as shard_file:
                    shard_file.write(result["store"])
                    shard_file.flush()
                    store.merge(Path(shard_file.name))
                for role, counts in result["calls"].items():
                    totals = made.setdefault(role, {"made": 0, "failed": 0})
                    totals["made"] += counts["made"]
                    totals["failed"] += counts["failed"]
                done += 1
                if on_shard is not None:
                    on_shard(done, shards)
        finally:
            store.close()
    finally:
        ray.shutdown()
    final = run_benchmark(replace(config, check_images=False))  # checked above
    run_dir = RunDir(config.out)
    summary = run_dir.read_summary()
    ray_shards = RayShards(address=address, shards=shards, calls=made)
    summary = summary.model_copy(
        update={"metadata": summary.metadata.model_copy(update={"ray": ray_shards})}
    )
    run_dir.write_summary(summary)
    return replace(final, summary=summary.model_dump(mode="json"))
