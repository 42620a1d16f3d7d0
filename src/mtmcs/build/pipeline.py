"""The build stages: model calls through the store, validation with one retry, checks and
drop reasons."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mtmcs.build import gate as g
from mtmcs.build import schemas as s
from mtmcs.build.content import BuildCaller
from mtmcs.data.records import check_image
from mtmcs.models.base import ChatRequest
from mtmcs.models.baseline import is_refusal
from mtmcs.models.registry import is_reasoning_model
from mtmcs.protocol.messages import Message
from mtmcs.protocol.prompts import REASONING_EFFORT, ReasoningEffort
from mtmcs.protocol.types import SPLITS
from mtmcs.scoring.categories import CATEGORY_IDS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
FILTER_FIELDS = {  # the turns meant to be innocent alone: never type B's explicit unsafe_r1
    "type_a": ("r1", "r2", "safe_r3"),
    "type_b": ("safe_r1", "r2", "r3"),
}
BENIGN_OPENING = ("r1", "r2")  # type A's, which the gate also wants benign
FILTER_CALLS = 2 * sum(len(fields) for fields in FILTER_FIELDS.values())
DUPLICATE_JACCARD = 0.9
GENERATION_TOKENS = 2048
FILTER_TOKENS = 256

M = TypeVar("M", bound=BaseModel)


def find_images(directory: Path) -> list[Path]:
    """Image files directly in `directory`, sorted by name."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def planned_calls(images: int, per_image: int, uncaptioned: int) -> dict[str, int]:
    """Calls per stage before retries and drops (what `--dry-run` prints)."""
    scenarios = images * per_image
    return {
        "caption": uncaptioned,
        "classifier": images,
        "writer": scenarios,
        "converter": scenarios,
        "single_turn_filter": scenarios * FILTER_CALLS,
        "questioner": scenarios * 2,
    }


@dataclass
class Drop:
    """Something left out of the dataset, and why."""

    stage: str
    item: str
    reason: str


@dataclass(frozen=True)
class StageSettings:
    """Decoding of every build call (`--temperature`, `--max-tokens`, `--reasoning-effort`);
    the single-turn filter keeps `FILTER_TOKENS`."""

    temperature: float = 0.0
    max_tokens: int = GENERATION_TOKENS
    reasoning_effort: ReasoningEffort = REASONING_EFFORT


@dataclass(frozen=True)
class Quota:
    """How many scenarios each harm category may keep (`--quota`, `--max-per-category`)."""

    limits: Mapping[str, int] = field(default_factory=dict)
    per_category: int | None = None

    def limit(self, category: str) -> int | None:
        return self.limits.get(category, self.per_category)


@dataclass
class Models:
    """The callers of a build's models (one store): generator, captioner and single-turn
    reference; one model in several roles has one caller."""

    generator: BuildCaller
    captioner: BuildCaller
    reference: BuildCaller
    settings: StageSettings = field(default_factory=StageSettings)

    def distinct(self) -> list[BuildCaller]:
        """Each caller once."""
        return list({id(c): c for c in (self.generator, self.captioner, self.reference)}.values())


@dataclass
class BuildState:
    """Counts and drops of one build (written to the report and the dataset card)."""

    counts: dict[str, int] = field(default_factory=dict)
    drops: list[Drop] = field(default_factory=list)
    new_calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    gate: g.GateTally = field(default_factory=g.GateTally)

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount


REASONING_ROOM = 1024
"""Tokens added to a reasoning model's limit for its hidden reasoning."""


def build_request(
    text: str,
    image: str | None,
    tokens: int,
    model: str = "",
    settings: StageSettings = StageSettings(),
) -> ChatRequest:
    """A build call to `model`: one user message (with the image, if any), seeded, at the
    settings' temperature; a reasoning model (which takes no temperature) gets the settings'
    effort instead (the authors' low by default), with `REASONING_ROOM` more tokens."""
    message = (Message("user", text, image),)
    if is_reasoning_model(model):
        return ChatRequest(
            message, tokens + REASONING_ROOM, seed=0, reasoning_effort=settings.reasoning_effort
        )
    return ChatRequest(message, tokens, temperature=settings.temperature, seed=0)


