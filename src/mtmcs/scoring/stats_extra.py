"""The `stats` extra's modules (scipy, statsmodels), imported when first needed, with the
install command when missing."""

from __future__ import annotations

import importlib
from typing import Any

from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint


def stats_module(name: str, purpose: str) -> Any:
    """The module `name` of the `stats` extra (`ConfigError` naming `purpose` when absent)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ConfigError(
            f"{purpose} needs {error.name or name} (the stats extra): {install_hint('stats')}"
        ) from error
