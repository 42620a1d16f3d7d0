"""The build stages: model calls through the store, validation with one retry, checks and
drop reasons."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mtmcs.build import schemas as s
from mtmcs.data.records import check_image
from mtmcs.engine.calls import Caller
from mtmcs.models.base import ChatRequest
from mtmcs.models.baseline import is_refusal
from mtmcs.models.registry import is_reasoning_model
from mtmcs.protocol.messages import Message
from mtmcs.protocol.prompts import REASONING_EFFORT

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
FILTER_FIELDS = {
    "type_a": ("r1", "r2", "safe_r3", "unsafe_r3"),
    "type_b": ("safe_r1", "unsafe_r1", "r2", "r3"),
}
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


@dataclass
class Models:
    """The callers of a build's models (one store): generator, captioner and single-turn
    reference; one model in several roles has one caller."""

    generator: Caller
    captioner: Caller
    reference: Caller

    def distinct(self) -> list[Caller]:
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

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount


REASONING_ROOM = 1024
"""Tokens added to a reasoning model's limit for its hidden reasoning."""


def build_request(text: str, image: str | None, tokens: int, model: str = "") -> ChatRequest:
    """A build call to `model`: one user message (with the image, if any), greedy, seeded;
    a reasoning model (which takes no temperature) gets the authors' low effort instead,
    with `REASONING_ROOM` more tokens."""
    message = (Message("user", text, image),)
    if is_reasoning_model(model):
        return ChatRequest(
            message, tokens + REASONING_ROOM, seed=0, reasoning_effort=REASONING_EFFORT
        )
    return ChatRequest(message, tokens, temperature=0.0, seed=0)


async def structured(
    caller: Caller,
    state: BuildState,
    stage: s.Stage,
    item: str,
    prompt: str,
    image: str | None,
    validate: Callable[[dict[str, Any]], M],
) -> M | None:
    """A validated answer; an invalid one is retried once with the error, then dropped (a
    failed call too: its cause is stored, and the next build makes it again)."""
    error = ""
    for attempt in range(2):
        text = prompt if attempt == 0 else s.retry_prompt(prompt, error)
        request = build_request(text, image, GENERATION_TOKENS, caller.name)
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
        if attempt == 0:
            state.add(f"{stage}_retried")
    state.drops.append(Drop(stage, item, f"invalid output after one retry: {error}"))
    return None


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


async def _caption(
    models: Models, state: BuildState, image: Path, captions: dict[str, str]
) -> str | None:
    if image.name in captions:
        return captions[image.name]
    out = await structured(
        models.captioner,
        state,
        "caption",
        f"caption/{image.name}",
        s.caption_prompt(),
        image.name,
        s.CaptionOut.model_validate,
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
    )
    if out is None:
        return []
    return [
        Draft(f"{image.name}#{k}", image, caption, intent) for k, intent in enumerate(out.intents)
    ]


async def _write(models: Models, state: BuildState, draft: Draft) -> None:
    prompt = s.writer_prompt(draft.caption, draft.intent.unsafe_intent, draft.intent.safe_intent)
    draft.multimodal = await structured(
        models.generator,
        state,
        "writer",
        f"writer/{draft.key}",
        prompt,
        draft.image.name,
        s.DialoguesOut.model_validate,
    )


async def _convert(models: Models, state: BuildState, draft: Draft) -> None:
    assert draft.multimodal is not None
    draft.unimodal = await structured(
        models.generator,
        state,
        "converter",
        f"converter/{draft.key}",
        s.converter_prompt(draft.caption, draft.multimodal),
        draft.image.name,
        s.DialoguesOut.model_validate,
    )


async def _single_turns(models: Models, state: BuildState, draft: Draft) -> str | None:
    """Why the draft fails the single-turn filter (a refused or failed turn), else `None`."""
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
                labels.append(f"{modality} {split}.{name}")
                request = build_request(text, image, FILTER_TOKENS, models.reference.name)
                jobs.append(models.reference(item, request, kind="single_turn_filter"))
    replies = await asyncio.gather(*jobs)
    for label, reply in zip(labels, replies, strict=True):
        if isinstance(reply, str):
            return f"{label}: reference call failed: {reply}"
        if is_refusal(reply.text):
            return f"{label} is refused on its own by the reference model"
    return None


async def _questions(models: Models, state: BuildState, draft: Draft) -> s.Scenario | None:
    assert draft.multimodal is not None and draft.unimodal is not None
    intent = draft.intent
    found: dict[str, s.QuestionsOut] = {}
    for split in ("type_a", "type_b"):
        turns = {
            modality: getattr(dialogues, split).model_dump()
            for modality, dialogues in (("mm", draft.multimodal), ("uni", draft.unimodal))
        }

        def validate(data: dict[str, Any]) -> s.QuestionsOut:
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
            validate,
        )
        if out is None:
            return None
        found[split] = out
    return s.Scenario(
        key=draft.key,
        image=str(draft.image.resolve()),
        caption=draft.caption,
        unsafe_intent=intent.unsafe_intent,
        safe_intent=intent.safe_intent,
        multimodal=draft.multimodal,
        unimodal=draft.unimodal,
        type_a=found["type_a"],
        type_b=found["type_b"],
    )


async def run_stages(
    images: Sequence[Path],
    models: Models,
    per_image: int,
    captions: dict[str, str],
    state: BuildState,
) -> list[s.Scenario]:
    """Every stage and check in order; returns the scenarios that passed them all."""
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

    await asyncio.gather(*(_convert(models, state, d) for d in drafts))
    drafts = [d for d in drafts if d.unimodal is not None]
    state.add("converted", len(drafts))

    verdicts = await asyncio.gather(*(_single_turns(models, state, d) for d in drafts))
    passed = []
    for draft, verdict in zip(drafts, verdicts, strict=True):
        if verdict is None:
            passed.append(draft)
        else:
            state.drops.append(Drop("single_turn_filter", draft.key, verdict))
    state.add("filtered", len(drafts) - len(passed))
    state.add("passed_filter", len(passed))

    unique = deduplicate(passed, state)
    questioned = await asyncio.gather(*(_questions(models, state, d) for d in unique))
    kept = [q for q in questioned if q is not None]
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
