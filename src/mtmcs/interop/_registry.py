"""The module inspect_ai's entry point loads: importing it registers the `mtmcs` task."""

from mtmcs.interop.inspect_task import mtmcs

__all__ = ["mtmcs"]
