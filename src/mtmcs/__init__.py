"""mtmcs-bench: the Multi-Turn Multimodal Contextual Safety Benchmark, fast and faithful."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mtmcs-bench")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
