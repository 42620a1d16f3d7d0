"""Async scheduler: dialogues turn by turn, then their questions and judge call, all concurrent.

Each dialogue runs its three turns in order; as soon as it finishes, its questions and its
judge call start (two judge calls when its replies hold verdict-like text:
`mtmcs.engine.judging`). Every dialogue runs at once; each call goes through the `Caller` of its
role (the model under test or the judge), which looks it up in the store first, keeps the
role's connection limit and records the call as soon as it finishes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mtmcs.engine.calls import Answer, CallCounts, Caller
from mtmcs.engine.judging import judge_dialogue
from mtmcs.errors import ProviderError
from mtmcs.models.base import ChatRequest
from mtmcs.models.images import ImageEncoder
from mtmcs.models.judges import judged_dialogue
from mtmcs.protocol.messages import ImageOrder, ImagePlacement, turn_messages
from mtmcs.protocol.parsing import parse_mcq, parse_tf
from mtmcs.protocol.prompts import (
    Decoding,
    QuestionCallKind,
    ReasoningEffort,
    judge_decoding,
    model_decoding,
    question_messages,
)
from mtmcs.protocol.rubrics import RUBRICS, Rubric, rubric_for
from mtmcs.protocol.types import Dialogue, Question
from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome

Role = Literal["model", "judge", "reward", "selector"]
"""Who is called: the model under test, the judge, and a defence's other callees (Immune's
reward model, AdaShield-A's selector), each counted apart."""


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How calls are made: decoding overrides, seed, image layout and connection limits.

    Decoding follows the authors' defaults for the kind of model (`mtmcs.protocol.prompts`):
    `reasoning_model` and `reasoning_judge` say whether the model under test and the judge
    are reasoning models (the run sets them from the model names); the other fields
    override those defaults when set: `max_tokens` for every kind of model call,
    `max_tokens_by_kind` for one kind (turn, mcq, tf). `model_args` are provider arguments
    sent with every call to the model under test (`ChatRequest.extra_body`).
    """

    temperature: float | None = None
    omit_temperature: bool = False
    seed: int | None = None
    max_tokens: int | None = None
    max_tokens_by_kind: tuple[tuple[str, int], ...] = ()
    judge_max_tokens: int | None = None
    model_args: tuple[tuple[str, str], ...] = ()
    reasoning_effort: ReasoningEffort | None = None
    judge_reasoning_effort: ReasoningEffort | None = None
    reasoning_model: bool = False
    reasoning_judge: bool = False
    image_placement: ImagePlacement = "newest"
    image_order: ImageOrder = "before"
    max_connections: int = 32
    judge_max_connections: int = 16

    def decoding(self, kind: QuestionCallKind) -> Decoding:
        """The decoding of a model call of this kind (turn, mcq or tf)."""
        return model_decoding(
            kind,
            reasoning=self.reasoning_model,
            effort=self.reasoning_effort,
            max_tokens=dict(self.max_tokens_by_kind).get(kind, self.max_tokens),
            temperature=self.temperature,
            omit_temperature=self.omit_temperature,
        )

    @property
    def judge(self) -> Decoding:
        """The decoding of a judge call."""
        return judge_decoding(
            reasoning=self.reasoning_judge,
            effort=self.judge_reasoning_effort,
            max_tokens=self.judge_max_tokens,
        )


@dataclass
class RunOutcome:
    """Everything a run produced."""

    dialogues: list[DialogueOutcome] = field(default_factory=list)
    questions: list[QuestionOutcome] = field(default_factory=list)
    counts: dict[Role, CallCounts] = field(
        default_factory=lambda: {"model": CallCounts(), "judge": CallCounts()}
    )


def parse_output(request: ChatRequest, text: str, options: Sequence[str] = ()) -> Any:
    """The parsed value of an output as stored and scored."""
    if request.kind == "mcq":
        return parse_mcq(text, options)
    if request.kind == "tf":
        return parse_tf(text)
    return None


class Scheduler:
    """Runs dialogues, questions and judge calls for one model and one judge."""

    def __init__(
        self,
        *,
        callers: Mapping[Role, Caller],
        captions: Mapping[int, str] | None,
        settings: RunSettings,
        images: ImageEncoder | None = None,
        rubrics: Mapping[str, Rubric] = RUBRICS,
        image_ready: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._callers = callers
        self._images = images
        self._image_ready = image_ready
        self._image_users: Counter[str] = Counter()
        self._captions = captions
        self._settings = settings
        self._rubrics = rubrics
        self.outcome = RunOutcome(counts={role: caller.counts for role, caller in callers.items()})

    def window(self) -> int:
        """How many dialogues are under way at once: enough to keep every connection busy.

        Dialogues start in order as earlier ones finish, so only the images of the rows under
        way are held in memory, each released when its last dialogue is done. A row's four
        dialogues keep about six model calls in flight, so C dialogues (C / 4 rows) give the
        model's C connections about 1.5 times the calls they can take; twice that held twice
        the images and measured slower at L = 1 s (docs/performance.md).
        """
        return max(64, self._settings.max_connections)

    async def run(self, dialogues: Sequence[Dialogue]) -> RunOutcome:
        """Run every dialogue to the end (failed calls are recorded, not raised)."""
        self._image_users.update(d.image_id for d in dialogues if d.image_id is not None)
        slots = asyncio.Semaphore(self.window())
        try:
            async with asyncio.TaskGroup() as group:
                for dialogue in dialogues:
                    await slots.acquire()
                    task = group.create_task(self._dialogue(dialogue))
                    task.add_done_callback(lambda _: slots.release())
                    # Let it start now: the first requests go out while later dialogues
                    # are set up, not after the whole window has built its requests.
                    await asyncio.sleep(0)
        except* ProviderError as errors:
            raise errors.exceptions[0] from None
        return self.outcome

    async def judge_only(self, finished: Sequence[tuple[Dialogue, tuple[str, ...]]]) -> RunOutcome:
        """Judge dialogues whose replies are known (`mtmcs rejudge`): judge calls only,
        each as a run makes it (`_judge`), so their store items and prompts are the same."""
        try:
            async with asyncio.TaskGroup() as group:
                for dialogue, replies in finished:
                    group.create_task(self._judge(dialogue, replies))
        except* ProviderError as errors:
            raise errors.exceptions[0] from None
        return self.outcome

    def _finished(self, dialogue: Dialogue) -> None:
        image = dialogue.image_id
        if image is None or self._images is None:
            return
        self._image_users[image] -= 1
        if self._image_users[image] == 0:
            self._images.release(image)

    async def _call(
        self, role: Role, item: str, request: ChatRequest, options: Sequence[str] = ()
    ) -> Answer | str:
        """The answer of a call (output and parsed value), or the cause of its failure."""
        return await self._callers[role](
            item, request, parse=lambda text: parse_output(request, text, options)
        )

    async def _dialogue(self, dialogue: Dialogue) -> None:
        """Run a dialogue, once its image passed its check (`image_ready`: images checked
        while the run goes on); a dialogue whose image was refused makes no call."""
        try:
            image = dialogue.image_id
            if image is None or self._image_ready is None or await self._image_ready(image):
                await self._run_dialogue(dialogue)
        finally:
            self._finished(dialogue)

    async def _run_dialogue(self, dialogue: Dialogue) -> None:
        settings = self._settings
        decoding = settings.decoding("turn")
        replies: list[str] = []
        for turn in range(len(dialogue.turns)):
            request = ChatRequest(
                turn_messages(dialogue, replies, settings.image_placement, settings.image_order),
                decoding.max_tokens,
                decoding.temperature,
                settings.seed,
                decoding.reasoning_effort,
                kind="turn",
                extra_body=settings.model_args,
            )
            result = await self._call("model", f"{dialogue.id}/turn/{turn + 1}", request)
            if isinstance(result, str):
                error = f"R{turn + 1} failed: {result}"
                self.outcome.dialogues.append(
                    DialogueOutcome(dialogue, tuple(replies), None, None, error=error)
                )
                self.outcome.questions += [
                    QuestionOutcome(question, dialogue, None, None, error=error)
                    for question in dialogue.questions
                ]
                return
            replies.append(result.text)
        await asyncio.gather(
            self._judge(dialogue, tuple(replies)),
            *(self._question(dialogue, question, replies) for question in dialogue.questions),
        )

    async def _question(
        self, dialogue: Dialogue, question: Question, replies: Sequence[str]
    ) -> None:
        settings = self._settings
        decoding = settings.decoding(question.kind)
        request = ChatRequest(
            question_messages(
                question, dialogue.turns, replies, dialogue.image_id, settings.image_order
            ),
            decoding.max_tokens,
            decoding.temperature,
            settings.seed,
            decoding.reasoning_effort,
            kind=question.kind,
            option_count=len(question.options),
            extra_body=settings.model_args,
        )
        result = await self._call("model", question.id, request, question.options)
        outcome = (
            QuestionOutcome(question, dialogue, None, None, error=result)
            if isinstance(result, str)
            else QuestionOutcome(question, dialogue, result.text, result.parsed)
        )
        self.outcome.questions.append(outcome)

    async def _judge(self, dialogue: Dialogue, replies: tuple[str, ...]) -> None:
        rubric = rubric_for(dialogue.split, dialogue.modality, dialogue.intent, self._rubrics)
        judged = judged_dialogue(dialogue, replies, self._captions, rubric)
        result = await judge_dialogue(
            self._callers["judge"],
            f"{dialogue.id}/judge/{rubric.key}",
            judged,
            self._settings.judge,
        )
        self.outcome.dialogues.append(
            DialogueOutcome(
                dialogue,
                replies,
                result.verdict,
                result.raw,
                judge_error=result.error,
                masked_raw=result.masked_raw,
            )
        )
