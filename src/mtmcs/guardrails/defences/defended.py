"""The model under test with a defence applied to its calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtmcs.data.defence_texts import DefenceText
from mtmcs.guardrails.defences.base import (
    DEFENCE_CLASSES,
    AnswerCalls,
    AskJudge,
    DefenceName,
    Scope,
)
from mtmcs.guardrails.defences.immune import AskReward, Immune, ImmuneSettings
from mtmcs.models.base import CallKind, ChatModel, ChatRequest, Completion
from mtmcs.protocol.prompts import Decoding

if TYPE_CHECKING:
    from mtmcs.models.guided import Guidance


def defends(scope: Scope, kind: CallKind) -> bool:
    """Whether a defence of this scope answers calls of this kind."""
    return kind == "turn" or (scope == "all" and kind in ("mcq", "tf"))


def calls_per_answer(
    defence: DefenceName | None,
    kind: CallKind,
    *,
    scope: Scope = "all",
    judge_selects: bool = False,
    immune: ImmuneSettings | None = None,
) -> AnswerCalls:
    """The calls one call of `kind` costs under `defence` (`None`: undefended): one call of
    the model when the scope leaves it undefended, else what the defence declares (Immune:
    what its settings `immune` cost, when given)."""
    if defence is None or not defends(scope, kind):
        return AnswerCalls()
    if defence == "immune" and immune is not None:
        return immune.answer_calls(kind)
    return DEFENCE_CLASSES[defence].calls_per_answer(kind, judge_selects=judge_selects)


class DefendedModel:
    """A model under test with a defence applied to its calls.

    `scope` says which calls are defended: `all` (dialogue turns and intent questions, the
    default, since the paper reports defences changing MCQ accuracy) or `turns` only. The
    name (`model+defence`) keeps defended calls apart from undefended ones in the store.
    `judge` asks the run's judge (AdaShield-A's selector when `judge_selects`, else the
    retrieval). Immune takes `immune` (its settings, whose `tag` joins the name:
    `model+immune[best-of-4, reward …]`) and `reward` (its reward model's caller, best of
    N) or `guidance` (guided decoding). The defence itself is the class registered under
    its name in `DEFENCE_CLASSES`.
    """

    def __init__(
        self,
        inner: ChatModel,
        defence: DefenceName,
        *,
        scope: Scope = "all",
        text: DefenceText | None = None,
        judge: AskJudge | None = None,
        judge_selects: bool = False,
        judge_decoding: Decoding | None = None,
        immune: ImmuneSettings | None = None,
        reward: AskReward | None = None,
        guidance: Guidance | None = None,
    ) -> None:
        cls = DEFENCE_CLASSES.get(defence)
        if cls is None:
            known = ", ".join(DEFENCE_CLASSES)
            raise ValueError(f"unknown defence {defence!r}; defences: {known}")
        if judge is None and cls.needs_judge(judge_selects):
            raise ValueError(f"the {defence} defence needs the run's judge (its reward model)")
        self.name = f"{inner.name}+{defence}"
        extra: dict[str, Any] = {}
        if cls is Immune:  # its settings, and its reward model's caller or guidance
            extra = {"settings": immune, "reward": reward, "guidance": guidance}
            if immune is not None:  # answers differ by reward model, mode, …: so do keys
                self.name += f"[{immune.tag()}]"
        self.immune = immune
        self.inner = inner
        self.defence = defence
        self.scope = scope
        self.judge_selects = judge_selects
        self.applied = cls(
            inner,
            text=text,
            judge=judge,
            judge_selects=judge_selects,
            judge_decoding=judge_decoding,
            **extra,
        )

    def defends(self, kind: CallKind) -> bool:
        """Whether calls of this kind go through the defence."""
        return defends(self.scope, kind)

    def calls_per_answer(self, request: ChatRequest) -> AnswerCalls:
        """The calls answering `request` costs (a stored answer counts them as cached)."""
        return calls_per_answer(
            self.defence,
            request.kind,
            scope=self.scope,
            judge_selects=self.judge_selects,
            immune=self.immune,
        )

    async def complete(self, request: ChatRequest) -> Completion:
        """The defended answer outside the engine (the judge's calls under unprefixed items)."""
        return await self.complete_item("", request)

    async def complete_item(self, item: str, request: ChatRequest) -> Completion:
        """The defended answer for `item`; the judge's calls are stored under `item/…`."""
        if not self.defends(request.kind):
            return await self.inner.complete(request)
        return await self.applied.answer(item, request)

    async def aclose(self) -> None:
        await self.inner.aclose()
