"""The run directories a report is about: given ones, and the runs found under a parent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mtmcs.errors import UsageError
from mtmcs.scoring.rundir import SUMMARY_FILE


def runs_under(parent: Path) -> list[Path]:
    """Every directory under `parent` holding a `summary.json`, sorted; a run's own
    subdirectories are not searched."""
    found = []
    for directory, subdirectories, files in os.walk(parent):
        if SUMMARY_FILE in files:
            found.append(Path(directory))
            subdirectories.clear()
        else:
            subdirectories.sort()
    return sorted(found)


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Each path that is a run directory, or the runs under it (`runs_under`), in order;
    a path that is neither raises `UsageError` (exit 2) naming it."""
    if not paths:
        raise UsageError("no run directory given: name run directories or a folder holding them")
    run_dirs: list[Path] = []
    for path in paths:
        if (path / SUMMARY_FILE).is_file():
            run_dirs.append(path)
            continue
        if not path.exists():
            raise UsageError(f"{path} does not exist: name a run directory or a folder of runs")
        found = runs_under(path) if path.is_dir() else []
        if not found:
            raise UsageError(
                f"{path} is not a run directory (no {SUMMARY_FILE}) and holds none: "
                f"name the --out directory of a finished `mtmcs run`, or a folder of them"
            )
        run_dirs += found
    return list(dict.fromkeys(run_dirs))