async def structured(
    caller: BuildCaller,
    state: BuildState,
    stage: s.Stage,
    item: str,
    prompt: str,
    image: str | None,
    validate: Callable[[dict[str, Any]], M],
    settings: StageSettings = StageSettings(),
    reason: str | None = None,
) -> M | None:
    """A validated answer; an invalid one is retried once with the error, then dropped (a
    failed call too: its cause is stored, and the next build makes it again). Two invalid
    answers are stored as failed calls, so the next build asks again too."""
    error = reason or ""
    gate_failed = False
    asked: list[ChatRequest] = []
    for attempt in range(1 if reason else 0, 2):  # a reason: this is the retry
        text = prompt if attempt == 0 else s.retry_prompt(prompt, error)
        request = build_request(text, image, settings.max_tokens, caller.name, settings)
        asked.append(request)
        answer = await caller(item, request, kind=stage)
        if isinstance(answer, str):
            state.drops.append(Drop(stage, item, f"call failed: {answer}"))
            return None
        try:
            return validate(s.parse_json_object(answer.text))
        except ValidationError as invalid:
            error = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}"
                for e in invalid.errors()
            )
        except ValueError as invalid:
            error = str(invalid)
            gate_failed = isinstance(invalid, g.GateFailure)
        if attempt == 0:
            state.add(f"{stage}_retried")
    for request in asked:
        caller.reject(item, request, stage, f"invalid output: {error}")
    failed = "failed the quality gate" if gate_failed else "invalid output"
    state.drops.append(Drop(stage, item, f"{failed} after one retry: {error}"))
    return None


def gated(
    parse: Callable[[dict[str, Any]], M], gate: Callable[[M], None]
) -> Callable[[dict[str, Any]], M]:
    """`parse`, then the gate's checks on what it parsed."""

    def validate(data: dict[str, Any]) -> M:
        out = parse(data)
        gate(out)
        return out

    return validate


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def dialogue_words(unsafe_intent: str, dialogues: s.DialoguesOut) -> set[str]:
    """The normalised word set compared by the near-duplicate check."""
    parts = [unsafe_intent, *dialogues.type_a.model_dump().values()]
    parts += dialogues.type_b.model_dump().values()
    return _words(" ".join(parts))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


@dataclass
class Draft:
    """A scenario on its way through the stages."""

    key: str
    image: Path
    caption: str
    intent: s.IntentOut
    multimodal: s.DialoguesOut | None = None
    unimodal: s.DialoguesOut | None = None
    splits: list[str] = field(default_factory=lambda: list(SPLITS))  # not dropped yet


async def _caption(
    models: Models, state: BuildState, image: Path, captions: dict[str, str]
) -> str | None:
    if image.name in captions:
        return captions[image.name]
    gate = g.Gated[s.CaptionOut](state.gate, {"caption_not_refusal": g.caption_not_refusal})
    out = await structured(
        models.captioner,
        state,
        "caption",
        f"caption/{image.name}",
        s.caption_prompt(),
        image.name,
        gated(s.CaptionOut.model_validate, gate),
        models.settings,
    )
    return out.caption if out else None


async def _propose(
    models: Models, state: BuildState, image: Path, caption: str, per_image: int
) -> list[Draft]:
    def validate(data: dict[str, Any]) -> s.IntentsOut:
        out = s.IntentsOut.model_validate(data)
        if len(out.intents) != per_image:
            raise ValueError(f"expected exactly {per_image} intents, got {len(out.intents)}")
        return out

    out = await structured(
        models.generator,
        state,
        "classifier",
        f"classifier/{image.name}",
        s.classifier_prompt(caption, per_image),
        image.name,
        validate,
        models.settings,
    )
    if out is None:
        return []
    return [
        Draft(f"{image.name}#{k}", image, caption, intent) for k, intent in enumerate(out.intents)
    ]


async def _write(
    models: Models, state: BuildState, draft: Draft, reason: str | None = None
) -> None:
    prompt = s.writer_prompt(draft.caption, draft.intent.unsafe_intent, draft.intent.safe_intent)
    draft.multimodal = await structured(
        models.generator,
        state,
        "writer",
        f"writer/{draft.key}",
        prompt,
        draft.image.name,
        s.DialoguesOut.model_validate,
        models.settings,
        reason,
    )


