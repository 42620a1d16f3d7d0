"""Fewer and shorter pauses of Python's cyclic garbage collector while a run makes its calls.

A full run holds hundreds of thousands of objects made before its first call (rows,
dialogues, prompts) and makes more with every answer. With the default thresholds the
collector walked them all 27 times during a full run at L = 1 s, C = 256: 9.9 s of the
client's 82.5 s of CPU, with pauses of up to 0.26 s during which the event loop answered
nothing and every call in flight waited (docs/performance.md). The calls then run with
what existed before them frozen out of collection (`gc.freeze`) and young objects
collected every 20,000 allocations rather than 700; both are undone afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (20_000, 20, 20)
"""Collection thresholds while the calls run (Python's defaults: 700, 10, 10)."""


@contextmanager
def fewer_pauses() -> Iterator[None]:
    """Freeze the objects that exist now and raise the collection thresholds until the
    block ends, then restore both."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
