"""Turn assembly: a row of the official schema → its four dialogues and their questions."""

from __future__ import annotations

from mtmcs.protocol.types import (
    INTENTS,
    MODALITIES,
    Dialogue,
    DialogueFields,
    Intent,
    Modality,
    Question,
    Row,
    Split,
)

_TURN_FIELDS: dict[tuple[Split, Intent], tuple[str, str, str]] = {
    ("type_a", "unsafe"): ("r1", "r2", "unsafe_r3"),
    ("type_a", "safe"): ("r1", "r2", "safe_r3"),
    ("type_b", "unsafe"): ("unsafe_r1", "r2", "r3"),
    ("type_b", "safe"): ("safe_r1", "r2", "r3"),
}


def turn_fields(split: Split, intent: Intent) -> tuple[str, str, str]:
    """Names of the schema fields holding R1, R2 and R3 of a dialogue."""
    return _TURN_FIELDS[(split, intent)]


def dialogue_turns(fields: DialogueFields, split: Split, intent: Intent) -> tuple[str, str, str]:
    """The three user turns of a dialogue, e.g. type_b unsafe = (unsafe_r1, r2, r3)."""
    r1, r2, r3 = (getattr(fields, name) for name in turn_fields(split, intent))
    return (r1, r2, r3)


def dialogue_id(
    split: Split, row_id: int, modality: Modality, intent: Intent, variant: int = 0
) -> str:
    """Stable id such as `type_a/000123/multimodal/unsafe` (`…/multimodal@v2/…` on variant 2)."""
    return f"{pair_id(split, row_id, modality, variant)}/{intent}"


def pair_id(split: Split, row_id: int, modality: Modality, variant: int = 0) -> str:
    """Id shared by the safe and unsafe dialogue of one scenario (and image variant)."""
    suffix = f"@v{variant}" if variant else ""
    return f"{split}/{row_id:06d}/{modality}{suffix}"


def dialogue_questions(
    row: Row, modality: Modality, intent: Intent, variant: int = 0
) -> tuple[Question, ...]:
    """Questions asked about one dialogue: MCQs of its intent; all TF items go to unsafe."""
    content = row.content(modality)
    prefix = dialogue_id(row.split, row.id, modality, intent, variant)
    questions = [
        Question(
            id=f"{prefix}/mcq/{index}",
            kind="mcq",
            text=item.question,
            options=item.options,
            ground_truth=item.ground_truth,
        )
        for index, item in enumerate(content.mcq)
        if item.intent == intent
    ]
    if intent == "unsafe":
        questions += [
            Question(
                id=f"{prefix}/tf/{index}",
                kind="tf",
                text=item.question,
                ground_truth=item.ground_truth,
            )
            for index, item in enumerate(content.tf)
        ]
    return tuple(questions)


def expand_row(
    row: Row, modalities: tuple[Modality, ...] = MODALITIES, variants: bool = False
) -> tuple[Dialogue, ...]:
    """The dialogues of a row, one per modality × intent, each with its questions.

    With `variants`, the multimodal dialogues are also run on each variant image of the row
    (same turns and questions, another image).
    """
    images: list[tuple[Modality, int, str | None]] = []
    for modality in modalities:
        if modality == "unimodal":
            images.append((modality, 0, None))
            continue
        images.append((modality, 0, row.image_id))
        if variants:
            images += [(modality, k, vid) for k, vid in enumerate(row.variant_image_ids, 1)]
    return tuple(
        Dialogue(
            id=dialogue_id(row.split, row.id, modality, intent, variant),
            pair_id=pair_id(row.split, row.id, modality, variant),
            split=row.split,
            row_id=row.id,
            modality=modality,
            intent=intent,
            turns=dialogue_turns(row.content(modality).dialogue, row.split, intent),
            image_id=image,
            questions=dialogue_questions(row, modality, intent, variant),
            image_variant=variant,
            unsafe_intent=row.unsafe_intent,
        )
        for modality, variant, image in images
        for intent in INTENTS
    )