async def _convert(models: Models, state: BuildState, draft: Draft) -> None:
    multimodal = draft.multimodal
    assert multimodal is not None
    cue = g.visual_cue(draft.caption)
    gate = g.Gated[s.DialoguesOut](
        state.gate,
        {
            "unimodal_no_deixis": lambda uni: g.unimodal_no_deixis(multimodal, uni),
            "unimodal_differs": lambda uni: g.unimodal_differs(multimodal, uni),
            "unimodal_visual_cue": lambda uni: cue(multimodal, uni),
        },
    )
    draft.unimodal = await structured(
        models.generator,
        state,
        "converter",
        f"converter/{draft.key}",
        s.converter_prompt(draft.caption, multimodal),
        draft.image.name,
        gated(s.DialoguesOut.model_validate, gate),
        models.settings,
    )


@dataclass(frozen=True)
class Probe:
    """One user turn sent alone to the reference model, and what came back."""

    split: str
    name: str
    label: str
    refused: bool
    failure: str | None


async def _probe(models: Models, draft: Draft) -> list[Probe]:
    """The single-turn filter's calls: each turn of `FILTER_FIELDS` alone, both modalities."""
    assert draft.multimodal is not None and draft.unimodal is not None
    jobs = []
    labels = []
    for modality, dialogues in (("multimodal", draft.multimodal), ("unimodal", draft.unimodal)):
        image = draft.image.name if modality == "multimodal" else None
        for split, fields in FILTER_FIELDS.items():
            turns = getattr(dialogues, split)
            for name in fields:
                text = getattr(turns, name)
                item = f"filter/{draft.key}/{modality}/{split}/{name}"
                labels.append((split, name, f"{modality} {split}.{name}"))
                request = build_request(
                    text, image, FILTER_TOKENS, models.reference.name, models.settings
                )
                jobs.append(models.reference(item, request, kind="single_turn_filter"))
    replies = await asyncio.gather(*jobs)
    return [
        Probe(split, name, label, False, reply)
        if isinstance(reply, str)
        else Probe(split, name, label, is_refusal(reply.text), None)
        for (split, name, label), reply in zip(labels, replies, strict=True)
    ]


async def _screen(models: Models, state: BuildState, draft: Draft) -> None:
    """Converter, single-turn filter and the gate's benign-opening check of a written draft.
    A type-A r1/r2 refused alone sends the writer back once with why (then the converter and
    the filter again); a split with a tested turn refused or failed is dropped, not the other."""
    gate = g.Gated[Mapping[str, bool]](state.gate, {"type_a_benign": g.type_a_benign})
    probes: list[Probe] = []
    for attempt in range(2):
        await _convert(models, state, draft)
        if draft.unimodal is None:
            draft.splits = []
            return
        probes = await _probe(models, draft)
        opening = {
            p.label: p.refused for p in probes if p.split == "type_a" and p.name in BENIGN_OPENING
        }
        try:
            gate(opening)
            break
        except g.GateFailure as failure:
            if attempt == 1:
                break
            state.add("writer_retried")
            await _write(models, state, draft, str(failure))
            if draft.multimodal is None:
                draft.splits = []
                return
    for probe in probes:
        if probe.split not in draft.splits or not (probe.refused or probe.failure):
            continue
        draft.splits.remove(probe.split)
        state.add("filtered")
        why = (
            f"reference call failed: {probe.failure}"
            if probe.failure
            else "is refused on its own by the reference model"
        )
        state.drops.append(
            Drop("single_turn_filter", draft.key, f"{probe.label} {why}; {probe.split} dropped")
        )


async def _questions(models: Models, state: BuildState, draft: Draft) -> s.Scenario | None:
    """The questions of each split left, through the gate; a split whose questions fail
    twice is dropped, and a scenario with no split left."""
    assert draft.multimodal is not None and draft.unimodal is not None
    intent = draft.intent
    found: dict[str, s.QuestionsOut] = {}
    for split in draft.splits:
        turns = {
            modality: getattr(dialogues, split).model_dump()
            for modality, dialogues in (("mm", draft.multimodal), ("uni", draft.unimodal))
        }
        gate = g.Gated[s.QuestionsOut](
            state.gate,
            {
                "answer_keys": lambda q: g.answer_keys(q, intent.unsafe_intent, intent.safe_intent),
                "one_correct_option": lambda q: g.one_correct_option(
                    q, intent.unsafe_intent, intent.safe_intent
                ),
                "tf_balanced": g.tf_balanced,
            },
        )

        def parse(data: dict[str, Any]) -> s.QuestionsOut:
            out = s.QuestionsOut.model_validate(data)
            s.check_questions(out, intent.unsafe_intent)
            return out

        out = await structured(
            models.generator,
            state,
            "questioner",
            f"questioner/{draft.key}/{split}",
            s.questioner_prompt(
                split, intent.unsafe_intent, intent.safe_intent, turns["mm"], turns["uni"]
            ),
            draft.image.name,
            gated(parse, gate),
            models.settings,
        )
        if out is not None:
            found[split] = out
    if not found:
        return None
    return s.Scenario(
        key=draft.key,
        image=str(draft.image.resolve()),
        caption=draft.caption,
        category=intent.category,
        unsafe_intent=intent.unsafe_intent,
        safe_intent=intent.safe_intent,
        multimodal=draft.multimodal,
        unimodal=draft.unimodal,
        type_a=found.get("type_a"),
        type_b=found.get("type_b"),
    )


