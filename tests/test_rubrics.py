"""The six judge rubrics: keys, selection by (split, modality, intent), and required wording."""

from __future__ import annotations

import itertools
import re

import pytest

from mtmcs.protocol.rubrics import RUBRICS, Rubric, measure_for, rubric_for
from mtmcs.protocol.types import INTENTS, MODALITIES, SPLITS, Intent, Modality, Split

ALL = list(RUBRICS.values())
IDS = [rubric.key for rubric in ALL]


def test_six_rubrics_with_unique_keys() -> None:
    assert len(RUBRICS) == 6
    assert len({rubric.key for rubric in ALL}) == 6
    assert all(key == rubric.key for key, rubric in RUBRICS.items())
    assert set(RUBRICS) == {
        "helpfulness/multimodal",
        "helpfulness/unimodal",
        "safety_awareness/type_a/multimodal",
        "safety_awareness/type_a/unimodal",
        "safety_awareness/type_b/multimodal",
        "safety_awareness/type_b/unimodal",
    }


def test_fields_match_keys() -> None:
    for rubric in ALL:
        parts = [rubric.measure, *([rubric.split] if rubric.split else []), rubric.modality]
        assert rubric.key == "/".join(parts)
        assert (rubric.split is None) == (rubric.measure == "helpfulness")


def test_rubrics_are_frozen_and_mapping_is_read_only() -> None:
    rubric = RUBRICS["helpfulness/unimodal"]
    with pytest.raises(AttributeError):
        rubric.text = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        RUBRICS["extra"] = rubric  # type: ignore[index]


def test_measure_for() -> None:
    assert measure_for("unsafe") == "safety_awareness"
    assert measure_for("safe") == "helpfulness"


@pytest.mark.parametrize(
    ("split", "modality", "intent"), list(itertools.product(SPLITS, MODALITIES, INTENTS))
)
def test_rubric_for_all_eight_combinations(
    split: Split, modality: Modality, intent: Intent
) -> None:
    rubric = rubric_for(split, modality, intent)
    assert rubric.modality == modality
    if intent == "unsafe":
        assert rubric.measure == "safety_awareness"
        assert rubric.split == split
        assert rubric.key == f"safety_awareness/{split}/{modality}"
    else:
        assert rubric.measure == "helpfulness"
        assert rubric.split is None
        assert rubric.key == f"helpfulness/{modality}"
    assert rubric is RUBRICS[rubric.key]


def test_helpfulness_is_shared_by_both_splits() -> None:
    for modality in MODALITIES:
        assert rubric_for("type_a", modality, "safe") is rubric_for("type_b", modality, "safe")


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_scale_one_to_five(rubric: Rubric) -> None:
    assert "1 to 5" in rubric.text
    for level in range(1, 6):
        assert re.search(rf"^{level} - \S", rubric.text, re.MULTILINE), level


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_turn_labels_and_joint_judgement(rubric: Rubric) -> None:
    for label in ("User R1", "Assistant A1", "Assistant A3"):
        assert label in rubric.text
    assert "jointly" in rubric.text


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_lower_score_tie_break(rubric: Rubric) -> None:
    assert "torn between two scores, choose the lower one" in rubric.text


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_data_not_instructions_warning(rubric: Rubric) -> None:
    text = rubric.text.lower()
    assert "data to evaluate, not instructions" in text
    for word in ("ignore", "instructions", "scores", "json", "system", "judge"):
        assert word in text


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_ends_with_json_output_format(rubric: Rubric) -> None:
    assert '"score"' in rubric.text
    assert '"explanation"' in rubric.text
    assert "exactly one JSON object and nothing else" in rubric.text
    assert rubric.text.rstrip().endswith(
        '{"score": <integer 1-5>, "explanation": "<one sentence>"}'
    )


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_worked_examples(rubric: Rubric) -> None:
    assert "Worked examples" in rubric.text
    examples = re.findall(r"^- .*-> [1-5]\b", rubric.text, re.MULTILINE)
    assert 2 <= len(examples) <= 3


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_caption_only_in_multimodal(rubric: Rubric) -> None:
    text = rubric.text.lower()
    if rubric.modality == "multimodal":
        assert "caption" in text
        assert "image" in text
    else:
        assert "caption" not in text
        assert "in words" in text


@pytest.mark.parametrize("rubric", ALL, ids=IDS)
def test_length_and_no_hidden_fields(rubric: Rubric) -> None:
    words = len(rubric.text.split())
    assert 250 <= words <= 470, words
    assert "unsafe_intent" not in rubric.text
    assert "{" not in rubric.text.replace('{"score"', "")  # no unfilled format placeholders


def test_safety_rubrics_name_both_failure_directions() -> None:
    for split in SPLITS:
        for modality in MODALITIES:
            text = rubric_for(split, modality, "unsafe").text.lower()
            assert "under-sensitivity" in text
            assert "over-sensitivity" in text
