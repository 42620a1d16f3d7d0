"""Value types of the benchmark: rows of the official schema, dialogues and questions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Split = Literal["type_a", "type_b"]
Modality = Literal["multimodal", "unimodal"]
Intent = Literal["safe", "unsafe"]
QuestionKind = Literal["mcq", "tf"]

SPLITS: tuple[Split, ...] = ("type_a", "type_b")
MODALITIES: tuple[Modality, ...] = ("multimodal", "unimodal")
INTENTS: tuple[Intent, ...] = ("unsafe", "safe")
TURN_FIELDS: tuple[str, ...] = ("r1", "unsafe_r1", "safe_r1", "r2", "r3", "unsafe_r3", "safe_r3")


@dataclass(frozen=True, slots=True)
class DialogueFields:
    """The user turns of one modality of a row, as the official schema stores them."""

    r1: str = ""
    unsafe_r1: str = ""
    safe_r1: str = ""
    r2: str = ""
    r3: str = ""
    unsafe_r3: str = ""
    safe_r3: str = ""


@dataclass(frozen=True, slots=True)
class McqItem:
    """A multiple-choice question about the user's intent; `ground_truth` is a letter."""

    question: str
    question_type: str
    options: tuple[str, ...]
    ground_truth: str

    @property
    def intent(self) -> Intent:
        """The dialogue the question is asked about (`unsafe…` types go to the unsafe one)."""
        return "unsafe" if self.question_type.strip().lower().startswith("unsafe") else "safe"


@dataclass(frozen=True, slots=True)
class TfItem:
    """A true/false statement about the user's intent, asked about the unsafe dialogue."""

    question: str
    ground_truth: bool


@dataclass(frozen=True, slots=True)
class ModalityContent:
    """Everything one modality of a row holds: its turns and its questions."""

    dialogue: DialogueFields
    mcq: tuple[McqItem, ...]
    tf: tuple[TfItem, ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a split: a base image, an unsafe intent and both modalities.

    `image_id` names the image (the image bytes live outside the protocol, with the loader);
    `variant_image_ids` name the edited variants of it, when they were loaded.
    """

    split: Split
    id: int
    image_id: str
    unsafe_intent: str
    multimodal: ModalityContent
    unimodal: ModalityContent
    variant_image_ids: tuple[str, ...] = ()

    def content(self, modality: Modality) -> ModalityContent:
        """The turns and questions of one modality."""
        return self.multimodal if modality == "multimodal" else self.unimodal


@dataclass(frozen=True, slots=True)
class Question:
    """A question asked about one finished dialogue."""

    id: str
    kind: QuestionKind
    text: str
    options: tuple[str, ...] = ()
    ground_truth: str | bool = ""


@dataclass(frozen=True, slots=True)
class Dialogue:
    """One dialogue of a row (modality × intent, and image variant) with its questions.

    `image_variant` is 0 for the base image and k for the row's k-th variant image;
    `unsafe_intent` is the row's harmful goal (for breakdowns; never shown to the model).
    """

    id: str
    pair_id: str
    split: Split
    row_id: int
    modality: Modality
    intent: Intent
    turns: tuple[str, str, str]
    image_id: str | None
    questions: tuple[Question, ...] = field(default=())
    image_variant: int = 0
    unsafe_intent: str = ""

    @property
    def cell(self) -> str:
        """The metrics cell: the modality, or e.g. `multimodal@v1` for a variant image."""
        return (
            self.modality if self.image_variant == 0 else f"{self.modality}@v{self.image_variant}"
        )
