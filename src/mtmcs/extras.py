"""How to install an optional extra, worded for how mtmcs was installed: from a source checkout
(`pip install -e .`) the PyPI name does not apply, so hints name the checkout instead."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

DISTRIBUTION = "mtmcs-bench"
PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source checkout holding `package_dir` (`ROOT/src/mtmcs` beside `ROOT/pyproject.toml`
    naming mtmcs-bench), or `None` for an installed copy (site-packages)."""
    if package_dir.parent.name != "src":
        return None
    root = package_dir.parent.parent
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = project.get("project", {}).get("name")
    return root if name == DISTRIBUTION else None


def install_hint(extra: str, package_dir: Path = PACKAGE_DIR) -> str:
    """The pip command that installs `extra`: `pip install -e 'ROOT[extra]'` from a checkout,
    `pip install 'mtmcs-bench[extra]'` otherwise (quoted for a POSIX shell)."""
    root = checkout_root(package_dir)
    if root is None:
        return f"pip install {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"
    return f"pip install -e {shlex.quote(f'{root}[{extra}]')}"
