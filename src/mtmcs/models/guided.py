"""Reward-guided decoding for local transformers models: Immune's mechanism.

At every step of generation the model's `top_k` most likely next tokens are kept; each
continuation (the reply so far plus that token) is scored by a reward model given the
conversation, and the token chosen is the argmax of `logit + weight · reward` (or, when a
temperature is set, a sample from the softmax of those scores over the top-k). With weight
0 this is greedy decoding. It is done by a `transformers` logits processor
(`RewardGuidance`), so every architecture the `hf/` provider runs (its KV cache, images,
Q-Former) decodes as usual and only the choice of each token changes
(`mtmcs.models.hf_local.HFChat.complete_guided`).

The reward model is local, since it scores `top_k` continuations at every token:

- `ClassifierReward` (`hf-reward/<hub id or dir>`): a sequence-classification model with
  one output (a reward model such as Immune's), reading the conversation and the reply as
  text through its tokenizer's chat template (plain `User:`/`Assistant:` lines without
  one); its logit is the reward. It also scores whole candidates for the best-of-N
  approximation, as a chat model whose answer is `{"reward": <float>}`.
- `KeywordReward` (`baseline/keyword`): 1 when the reply so far holds a refusal phrase,
  else 0: a toy signal for offline runs, not a safety reward model.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LogitsProcessor

from mtmcs.errors import ConfigError
from mtmcs.models.base import CallFailed, ChatRequest, Completion
from mtmcs.models.baseline import is_refusal
from mtmcs.models.local_prompt import adds_special_tokens, short_cause
from mtmcs.protocol.messages import Message

CLASSIFIER_PREFIX = "hf-reward/"
"""Reward-model names of local sequence-classification reward models."""

Context = Sequence[Message]
"""The conversation a reply answers (text only: reward models here read no image)."""


class RewardScorer(Protocol):
    """Scores replies (whole or partial) to conversations, higher = safer; called from
    the generation thread, so synchronous."""

    name: str

    def score(self, contexts: Sequence[Context], replies: Sequence[str]) -> list[float]:
        """One reward per (context, reply) pair."""
        ...


@dataclass(frozen=True, slots=True)
class Guidance:
    """How tokens are chosen: the `top_k` most likely are rescored as `logit + weight ·
    reward` by `scorer`; the argmax is taken (greedy), or sampled from when the request
    carries a temperature."""

    scorer: RewardScorer
    top_k: int = 5
    weight: float = 0.5


class RewardGuidance(LogitsProcessor):
    """The logits processor of one guided `generate` call over a batch.

    `contexts[i]` is the conversation of row i; `decode` turns token ids into text; rows
    whose reply already holds a token of `stop` are finished (`generate` pads them) and
    are not scored. Every token outside a row's top-k gets -inf; each of the top-k gets
    its logit plus `weight ·` the reward of the reply continued by it.
    """

    def __init__(
        self,
        guidance: Guidance,
        contexts: Sequence[Context],
        decode: Callable[[list[int]], str],
        stop: frozenset[int],
    ) -> None:
        self.guidance = guidance
        self.contexts = tuple(contexts)
        self.decode = decode
        self.stop = stop
        self.scored = 0  # continuations scored, over every step
        self._start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        if self._start is None:  # the first call: what is there is the prompt
            self._start = input_ids.shape[1]
        k = min(self.guidance.top_k, scores.shape[-1])
        top_scores, top_tokens = torch.topk(scores, k, dim=-1)
        rows: list[int] = []
        contexts: list[Context] = []
        replies: list[str] = []
        for row, generated in enumerate(input_ids[:, self._start :].tolist()):
            if self.stop.intersection(generated):
                continue  # finished: generate pads it whatever we say
            rows.append(row)
            for token, logit in zip(
                top_tokens[row].tolist(), top_scores[row].tolist(), strict=True
            ):
                if logit == float("-inf"):
                    continue  # a suppressed token: it stays out
                contexts.append(self.contexts[row])
                replies.append(self.decode([*generated, token]))
        rewards = iter(self.guidance.scorer.score(contexts, replies) if replies else [])
        self.scored += len(replies)
        guided = scores.clone()
        for row in rows:
            combined = top_scores[row].clone()
            for i, logit in enumerate(top_scores[row].tolist()):
                if logit != float("-inf"):
                    combined[i] = logit + self.guidance.weight * next(rewards)
            guided[row] = float("-inf")
            guided[row, top_tokens[row]] = combined
        return guided


class KeywordReward:
    """`baseline/keyword` as a token-level reward: 1 when the reply so far holds a refusal
    phrase, else 0 (a heuristic for offline runs, not a safety reward model)."""

    def __init__(self, name: str = "baseline/keyword") -> None:
        self.name = name

    def score(self, contexts: Sequence[Context], replies: Sequence[str]) -> list[float]:
        return [float(is_refusal(reply)) for reply in replies]


def plain_transcript(turns: Sequence[dict[str, str]]) -> str:
    """A conversation as `User: …` / `Assistant: …` paragraphs (for a tokenizer without a
    chat template)."""
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(f"{names[t['role']]}: {t['content']}" for t in turns)


class ClassifierReward:
    """A local sequence-classification reward model (`hf-reward/<hub id or dir>`).

    Loaded with `AutoModelForSequenceClassification` (no remote code); it must have one
    output, its logit being the reward. The conversation and the reply are rendered by the
    tokenizer's chat template (user and assistant messages, text only), cut from the left
    past the model's positions so the reply is always read. As a chat model (`complete`,
    for the best-of-N approximation) the last message of a request is the reply scored and
    the answer is `{"reward": <float>}`.
    """

    def __init__(
        self, name: str, source: str, *, device: str | None = None, dtype: str = "auto"
    ) -> None:
        self.name = name
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=dtype, device_map=None if device == "cpu" else device
            )
        except Exception as error:  # not found, not a classifier, a missing library
            raise ConfigError(
                f"cannot load the reward model {name}: {short_cause(error)}"
            ) from error
        labels = self.model.config.num_labels
        if labels != 1:
            raise ConfigError(
                f"the reward model {name} has {labels} outputs; a reward model has one (its "
                "logit is the reward)"
            )
        tokenizer = self.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = tokenizer.pad_token_id
        tokenizer.truncation_side = "left"
        positions = getattr(self.model.config, "max_position_embeddings", None)
        limits = [n for n in (positions, tokenizer.model_max_length) if n and n < 10**9]
        self._max_length = min(limits) if limits else None
        self._lock = threading.Lock()  # one forward at a time (threads share the model)

    def render(self, context: Context, reply: str) -> str:
        """The text the reward model reads: the conversation, then `reply` as the
        assistant's (by its chat template, or as plain paragraphs without one)."""
        turns = [{"role": m.role, "content": m.text} for m in context]
        turns.append({"role": "assistant", "content": reply})
        if self.tokenizer.chat_template:
            return str(self.tokenizer.apply_chat_template(turns, tokenize=False))
        return plain_transcript(turns)

    def score(self, contexts: Sequence[Context], replies: Sequence[str]) -> list[float]:
        texts = [self.render(c, r) for c, r in zip(contexts, replies, strict=True)]
        if not texts:
            return []
        inputs = self.tokenizer(
            texts,
            padding=True,
            truncation=self._max_length is not None,
            max_length=self._max_length,
            return_tensors="pt",
            add_special_tokens=adds_special_tokens(self.tokenizer, texts[0]),
        )
        with self._lock, torch.inference_mode():
            logits = self.model(**inputs.to(self.model.device)).logits
        return [float(value) for value in logits[:, 0].float().tolist()]

    async def complete(self, request: ChatRequest) -> Completion:
        """The reward of the request's last message (an assistant reply) given the rest."""
        *context, reply = request.messages
        if reply.role != "assistant":
            raise CallFailed("a reward request ends with the assistant reply to score")
        try:
            (value,) = await asyncio.to_thread(self.score, [context], [reply.text])
        except Exception as error:
            raise CallFailed(f"reward model failed: {short_cause(error)}") from error
        return Completion(json.dumps({"reward": value}), "stop")

    async def aclose(self) -> None:
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def create_scorer(name: str, *, device: str | None = None, dtype: str = "auto") -> RewardScorer:
    """The local reward model `name` for guided decoding: `hf-reward/<hub id or dir>` or
    `baseline/keyword`; `ConfigError` for anything else."""
    from mtmcs.models.registry import local_model_source

    if name == "baseline/keyword":
        return KeywordReward(name)
    if name.startswith(CLASSIFIER_PREFIX) and len(name) > len(CLASSIFIER_PREFIX):
        source = local_model_source(name, name[len(CLASSIFIER_PREFIX) :])
        return ClassifierReward(name, source, device=device, dtype=dtype)
    raise ConfigError(
        f"guided decoding scores the top-k continuations at every token, so it needs a "
        f"local reward model (hf-reward/<hub id or dir>, or baseline/keyword); {name} is not "
        "one"
    )
