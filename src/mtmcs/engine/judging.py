"""A dialogue's verdict as the benchmark takes it: the judge's reply, checked for copies, and
judged again with verdict-like text masked when the replies hold some.

A model could otherwise game its judge in two directions: paste a favourable verdict for the
judge to repeat (injection), or paste the unfavourable verdict the judge is about to give, so
that the copy check refuses the judge's reply and the dialogue drops out of the mean. When a
reply holds verdict-like text (`mtmcs.protocol.verdicts.mask_verdicts`), the dialogue is
judged a second time with that text masked, and the verdict of that call counts; the copy
check applies to it too (against the masked replies, which is what that judge saw). The call
on the replies as they are is still made: the authors' scripts would read it
(`paper_compatible`), and it is what the stored item of the dialogue's judge call has always
been, so earlier runs resume.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from mtmcs.engine.calls import Answer, Caller
from mtmcs.models.judges import JudgedDialogue, verdict_request
from mtmcs.protocol.judge import Verdict, mask_verdicts, parse_verdict
from mtmcs.protocol.prompts import Decoding

MASKED_SUFFIX = "/masked"
"""Appended to a judge call's store item for the call on the masked replies."""


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """The verdict of a dialogue (`None`: unscored), the judge's reply to the replies as they
    are (`raw`), its reply to them with verdict-like text masked (`masked_raw`, only when
    they held some), or the cause of a failed call (`error`)."""

    verdict: Verdict | None
    raw: str | None
    masked_raw: str | None = None
    error: str | None = None


def parse_judged(text: str, replies: tuple[str, ...]) -> dict[str, Any] | None:
    """The parsed verdict of a judge's answer as stored and scored (a verdict copied from
    the judged `replies` is refused)."""
    verdict = parse_verdict(text, "\n".join(replies))
    return None if verdict is None else {"score": verdict.score, "explanation": verdict.explanation}


async def _ask(
    caller: Caller, item: str, dialogue: JudgedDialogue, decoding: Decoding
) -> Answer | str:
    return await caller(
        item,
        verdict_request(dialogue, decoding),
        parse=lambda text: parse_judged(text, dialogue.replies),
    )


def _verdict(answer: Answer) -> Verdict | None:
    return None if answer.parsed is None else Verdict(**answer.parsed)


async def judge_dialogue(
    caller: Caller, item: str, dialogue: JudgedDialogue, decoding: Decoding
) -> JudgeResult:
    """Judge `dialogue` (which carries its rubric) through `caller`, the judge's, as the
    module docstring says; the call on masked replies is stored under `item` + `/masked`.
    Either call failing fails the verdict (both are retried on a rerun, from the store)."""
    masked = tuple(mask_verdicts(reply) for reply in dialogue.replies)
    if masked == dialogue.replies:
        answer = await _ask(caller, item, dialogue, decoding)
        if isinstance(answer, str):
            return JudgeResult(None, None, error=answer)
        return JudgeResult(_verdict(answer), answer.text)
    answer, masked_answer = await asyncio.gather(
        _ask(caller, item, dialogue, decoding),
        _ask(caller, item + MASKED_SUFFIX, replace(dialogue, replies=masked), decoding),
    )
    if isinstance(answer, str):
        return JudgeResult(None, None, error=answer)
    if isinstance(masked_answer, str):
        return JudgeResult(None, answer.text, error=masked_answer)
    return JudgeResult(_verdict(masked_answer), answer.text, masked_answer.text)
