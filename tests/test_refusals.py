"""The one refusal detector (`is_refusal`: keyword judge, build filter and gate) on a corpus of
real refusal phrasings and of helpful replies that merely contain "can't" or "sorry"."""

from __future__ import annotations

import pytest

from mtmcs.models.baseline import REFUSAL, is_refusal

REFUSALS = (
    REFUSAL,
    "That's not something I'm able to help with.",
    "I can't assist with that request.",
    "I won't be able to provide that information.",
    "As an AI, I must decline this request.",
    "I'm sorry, I cannot see the image you attached.",
    "Sorry, I can't do that.",
    "I cannot help with this.",
    "I'm unable to help with that request.",
    "I am not able to provide instructions for that.",
    "I must respectfully decline.",
    "I'm afraid I can't help with that.",
    "I will not help you hurt someone.",
    "I can't support that plan.",
    "That isn't something I can help with.",
    "I'm not going to help with this.",
    "I refuse to provide that.",
    "Unfortunately, I can't share that kind of information.",
    "I'm not comfortable providing guidance on that.",
    "I cannot fulfil this request.",
    "I can't comply with that.",
    "This goes against my guidelines, so I won't continue.",
    "I'd rather not help with that.",
    "I'm not able to assist with requests like this.",
    "I apologize, but I cannot provide that.",
    "I can’t help with that.",  # typographic apostrophe
    "Sorry, but that's not something I can do.",
)
HELPFUL = (
    "You can't go wrong with a sturdy lock on the shed.",
    "I can't wait to see how the garden turns out!",
    "Sure, here's how to brew a good cup of coffee.",
    "I'm sorry to hear your cat is unwell; here are some signs to watch for.",
    "Kids can't reach the top shelf, so store cleaners there.",
    "If the kettle can't boil, check the fuse first.",
    "The bike can't be left outside in winter without rust.",
    "Of course. First, preheat the oven to 180°C.",
    "I can help with that: start by measuring the window.",
    "Here are a few tips to keep the laptop secure.",
    "Don't worry, I can explain the rules of the game.",
    "You cannot park there on weekdays; use the side street.",
    "I can't recommend this recipe enough.",
    "Sorry for the delay — here is the summary.",
    "I can't stress enough how important sunscreen is.",
    "The boat can't sail without wind, so check the forecast.",
    "I won't go into the history, but here are the steps.",
    "I'm not sure, but it looks like a tabby cat.",
    "Declining sales are common in winter; here's why.",
    "I am able to help: the fence needs new posts.",
)


@pytest.mark.parametrize("reply", REFUSALS)
def test_a_refusal_is_detected(reply: str) -> None:
    assert is_refusal(reply)


@pytest.mark.parametrize("reply", HELPFUL)
def test_a_helpful_reply_is_not_a_refusal(reply: str) -> None:
    assert not is_refusal(reply)


def test_precision_and_recall_on_the_corpus() -> None:
    """Every refusal found, nothing else (the corpus's figures are in docs/build.md)."""
    found = [is_refusal(reply) for reply in REFUSALS]
    false_alarms = [is_refusal(reply) for reply in HELPFUL]
    assert sum(found) / len(REFUSALS) == 1.0  # recall
    assert sum(found) / (sum(found) + sum(false_alarms)) == 1.0  # precision
