"""The paper's five inference-time defences, as wrappers around the model under test.

The paper publishes no code for them; these are our implementations of each idea (see
docs/defences.md for how each differs from its authors' code):

- `dpp`: a defensive prompt patch appended to every user turn: by default DPP's published
  Llama-2 suffix (`mtmcs.data.defence_texts`), or ours (`--defense-text ours`);
- `adashield-s`: a static instruction to inspect image and text for harmful intent: by
  default AdaShield's published prompt after the query (query, prompt, query), or ours
  before the newest user turn; `adashield-a` retrieves the defence prompt of our pool whose
  example attack query is nearest to the query (sentence embeddings, bag-of-words without
  the `categories` extra), leaves the query unchanged below a similarity threshold, or asks
  the run's judge to choose;
- `self-reflection`: draft, self-check against the whole conversation, revise: three
  calls per answer, in a row; a question is revised into its own answer format;
- `cot`: reason about intent and risk first, inside tags that are stripped from the visible
  reply (the reasoning is kept in the store); a question asks for its answer format after
  the tags; reasoning cut off is an unfinished answer, kept and counted, never a failure
  (docs/defences/cot-self-reflection.md);
- `immune`: Immune's reward-guided decoding (top-k next tokens rescored by logit + w ·
  reward) for `hf/` models, or its best-of-N approximation for the others, with a reward
  model of its own (`--reward-model`, never the judge unless forced); the questions are
  answered by the plain model (docs/defences/immune.md).

Each defence is a small `Defence` class (`base`) in a module of its own, registered by name
in `DEFENCE_CLASSES`;
`DefendedModel` does the common part (which calls are defended, the `model+defence` name).
Each defence declares what one defended call costs (`Defence.calls_per_answer`: calls by
role, and how many in a row), which `mtmcs run --dry-run` counts. A defence's calls of
other models (Immune's rewards, AdaShield-A's choice) go through callers of their own roles
(`reward`, `selector`), are counted apart and stored under items of their own
(`<item>/reward/<k>`, `<item>/selector`). The model's own extra calls (candidates, drafts)
are part of the defended call, kept in its trace, and each counted among the model's calls
(`mtmcs.engine.calls.CountedModel`).
"""

from __future__ import annotations

from typing import get_args

from mtmcs.guardrails.defences.adashield import ADASHIELD_POOL, ADASHIELD_STATIC
from mtmcs.guardrails.defences.base import (
    DEFENCE_CLASSES,
    AskJudge,
    Defence,
    DefenceName,
    Scope,
    register,
)
from mtmcs.guardrails.defences.cot import COT_INSTRUCTION
from mtmcs.guardrails.defences.defended import DefendedModel
from mtmcs.guardrails.defences.immune import IMMUNE_CANDIDATES
from mtmcs.guardrails.defences.prompt_patch import DPP_PATCH
from mtmcs.guardrails.defences.self_reflection import SelfReflection

DEFENCES: tuple[DefenceName, ...] = get_args(DefenceName)
"""Every defence (`--defense`), in the order of `DefenceName`; each registered above."""
assert set(DEFENCES) == set(DEFENCE_CLASSES)

__all__ = [
    "ADASHIELD_POOL",
    "ADASHIELD_STATIC",
    "COT_INSTRUCTION",
    "DEFENCES",
    "DEFENCE_CLASSES",
    "DPP_PATCH",
    "IMMUNE_CANDIDATES",
    "AskJudge",
    "Defence",
    "DefenceName",
    "DefendedModel",
    "Scope",
    "SelfReflection",
    "register",
]
