"""The build stages: cached model calls, validation with one retry, checks and drop reasons."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mtmcs.build import schemas as s
from mtmcs.data.records import check_image
from mtmcs.engine.store import CallRecord, Store, request_key
from mtmcs.errors import ProviderError
from mtmcs.models.base import CallFailed, ChatModel, ChatRequest
from mtmcs.models.baseline import is_refusal
from mtmcs.protocol.messages import Message

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
    """The models of a build: generator, captioner and single-turn reference."""

    generator: ChatModel
    captioner: ChatModel
    reference: ChatModel


@dataclass
class BuildState:
    """Counts and drops of one build (written to the report and the dataset card)."""

    counts: dict[str, int] = field(default_factory=dict)
    drops: list[Drop] = field(default_factory=list)
    new_calls: int = 0
    cached_calls: int = 0

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount


class Caller:
    """Model calls through the store: a cached answer is never asked for again."""

    def __init__(self, store: Store, state: BuildState, connections: int = 8) -> None:
        self.store = store
        self.state = state
        self._gate = asyncio.Semaphore(connections)

    async def text(
        self, model: ChatModel, item: str, stage: str, messages: tuple[Message, ...], tokens: int
    ) -> str:
        request = ChatRequest(messages=messages, max_tokens=tokens, temperature=0.0, seed=0)
        key = request_key(model.name, item, request)
        cached = self.store.get(key)
        if cached is not None and cached.output is not None:
            self.state.cached_calls += 1
            return cached.output
        async with self._gate:
            started = time.monotonic()
            try:
                completion = await model.complete(request)
            except CallFailed as failure:
                if failure.unreachable:
                    raise ProviderError(
                        f"{model.name} is unreachable ({failure.cause}); check --base-url, "
                        "then rerun: finished calls are kept in the store"
                    ) from failure
                raise
        self.state.new_calls += 1
        self.store.put(
            CallRecord(
                key,
                model.name,
                stage,
                item,
                completion.text,
                completion.finish_reason,
                None,
                completion.input_tokens,
                completion.output_tokens,
                time.monotonic() - started,
                None,
            )
        )
        return completion.text

    async def structured(
        self,
        model: ChatModel,
        stage: s.Stage,
        item: str,
        prompt: str,
        image: str | None,
        validate: Callable[[dict[str, Any]], M],
    ) -> M | None:
        """A validated answer; an invalid one is retried once with the error, then dropped."""
        error = ""
        for attempt in range(2):
            text = prompt if attempt == 0 else s.retry_prompt(prompt, error)
            messages = (Message("user", text, image),)
            try:
                reply = await self.text(model, item, stage, messages, GENERATION_TOKENS)
            except CallFailed as failure:
                self.state.drops.append(Drop(stage, item, f"call failed: {failure.cause}"))
                return None
            try:
                return validate(s.parse_json_object(reply))
            except ValidationError as invalid:
                error = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}"
                    for e in invalid.errors()
                )
            except ValueError as invalid:
                error = str(invalid)
            if attempt == 0:
                self.state.add(f"{stage}_retried")
        self.state.drops.append(Drop(stage, item, f"invalid output after one retry: {error}"))
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
    caller: Caller, models: Models, image: Path, captions: dict[str, str]
) -> str | None:
    if image.name in captions:
        return captions[image.name]
    out = await caller.structured(
        models.captioner,
        "caption",
        f"caption/{image.name}",
        s.caption_prompt(),
        image.name,
        s.CaptionOut.model_validate,
    )
    return out.caption if out else None


async def _propose(
    caller: Caller, models: Models, image: Path, caption: str, per_image: int
) -> list[Draft]:
    def validate(data: dict[str, Any]) -> s.IntentsOut:
        out = s.IntentsOut.model_validate(data)
        if len(out.intents) != per_image:
            raise ValueError(f"expected exactly {per_image} intents, got {len(out.intents)}")
        return out

    out = await caller.structured(
        models.generator,
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


async def _write(caller: Caller, models: Models, draft: Draft) -> None:
    prompt = s.writer_prompt(draft.caption, draft.intent.unsafe_intent, draft.intent.safe_intent)
    draft.multimodal = await caller.structured(
        models.generator,
        "writer",
        f"writer/{draft.key}",
        prompt,
        draft.image.name,
        s.DialoguesOut.model_validate,
    )


async def _convert(caller: Caller, models: Models, draft: Draft) -> None:
    assert draft.multimodal is not None
    draft.unimodal = await caller.structured(
        models.generator,
        "converter",
        f"converter/{draft.key}",
        s.converter_prompt(draft.caption, draft.multimodal),
        draft.image.name,
        s.DialoguesOut.model_validate,
    )


async def _single_turns(caller: Caller, models: Models, draft: Draft) -> str | None:
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
                jobs.append(
                    caller.text(
                        models.reference,
                        item,
                        "single_turn_filter",
                        (Message("user", text, image),),
                        FILTER_TOKENS,
                    )
                )
    replies = await asyncio.gather(*jobs, return_exceptions=True)
    for label, reply in zip(labels, replies, strict=True):
        if isinstance(reply, CallFailed):
            return f"{label}: reference call failed: {reply.cause}"
        if isinstance(reply, BaseException):
            raise reply
        if is_refusal(reply):
            return f"{label} is refused on its own by the reference model"
    return None


async def _questions(caller: Caller, models: Models, draft: Draft) -> s.Scenario | None:
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

        out = await caller.structured(
            models.generator,
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
    store: Store,
    per_image: int,
    captions: dict[str, str],
    state: BuildState,
) -> list[s.Scenario]:
    """Every stage and check in order; returns the scenarios that passed them all."""
    caller = Caller(store, state)
    usable: list[Path] = []
    for image in images:
        reason = check_image(image.read_bytes())
        if reason is None:
            usable.append(image)
        else:
            state.drops.append(Drop("images", image.name, reason))
    state.add("images", len(usable))

    found = await asyncio.gather(*(_caption(caller, models, i, captions) for i in usable))
    captioned = [(i, c) for i, c in zip(usable, found, strict=True) if c is not None]
    state.add("captioned", len(captioned))

    proposals = await asyncio.gather(
        *(_propose(caller, models, i, c, per_image) for i, c in captioned)
    )
    drafts = [draft for group in proposals for draft in group]
    state.add("proposed", len(drafts))

    await asyncio.gather(*(_write(caller, models, d) for d in drafts))
    drafts = [d for d in drafts if d.multimodal is not None]
    state.add("written", len(drafts))

    await asyncio.gather(*(_convert(caller, models, d) for d in drafts))
    drafts = [d for d in drafts if d.unimodal is not None]
    state.add("converted", len(drafts))

    verdicts = await asyncio.gather(*(_single_turns(caller, models, d) for d in drafts))
    passed = []
    for draft, verdict in zip(drafts, verdicts, strict=True):
        if verdict is None:
            passed.append(draft)
        else:
            state.drops.append(Drop("single_turn_filter", draft.key, verdict))
    state.add("filtered", len(drafts) - len(passed))
    state.add("passed_filter", len(passed))

    unique = deduplicate(passed, state)
    questioned = await asyncio.gather(*(_questions(caller, models, d) for d in unique))
    kept = [q for q in questioned if q is not None]
    state.add("kept", len(kept))
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
