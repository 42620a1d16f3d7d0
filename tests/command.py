"""Run the real `mtmcs` command in a subprocess, offline, as users run it."""

from __future__ import annotations

import os
import subprocess
import sys

MTMCS = [sys.executable, "-m", "mtmcs"]


def mtmcs(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`mtmcs ARGS…` with HF_HUB_OFFLINE=1 and `env` on top of this process's environment."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [*MTMCS, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
