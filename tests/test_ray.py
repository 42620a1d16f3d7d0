"""`--ray`: shards as Ray tasks on a local Ray instance give the single-process summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray path needs the 'ray' extra")
HERE = Path(__file__).parent


@pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("ip") is None,
    reason="needs unshare and ip to keep Ray's ports inside a loopback-only network namespace",
)
def test_ray_shards_merge_into_the_single_process_summary(tmp_path: Path) -> None:
    command = [
        "unshare",
        "-n",
        "sh",
        "-c",
        'ip link set lo up && exec "$0" "$@"',
        sys.executable,
        str(HERE / "ray_scenario.py"),
        str(tmp_path),
    ]
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["single_calls"] == 6 * 28  # 3 rows per split, 24 model + 4 judge each
    assert report["ray_calls"] == report["single_calls"]  # each call made once, in a shard
    assert report["same_metrics"] is True
    assert report["ray_metadata"]["shards"] == 3
    assert report["ray_metadata"]["calls"]["model"]["made"] == 6 * 24
    assert report["rerun_calls"] == 0 and report["rerun_complete"] is True
