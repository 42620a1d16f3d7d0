"""`mtmcs guard` as a pass: a guard classifies each dialogue after R1, R1–R2 and R1–R3.

Every call goes through a `Caller` (the command keeps its store in the output directory),
so a rerun makes no call but those that failed. Records and scores are in
`mtmcs.guardrails.guard_eval`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtmcs.engine.calls import Caller
from mtmcs.files import write_json, write_jsonl
from mtmcs.guardrails.guard_eval import PREFIXES, GuardCall
from mtmcs.guardrails.guards import Guard, GuardVerdict
from mtmcs.protocol.types import Dialogue

SUMMARY_FILE = "guard_summary.json"
VERDICTS_FILE = "guard_verdicts.jsonl"
STORE_FILE = "store.sqlite"


def guard_item(dialogue: Dialogue, prefix: int) -> str:
    """The store item of the guard call on a dialogue's user turns R1..R`prefix`."""
    return f"{dialogue.id}/guard/R{prefix}"


def _verdict(guard: Guard, text: str) -> dict[str, Any]:
    """The guard's verdict in an answer, as stored (its text is the answer's)."""
    found = guard.parse(text)
    return {"unsafe": found.unsafe, "categories": list(found.categories), "score": found.score}


async def run_guard(
    guard: Guard,
    caller: Caller,
    dialogues: Sequence[Dialogue],
    release: Callable[[str], None] | None = None,
) -> list[GuardCall]:
    """Classify every dialogue on each prefix through `caller` (the guard model's).

    A failed call is recorded on its `GuardCall`. `release(image_id)` is called once every
    call that needs an image is done, so only images in flight stay encoded.
    """
    pending = Counter(d.image_id for d in dialogues if d.image_id is not None)
    pending = Counter({image: count * len(PREFIXES) for image, count in pending.items()})

    async def one(dialogue: Dialogue, prefix: int) -> GuardCall:
        request = guard.request(dialogue.turns[:prefix], dialogue.image_id)
        answer = await caller(
            guard_item(dialogue, prefix),
            request,
            parse=lambda text: _verdict(guard, text),
            kind="guard",
        )
        if isinstance(answer, str):
            call = GuardCall(dialogue, prefix, None, answer)
        else:
            found = answer.parsed
            verdict = GuardVerdict(
                found["unsafe"], tuple(found["categories"]), found["score"], answer.text
            )
            call = GuardCall(dialogue, prefix, verdict)
        if dialogue.image_id is not None:
            pending[dialogue.image_id] -= 1
            if pending[dialogue.image_id] == 0 and release is not None:
                release(dialogue.image_id)
        return call

    return list(await asyncio.gather(*(one(d, prefix) for d in dialogues for prefix in PREFIXES)))


def write_results(out: Path, calls: Sequence[GuardCall], summary: dict[str, Any]) -> None:
    """`guard_summary.json` and `guard_verdicts.jsonl` (one line per dialogue and prefix)."""
    write_json(out / SUMMARY_FILE, summary)
    write_jsonl(out / VERDICTS_FILE, (call.record() for call in calls))
