"""The `mtmcs` task for inspect_ai: one sample per dialogue, played and scored as `mtmcs run` does.

    inspect eval mtmcs/mtmcs --model M -T dataset=sample -T judge=J [-T split=type_a]
        [-T modality=multimodal] [-T variants=true] [-T limit=N] [-T captions=FILE]

The solver plays the three user turns with the model's own replies as history and the image
where ours goes (`mtmcs.protocol.messages.turn_messages`); the scorer asks the dialogue's intent
questions of the model under test (fresh single-turn calls) and has the judge (`J`, any inspect
model name) give its verdict, masked replies judged again as `mtmcs.engine.judging` does. Every
prompt, parser and decoding setting is `mtmcs.protocol`'s; the metrics are `mtmcs run`'s
(`mtmcs.interop.inspect_scores`). Unlike `mtmcs run`, a failed call fails its sample (inspect's
rule) instead of being recorded and retried by a rerun, and an empty reply is taken as a reply
(`mtmcs run` records it as a failed call, left out of every figure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import Model, ModelOutput, get_model
from inspect_ai.scorer import Score, Scorer, Target, scorer
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.util import collect, registry_info

from mtmcs.data.loaders import LoadOptions, load_benchmark
from mtmcs.data.selection import select_rows
from mtmcs.engine.judging import JudgeResult, parse_judged
from mtmcs.engine.run import RunConfig, resolve_captions
from mtmcs.errors import ConfigError
from mtmcs.interop.inspect_messages import generate_config, inspect_messages
from mtmcs.interop.inspect_scores import cell_metrics, dialogue_score, sample_metadata
from mtmcs.models.images import ImageEncoder
from mtmcs.models.judges import JudgedDialogue, judged_dialogue, verdict_request
from mtmcs.models.registry import is_heuristic_judge, is_reasoning_model
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.judge import DEFAULT_JUDGE, Verdict, mask_verdicts
from mtmcs.protocol.messages import (
    IMAGE_ORDERS,
    IMAGE_PLACEMENTS,
    ImageOrder,
    ImagePlacement,
    turn_messages,
)
from mtmcs.protocol.parsing import parse_mcq, parse_tf
from mtmcs.protocol.prompts import Decoding, judge_decoding, model_decoding, question_messages
from mtmcs.protocol.rubrics import rubric_for
from mtmcs.protocol.types import MODALITIES, SPLITS, Dialogue, Modality, Question, Split
from mtmcs.scoring.outcomes import DialogueOutcome, QuestionOutcome
from mtmcs.scoring.records import dialogue_records

REPLIES = "mtmcs_replies"
"""The key of a sample's store under which the solver leaves the model's replies."""


@dataclass
class Plan:
    """What the solver and the scorer share: the dialogues by sample id, their images (each
    released when its last dialogue is scored), the judge's captions and the layout."""

    dialogues: Mapping[str, Dialogue]
    images: ImageEncoder
    captions: Mapping[int, str] | None
    judge: str
    placement: ImagePlacement = "newest"
    order: ImageOrder = "before"
    image_users: Counter[str] = field(default_factory=Counter)

    def image_url(self, image_id: str) -> str:
        """An image's `data:` URL, the bytes `mtmcs run` sends."""
        return self.images(image_id).data_url.decode("ascii")

    def done(self, dialogue: Dialogue) -> None:
        """Forget the dialogue's image once no unscored dialogue needs it."""
        if dialogue.image_id is not None:
            self.image_users[dialogue.image_id] -= 1
            if self.image_users[dialogue.image_id] <= 0:
                self.images.release(dialogue.image_id)


def _choice(value: str | Sequence[str] | None, allowed: Sequence[str], name: str) -> list[str]:
    """A task argument naming one or more of `allowed` (a list, or comma-separated)."""
    if value is None:
        return list(allowed)
    chosen = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
        raise ConfigError(f"-T {name}={value!r}: expected one or more of {', '.join(allowed)}")
    return chosen


