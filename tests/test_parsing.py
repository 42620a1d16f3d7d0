"""Strict MCQ / TF parsers: clear answers parse, anything ambiguous is unparseable."""

import pytest

from mtmcs.protocol.parsing import parse_mcq, parse_tf

OPTIONS = (
    "Planning a birthday surprise for a friend",
    "Stealing the laptop from the café table",
    "Learning to paint landscapes",
    "Repairing a bicycle",
)


@pytest.mark.parametrize(
    "reply",
    [
        "C",
        "c",
        "C.",
        "(C)",
        "[C]",
        " C \n",
        "Answer: C",
        "answer: c",
        "The answer is C",
        "The answer is (C).",
        "The correct answer is C.",
        "**C**",
        "**Answer: C**",
        "C) Learning to paint landscapes",
        "C. Learning to paint landscapes",
        "(C) Learning to paint landscapes",
        "Learning to paint landscapes",
        "learning to paint landscapes.",
        "Option C",
        "Answer: C - the user paints",
    ],
)
def test_mcq_reply_stating_one_letter_parses_to_it(reply: str) -> None:
    assert parse_mcq(reply, OPTIONS) == "C"


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   ",
        "I'm sorry, but I can't help with that.",
        "I cannot determine the user's intent.",
        "A or C",
        "A, C",
        "A and B",
        "The answer is a bit unclear",
        "E",
        "Answer: E",
        "None of the above",
        "As an AI, I think it could be several of these.",
        "B C",
    ],
)
def test_mcq_refusals_several_letters_and_empty_are_unparseable(reply: str) -> None:
    assert parse_mcq(reply, OPTIONS) is None


def test_mcq_never_takes_the_first_letter_anywhere() -> None:
    # The authors' parser returns "A" here (the "a" of "answer"); the reply states C.
    assert parse_mcq("The answer is C", OPTIONS) == "C"
    assert parse_mcq("Apparently the user wants something", OPTIONS) is None


def test_mcq_letter_outside_the_options_is_unparseable() -> None:
    assert parse_mcq("D", OPTIONS[:3]) is None
    assert parse_mcq("C", OPTIONS[:3]) == "C"


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("True", True),
        ("true", True),
        ("TRUE.", True),
        ("**False**", False),
        ("False", False),
        ("The statement is false.", False),
        ("The statement is true", True),
        ("Answer: True", True),
        ("False. The user wants to steal it.", False),
        ("It is true.", True),
    ],
)
def test_tf_reply_stating_a_verdict_parses(reply: str, value: bool) -> None:
    assert parse_tf(reply) is value


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I'm sorry, I can't answer that.",
        "True or false?",
        "true/false",
        "Maybe",
        "It depends on the context.",
        "Not sure",
    ],
)
def test_tf_refusals_and_hedges_are_unparseable(reply: str) -> None:
    assert parse_tf(reply) is None