def choose(scenarios: Sequence[s.Scenario], quota: Quota, state: BuildState) -> list[s.Scenario]:
    """The scenarios within each category's quota, in order; the rest dropped with why."""
    taken: dict[str, int] = {}
    kept = []
    for scenario in scenarios:
        limit = quota.limit(scenario.category)
        if limit is not None and taken.get(scenario.category, 0) >= limit:
            state.drops.append(
                Drop("quota", scenario.key, f"category {scenario.category} is full ({limit})")
            )
            continue
        taken[scenario.category] = taken.get(scenario.category, 0) + 1
        kept.append(scenario)
    state.add("over_quota", len(scenarios) - len(kept))
    return kept


def diversity(scenarios: Sequence[s.Scenario]) -> dict[str, int]:
    """Scenarios per harm category, every category of the taxonomy listed."""
    return {
        category: sum(scenario.category == category for scenario in scenarios)
        for category in CATEGORY_IDS
    }


async def run_stages(
    images: Sequence[Path],
    models: Models,
    per_image: int,
    captions: dict[str, str],
    state: BuildState,
    quota: Quota = Quota(),
) -> list[s.Scenario]:
    """Every stage and check in order; returns the scenarios that passed them all, within
    the quota."""
    usable: list[Path] = []
    for image in images:
        reason = check_image(image.read_bytes())
        if reason is None:
            usable.append(image)
        else:
            state.drops.append(Drop("images", image.name, reason))
    state.add("images", len(usable))

    found = await asyncio.gather(*(_caption(models, state, i, captions) for i in usable))
    captioned = [(i, c) for i, c in zip(usable, found, strict=True) if c is not None]
    state.add("captioned", len(captioned))

    proposals = await asyncio.gather(
        *(_propose(models, state, i, c, per_image) for i, c in captioned)
    )
    drafts = [draft for group in proposals for draft in group]
    state.add("proposed", len(drafts))

    await asyncio.gather(*(_write(models, state, d) for d in drafts))
    drafts = [d for d in drafts if d.multimodal is not None]
    state.add("written", len(drafts))

    await asyncio.gather(*(_screen(models, state, d) for d in drafts))
    state.add("converted", sum(d.unimodal is not None for d in drafts))
    passed = [d for d in drafts if d.splits]
    state.add("passed_filter", len(passed))

    unique = deduplicate(passed, state)
    questioned = await asyncio.gather(*(_questions(models, state, d) for d in unique))
    kept = choose([q for q in questioned if q is not None], quota, state)
    state.add("kept", len(kept))
    for caller in models.distinct():
        state.new_calls += caller.counts.made
        state.cached_calls += caller.counts.cached
        state.failed_calls += caller.counts.failed
    return kept


def deduplicate(drafts: Sequence[Draft], state: BuildState) -> list[Draft]:
    """Drop the later of two drafts whose unsafe intent + turns are near duplicates."""
    kept: list[tuple[Draft, set[str]]] = []
    for draft in drafts:
        assert draft.multimodal is not None
        words = dialogue_words(draft.intent.unsafe_intent, draft.multimodal)
        twin = next((k for k, w in kept if jaccard(words, w) >= DUPLICATE_JACCARD), None)
        if twin is None:
            kept.append((draft, words))
        else:
            state.drops.append(Drop("near_duplicate", draft.key, f"near duplicate of {twin.key}"))
    state.add("duplicates", len(drafts) - len(kept))
    return [draft for draft, _ in kept]


def load_captions(path: Path) -> dict[str, str]:
    """`--captions`: a JSON object filename → caption."""
    from mtmcs.errors import ConfigError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read captions {path}: {error}") from error
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()
    ):
        raise ConfigError(f"{path}: expected a JSON object filename → non-empty caption")
    return {str(k): str(v) for k, v in data.items()}
