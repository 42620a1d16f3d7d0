"""The one way a model is called: store, connection limit, back-off, redaction, counting.

Every pass (the run's scheduler, a defence asking the judge, stances, categorize,
judge-check, guard, build) calls its model through a `Caller`, so every pass resumes
from its store and keeps the same rules::

    caller = Caller(model, store, AdaptiveLimiter(16))
    answer = await caller("type_a/000000/unimodal/unsafe/turn/1", request)
    if isinstance(answer, str):  # the call failed: `answer` is its cause (retried next time)
        ...
    else:  # `answer.text`, from the store (`answer.cached`) or from the model
        ...

A defended model (`mtmcs.guardrails.defences.DefendedModel`) makes several calls of the
model under test per answer (drafts, candidates): given the model as a `CountedModel`, each
of them is counted by the `Caller` of the answer, and a stored answer counts the calls its
defence declares (`per_answer`) as taken from the store, for every role.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from mtmcs.engine.attempt import attempt, normalise
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import CallRecord, Store, request_key
from mtmcs.guardrails.defences.base import UNFINISHED
from mtmcs.models.base import (
    REASONING_EXHAUSTED,
    CallFailed,
    ChatModel,
    ChatRequest,
    Completion,
    calling_as,
)
from mtmcs.models.judges import Judge, JudgeRequest, as_judge

Parse = Callable[[str], Any]
"""Reads an answer's text into the value the pass uses; the value must be JSON-serialisable
(it is stored beside the text, for inspection)."""


@dataclass
class CallCounts:
    """Calls of one caller: made now, taken from the store, failed (with their causes);
    `reasoning_exhausted` counts the failures whose reply came back empty because hidden
    reasoning spent the whole token budget; `unfinished` the answers (made or stored) a
    defence marked unfinished (`UNFINISHED`: kept, never read as an answer)."""

    made: int = 0
    cached: int = 0
    failed: int = 0
    reasoning_exhausted: int = 0
    unfinished: int = 0
    replaced_code_points: int = 0
    causes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Answer:
    """A call's answer: its text (secrets redacted), what `parse` read from it, and whether
    it came from the store. A stored answer is parsed again, so a better parser applies."""

    text: str
    parsed: Any = None
    cached: bool = False


def _no_parse(text: str) -> None:
    return None


@dataclass
class _Tally:
    """The calls of the model made inside one call of a `Caller` (a defended answer's)."""

    made: int = 0
    failed: int = 0


_tally: ContextVar[_Tally | None] = ContextVar("mtmcs_sub_calls", default=None)

PerAnswer = Callable[[ChatRequest], Mapping[str, int]]
"""The calls by role one answer to a request costs (`model`: the caller's own model)."""


class CountedModel:
    """The model under test as a defence calls it: each call, answered or failed, is
    counted by the `Caller` whose call it is part of."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.name = inner.name

    async def complete(self, request: ChatRequest) -> Completion:
        tally = _tally.get()
        try:
            completion = await self.inner.complete(request)
        except Exception:
            if tally is not None:
                tally.failed += 1
            raise
        if tally is not None:
            tally.made += 1
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()


class Caller:
    """Calls one model for one pass, through one store.

    `await caller(item, request)` returns the stored answer of that call when there is one
    (no call is made); otherwise it waits for a slot of `limiter` (a per-model connection
    limit that halves on rate limits: give the provider `on_rate_limit=limiter.throttled`),
    makes the call, and stores the answer or the cause of the failure. A stored failure is
    retried. Secrets are redacted from everything stored and returned. `counts` counts the
    calls; `on_call()` runs after each one (progress).

    When `model` makes several calls of a `CountedModel` per answer (a defence), `counts`
    counts those calls and `on_call` runs once per call; a stored answer counts the calls
    `per_answer` says it cost: its own (`model`) here, the others in `peers` by role.

    A judge's caller takes `JudgeRequest`s: `model` is a `Judge`, or a chat model, which is
    then asked as an `LLMJudge`; such a call is stored under its prompt.
    """

    def __init__(
        self,
        model: ChatModel | Judge,
        store: Store,
        limiter: AdaptiveLimiter,
        *,
        on_call: Callable[[], None] | None = None,
        per_answer: PerAnswer | None = None,
        peers: Mapping[str, CallCounts] | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.limiter = limiter
        self.counts = CallCounts()
        self._on_call = on_call
        self._per_answer = per_answer
        self._peers = peers or {}
        self._judge: Judge | None = None

    @property
    def name(self) -> str:
        """The name of the model called (part of every store key)."""
        return self.model.name

    async def __call__(
        self,
        item: str,
        request: ChatRequest | JudgeRequest,
        *,
        parse: Parse = _no_parse,
        kind: str | None = None,
    ) -> Answer | str:
        """The answer to `request` for `item`, or the cause of the failure.

        `kind` labels the stored record (default: the request's kind); the SDK providers
        also send it to the server (`mtmcs.models.base.CALL_KIND_HEADER`).
        """
        answer, calls = await self._call(item, request, parse, kind)
        if self._on_call is not None:
            for _ in range(calls):
                self._on_call()
        return answer

    async def text(
        self, item: str, request: ChatRequest | JudgeRequest, *, kind: str | None = None
    ) -> str:
        """The answer's text, for a call made inside another call (a defence asking the
        judge): stored and counted like any other, not reported as progress; a failure
        raises `CallFailed` with its cause, which fails the enclosing call."""
        answer, _ = await self._call(item, request, _no_parse, kind)
        if isinstance(answer, str):
            raise CallFailed(answer)
        return answer.text

    async def _call(
        self, item: str, request: ChatRequest | JudgeRequest, parse: Parse, kind: str | None
    ) -> tuple[Answer | str, int]:
        """The answer or the cause of its failure, and how many calls of the model it
        counted."""
        counts = self.counts
        model: ChatModel | Judge = self.model
        if isinstance(request, JudgeRequest):
            if self._judge is None:
                self._judge = as_judge(self.model)
            model, prompt = self._judge, request.prompt
        else:
            prompt = request
        key = request_key(self.model.name, item, prompt)
        stored = self.store.get(key)
        if stored is not None and stored.output is not None:
            calls = self._stored_calls(prompt)
            unfinished = stored.finish_reason == UNFINISHED
            counts.unfinished += unfinished
            parsed = None if unfinished else parse(stored.output)
            return Answer(stored.output, parsed, cached=True), calls
        label = kind or prompt.kind
        await self.limiter.acquire()
        started = time.perf_counter()
        tally = _Tally()
        token = _tally.set(tally)
        try:
            with calling_as(label):  # providers tell the server (`CALL_KIND_HEADER`)
                result = await attempt(model, request, answered_before=counts.made > 0, item=item)
        finally:
            _tally.reset(token)
            self.limiter.release()
        latency = time.perf_counter() - started
        result, replaced = normalise(result)
        counts.replaced_code_points += replaced
        # The calls of a `CountedModel` made inside this one (a defence's), else this one;
        # a failed answer counts at least one failure (a defence may fail it itself).
        inside = tally.made > 0 or tally.failed > 0
        if isinstance(result, str):
            made, failed = (tally.made, max(tally.failed, 1)) if inside else (0, 1)
            counts.made += made
            counts.failed += failed
            counts.reasoning_exhausted += result.startswith(REASONING_EXHAUSTED)
            counts.causes[result[:200]] += 1
            self.store.put(CallRecord.failed(key, item, self.model.name, label, result, latency))
            return result, made + failed
        self.limiter.succeeded()
        made, failed = (tally.made, tally.failed) if inside else (1, 0)
        counts.made += made
        counts.failed += failed
        unfinished = result.finish_reason == UNFINISHED
        counts.unfinished += unfinished
        parsed = None if unfinished else parse(result.text)
        self.store.put(
            CallRecord.answered(key, item, self.model.name, label, result, parsed, latency)
        )
        return Answer(result.text, parsed), made + failed

    def _stored_calls(self, request: ChatRequest) -> int:
        """Count a stored answer's calls as taken from the store: one, or what its
        defence declares per role; how many of them are this caller's."""
        if self._per_answer is None:
            self.counts.cached += 1
            return 1
        own = 0
        for role, calls in self._per_answer(request).items():
            if role == "model":
                own = calls
                self.counts.cached += calls
            elif role in self._peers:
                self._peers[role].cached += calls
        return own
