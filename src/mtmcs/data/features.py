"""The official schema of `ND-25/MCS-bench` as `datasets` features."""

from __future__ import annotations

from typing import Any

from mtmcs.protocol.types import TURN_FIELDS


def official_features() -> Any:
    """Return the `datasets.Features` of one split of the official dataset."""
    from datasets import Features, Image, List, Value

    dialogue = {name: Value("string") for name in TURN_FIELDS}
    mcq = List(
        {
            "question": Value("string"),
            "question_type": Value("string"),
            "options": List(Value("string")),
            "ground_truth": Value("string"),
        }
    )
    tf = List({"question": Value("string"), "ground_truth": Value("bool")})
    return Features(
        {
            "id": Value("int32"),
            "image": Image(),
            "variant_images": List(Image()),
            "unsafe_intent": Value("string"),
            "multimodal_dialogue": dialogue,
            "unimodal_dialogue": dialogue,
            "multimodal_mcq": mcq,
            "unimodal_mcq": mcq,
            "multimodal_tf": tf,
            "unimodal_tf": tf,
        }
    )