def _one(value: str, allowed: Sequence[str], name: str) -> str:
    """A task argument naming exactly one of `allowed`."""
    if value not in allowed:
        raise ConfigError(f"-T {name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _reasoning(model_name: str) -> bool:
    """Whether the model is an OpenAI reasoning model (our rule; inspect's `openai-api/`
    names an OpenAI-compatible server)."""
    provider, _, rest = model_name.partition("/")
    if provider == "openai-api":
        return is_reasoning_model(f"openai-compatible/{rest}")
    return is_reasoning_model(model_name)


def _sample(dialogue: Dialogue) -> Sample:
    """The sample of a dialogue: its R1 as input, its questions' ground truths as target."""
    return Sample(
        id=dialogue.id,
        input=dialogue.turns[0],
        target=[str(q.ground_truth) for q in dialogue.questions],
        metadata={**sample_metadata(dialogue), "image_id": dialogue.image_id},
    )


class EmptyReply(RuntimeError):
    """A completion without text: its sample fails, as `mtmcs run` records a failed call."""


def reply_text(output: ModelOutput) -> str:
    """The completion's text; `EmptyReply` when it has none (whitespace only counts as none)."""
    text = output.completion
    if not text.strip():
        raise EmptyReply(f"empty completion (stop_reason={output.stop_reason})")
    return text


@solver
def play_dialogue(plan: Plan) -> Solver:
    """Play the three user turns, each with the model's own earlier replies as history and the
    image placed as `mtmcs run` places it, at the protocol's turn decoding."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        dialogue = plan.dialogues[str(state.sample_id)]
        decoding = model_decoding("turn", reasoning=_reasoning(str(state.model)))
        replies: list[str] = []
        for _ in dialogue.turns:
            messages = turn_messages(dialogue, replies, plan.placement, plan.order)
            state.messages = inspect_messages(messages, plan.image_url)
            state = await generate(
                state,
                max_tokens=decoding.max_tokens,
                temperature=decoding.temperature,
                reasoning_effort=decoding.reasoning_effort,
            )
            replies.append(reply_text(state.output))
        state.store.set(REPLIES, replies)
        return state

    return solve


async def _answer(
    model: Model, plan: Plan, dialogue: Dialogue, question: Question, replies: Sequence[str]
) -> QuestionOutcome:
    """Ask one intent question as a fresh single-turn call and read the answer."""
    decoding = model_decoding(question.kind, reasoning=_reasoning(str(model)))
    messages = question_messages(question, dialogue.turns, replies, dialogue.image_id, plan.order)
    output = await model.generate(
        inspect_messages(messages, plan.image_url), config=generate_config(decoding)
    )
    text = reply_text(output)
    answer = parse_mcq(text, question.options) if question.kind == "mcq" else parse_tf(text)
    return QuestionOutcome(question, dialogue, text, answer)


async def _ask_judge(judge: Model, judged: JudgedDialogue, decoding: Decoding) -> str:
    prompt = verdict_request(judged, decoding).prompt
    output = await judge.generate(
        inspect_messages(prompt.messages), config=generate_config(decoding)
    )
    return reply_text(output)


def _verdict(text: str, replies: tuple[str, ...]) -> Verdict | None:
    parsed = parse_judged(text, replies)
    return None if parsed is None else Verdict(**parsed)


async def judge_verdict(judge: Model, judged: JudgedDialogue, decoding: Decoding) -> JudgeResult:
    """The dialogue's verdict as `mtmcs.engine.judging.judge_dialogue` takes it: the judge's
    reply to the replies, and when they hold verdict-like text, its reply to them masked
    (whose verdict counts)."""
    masked = tuple(mask_verdicts(reply) for reply in judged.replies)
    if masked == judged.replies:
        raw = await _ask_judge(judge, judged, decoding)
        return JudgeResult(_verdict(raw, judged.replies), raw)
    raw, masked_raw = await collect(
        _ask_judge(judge, judged, decoding),
        _ask_judge(judge, replace(judged, replies=masked), decoding),
    )
    return JudgeResult(_verdict(masked_raw, masked), raw, masked_raw)


@scorer(metrics=cell_metrics())
def mtmcs_scorer(plan: Plan) -> Scorer:
    """Ask the dialogue's intent questions, have the judge score it, and record it all."""

    async def score(state: TaskState, target: Target) -> Score:
        dialogue = plan.dialogues[str(state.sample_id)]
        replies = tuple(cast(list[str], state.store.get(REPLIES, [])))
        model, judge = get_model(), get_model(role="judge", default=plan.judge)
        rubric = rubric_for(dialogue.split, dialogue.modality, dialogue.intent)
        judged = judged_dialogue(dialogue, replies, plan.captions, rubric)
        decoding = judge_decoding(reasoning=_reasoning(str(judge)))
        questions = [_answer(model, plan, dialogue, q, replies) for q in dialogue.questions]
        done = await collect(judge_verdict(judge, judged, decoding), *questions)
        result, answers = cast(JudgeResult, done[0]), cast(list[QuestionOutcome], done[1:])
        plan.done(dialogue)
        outcome = DialogueOutcome(
            dialogue, replies, result.verdict, result.raw, masked_raw=result.masked_raw
        )
        (record,) = dialogue_records([outcome], answers)
        return dialogue_score(record)

    return score


def mtmcs_task(
    dataset: str = "sample",
    judge: str = DEFAULT_JUDGE,
    split: str | list[str] | None = None,
    modality: str | list[str] | None = None,
    variants: bool = False,
    limit: int | None = None,
    captions: str | None = None,
    image_placement: str = "newest",
    image_order: str = "before",
) -> Task:
    """MTMCS-Bench: one sample per dialogue (split × row × intent × modality).

    Args:
        dataset: `sample` (bundled), `official` (ND-25/MCS-bench) or a directory.
        judge: the judge, an inspect model name (default the authors' GPT-5-mini; inspect's
            `--model-role judge=M` takes precedence).
        split: `type_a`, `type_b` or both (a list or comma-separated; default both).
        modality: `multimodal`, `unimodal` or both (default both).
        variants: also run multimodal dialogues on the rows' variant images.
        limit: the first N rows of each split.
        captions: a JSON file of image captions for the judge (id → caption).
        image_placement: `newest` (the image on the newest user turn) or `first`.
        image_order: the image `before` or `after` the text of its message.
    """
    if is_heuristic_judge(judge):
        raise ConfigError(f"-T judge={judge}: the inspect task takes an LLM judge")
    splits = cast(list[Split], _choice(split, SPLITS, "split"))
    modalities = cast(list[Modality], _choice(modality, MODALITIES, "modality"))
    placement = cast(ImagePlacement, _one(image_placement, IMAGE_PLACEMENTS, "image_placement"))
    order = cast(ImageOrder, _one(image_order, IMAGE_ORDERS, "image_order"))
    benchmark = load_benchmark(dataset, splits, options=LoadOptions(variants=variants))
    rows = select_rows(benchmark, splits, limit)
    dialogues = [d for row in rows for d in expand_row(row, tuple(modalities), variants)]
    config = RunConfig(
        model="inspect",
        out=Path("."),
        judge=judge,
        dataset=dataset,
        captions=Path(captions) if captions else None,
    )
    plan = Plan(
        dialogues={d.id: d for d in dialogues},
        images=ImageEncoder(benchmark.image_bytes),
        captions=resolve_captions(config, benchmark, dialogues),
        judge=judge,
        placement=placement,
        order=order,
        image_users=Counter(d.image_id for d in dialogues if d.image_id is not None),
    )
    return Task(
        dataset=MemoryDataset([_sample(d) for d in dialogues], name=f"mtmcs-{benchmark.name}"),
        solver=play_dialogue(plan),
        scorer=mtmcs_scorer(plan),
        metadata={"benchmark": "MTMCS-Bench", "dataset": benchmark.name, "judge": judge},
    )


def _register(create: Callable[..., Task]) -> Callable[..., Task]:
    """`create` registered as the task `mtmcs/mtmcs`. inspect prefixes a task's name with its
    package only when it finds the package installed (in site-packages, or editable under a
    distribution of the package's name; ours is `mtmcs-bench`): named in full otherwise."""
    registered = task(name="mtmcs")(create)
    if "/" not in registry_info(registered).name:
        registered = task(name="mtmcs/mtmcs")(create)
    return registered


mtmcs = _register(mtmcs_task)
"""The registered task (`inspect eval mtmcs/mtmcs`)."""
