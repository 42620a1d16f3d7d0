"""Immune's reward-guided decoding on tiny random models built here, offline, on the CPU:
the `hf/` provider's guided path (`HFChat.complete_guided`), the local reward models, and
a whole run with `--immune-mode guided`."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch
from transformers import LlamaForSequenceClassification

from fakeserver import FakeServer, RecordedRequest
from mtmcs.engine.run import RunConfig, run_benchmark
from mtmcs.errors import ConfigError
from mtmcs.guardrails.defences.immune import ImmuneOptions
from mtmcs.models.base import ChatRequest, Completion
from mtmcs.models.guided import (
    ClassifierReward,
    Guidance,
    KeywordReward,
    create_scorer,
    plain_transcript,
)
from mtmcs.models.hf_local import HFChat
from mtmcs.models.images import ImageEncoder
from mtmcs.models.local_prompt import adds_special_tokens, render_prompt
from mtmcs.protocol.messages import Message
from test_hf_provider import PHOTOS
from test_run_e2e import kind_of, standard_reply
from tiny_models import BUILDERS, SEED, TinyModel, tiny_llama, tokenizer

DEVICE = os.environ.get("MTMCS_TEST_DEVICE", "cpu")
TOKENS = 10
QUESTION = (Message("user", "Is it safe to do this here? Please explain the risks.", "cat"),)
TEXT_ONLY = (
    Message("user", "What is in the picture?"),
    Message("assistant", "A cat and a cup of coffee."),
    Message("user", "Is it safe to do this here?"),
)
TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] }}"
    "{% endfor %}"
)


def build_reward(path: Path, *, labels: int = 1, template: str | None = None) -> Path:
    """A tiny random Llama sequence-classification model with its tokenizer."""
    torch.manual_seed(SEED)
    text = tokenizer(["<pad>", "<s>", "</s>"], "<s>", eos_token="</s>", pad_token="<pad>")
    if template is not None:
        text.chat_template = template
    config = tiny_llama(text)
    config.num_labels = labels
    LlamaForSequenceClassification(config).save_pretrained(path)
    text.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {architecture: build(root / architecture) for architecture, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reward(tmp_path_factory.mktemp("tiny-reward"))


@pytest.fixture(scope="module")
def reward(reward_dir: Path) -> ClassifierReward:
    return ClassifierReward(f"hf-reward/{reward_dir}", str(reward_dir), device=DEVICE)


def open_chat(model: TinyModel) -> HFChat:
    return HFChat(
        model.name, str(model.path), images=ImageEncoder(PHOTOS.__getitem__), device=DEVICE
    )


def greedy(chat: HFChat, messages: Sequence[Message], tokens: int = TOKENS) -> Completion:
    return asyncio.run(chat.complete(ChatRequest(tuple(messages), tokens, 0.0)))


def guided(
    chat: HFChat,
    messages: Sequence[Message],
    guidance: Guidance,
    tokens: int = TOKENS,
    temperature: float | None = None,
) -> Completion:
    request = ChatRequest(tuple(messages), tokens, temperature, seed=3)
    return asyncio.run(chat.complete_guided(request, guidance))


class Recording:
    """A scorer that records what it is asked and answers with `reward(reply)`."""

    def __init__(self, reward: Any = lambda reply: 0.0) -> None:
        self.name = "recording"
        self.reward = reward
        self.calls: list[tuple[list[Sequence[Message]], list[str]]] = []

    def score(self, contexts: Sequence[Sequence[Message]], replies: Sequence[str]) -> list[float]:
        self.calls.append((list(contexts), list(replies)))
        return [float(self.reward(reply)) for reply in replies]


# --- the guided path of the hf/ provider --------------------------------------------------


@pytest.mark.parametrize("architecture", list(BUILDERS))
def test_guidance_with_weight_zero_decodes_greedily(
    architecture: str, tiny: dict[str, TinyModel], reward: ClassifierReward
) -> None:
    chat = open_chat(tiny[architecture])
    for messages in (QUESTION, TEXT_ONLY):
        plain = greedy(chat, messages)
        recording = Recording(lambda reply: 1000.0 * len(reply))  # ignored at weight 0
        assert guided(chat, messages, Guidance(recording, top_k=5, weight=0.0)).text == plain.text
        assert recording.calls  # the reward model was asked at every step
        assert all(tuple(c) == messages for contexts, _ in recording.calls for c in contexts)
        # The real classifier too: still greedy at weight 0.
        assert guided(chat, messages, Guidance(reward, top_k=3, weight=0.0)).text == plain.text
    asyncio.run(chat.aclose())


def test_a_reward_for_one_token_makes_it_the_choice(tiny: dict[str, TinyModel]) -> None:
    chat = open_chat(tiny["llava"])
    first = Recording()
    plain = guided(chat, QUESTION, Guidance(first, top_k=5, weight=0.0))
    _, candidates = first.calls[0]  # the first step's top-5 continuations, best logit first
    assert len(candidates) == 5 and plain.text.startswith(candidates[0])
    favoured = next(c for c in candidates[1:] if c and not candidates[0].startswith(c))
    # Only the favoured first token is rewarded, and by far more than any logit gap: the
    # second step on decodes greedily after it.
    chosen = guided(
        chat,
        QUESTION,
        Guidance(Recording(lambda reply: 1000.0 * (reply == favoured)), top_k=5, weight=1.0),
    )
    assert chosen.text.startswith(favoured) and not plain.text.startswith(favoured)
    # A negative weight makes the same reward a penalty: the greedy reply again.
    penalised = guided(
        chat,
        QUESTION,
        Guidance(Recording(lambda reply: 1000.0 * (reply == favoured)), top_k=5, weight=-1.0),
    )
    assert penalised.text == plain.text
    # A token outside the top-k is never chosen, whatever its reward.
    outside = Recording(lambda reply: 1000.0 * (reply != candidates[0]))
    assert guided(chat, QUESTION, Guidance(outside, top_k=1, weight=1.0)).text == plain.text
    asyncio.run(chat.aclose())


def reference(
    chat: HFChat, messages: Sequence[Message], guidance: Guidance, tokens: int
) -> list[int]:
    """Guided decoding written out step by step, with no cache: the whole sequence through
    the model at each step, the generation config's suppressed tokens at -inf, the top-k
    rescored by logit + weight · reward, the argmax appended."""
    prompt, images = render_prompt(chat.processor, messages, PHOTOS.__getitem__)
    processor, model = chat.processor, chat.model
    inputs = processor(
        text=[prompt],
        images=[list(images)] if images else None,
        return_tensors="pt",
        add_special_tokens=adds_special_tokens(processor.tokenizer, prompt),
    )
    suppressed = model.generation_config.suppress_tokens or []
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    ids, generated = inputs["input_ids"], []
    for _ in range(tokens):
        step = dict(inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
        with torch.inference_mode():
            logits = model(**step).logits[0, -1].float()
            logits[suppressed] = float("-inf")
        top = torch.topk(logits, guidance.top_k)
        replies = [
            processor.tokenizer.decode([*generated, t], skip_special_tokens=True)
            for t in top.indices.tolist()
        ]
        rewards = guidance.scorer.score([messages] * len(replies), replies)
        combined = top.values + guidance.weight * torch.tensor(rewards)
        token = int(top.indices[int(torch.argmax(combined))])
        generated.append(token)
        if token in stops:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return generated


def test_guided_decoding_is_argmax_of_logit_plus_weighted_classifier_reward(
    tiny: dict[str, TinyModel], reward: ClassifierReward
) -> None:
    chat = open_chat(tiny["llava"])
    guidance = Guidance(reward, top_k=4, weight=2.0)
    for messages in (QUESTION, TEXT_ONLY):
        expected = reference(chat, messages, guidance, TOKENS)
        got = guided(chat, messages, guidance)
        tokenizer = chat.processor.tokenizer
        assert got.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert got.output_tokens == len(expected)
        assert got.text != greedy(chat, messages).text or messages is TEXT_ONLY
    asyncio.run(chat.aclose())


def test_guided_requests_batch_together_and_apart(
    tiny: dict[str, TinyModel], reward: ClassifierReward
) -> None:
    """Guided requests of one guidance share a `generate` call, each row rescored with its
    own conversation; plain requests in the same batch stay greedy."""
    chat = open_chat(tiny["llava"])
    guidance = Guidance(reward, top_k=4, weight=2.0)
    alone = [guided(chat, m, guidance).text for m in (QUESTION, TEXT_ONLY)]
    plain = greedy(chat, TEXT_ONLY).text

    async def together() -> list[str]:
        requests = [
            chat.complete_guided(ChatRequest(QUESTION, TOKENS, None, seed=3), guidance),
            chat.complete_guided(ChatRequest(TEXT_ONLY, TOKENS, None, seed=3), guidance),
            chat.complete(ChatRequest(TEXT_ONLY, TOKENS, 0.0)),
        ]
        return [c.text for c in await asyncio.gather(*requests)]

    assert asyncio.run(together()) == [*alone, plain]
    asyncio.run(chat.aclose())


def test_a_temperature_samples_among_the_rescored_top_k(tiny: dict[str, TinyModel]) -> None:
    chat = open_chat(tiny["llava"])
    recording = Recording()
    sampled = guided(chat, QUESTION, Guidance(recording, top_k=3, weight=0.0), temperature=5.0)
    assert (
        sampled.text
        == guided(chat, QUESTION, Guidance(Recording(), top_k=3, weight=0.0), temperature=5.0).text
    )  # the seed makes it reproducible
    for _, replies in recording.calls:  # each step chose one of the previous step's top-3
        assert len(replies) <= 3
    steps = [replies for _, replies in recording.calls]
    for before, after in itertools.pairwise(steps):  # the reply grew by one of the top-3
        assert any(all(a.startswith(b) for a in after) for b in before)
    asyncio.run(chat.aclose())


# --- the local reward models ----------------------------------------------------------------


def test_the_classifier_reward_is_its_logit_on_the_rendered_conversation(
    reward: ClassifierReward, reward_dir: Path
) -> None:
    replies = ["I can't help with that.", "Sure, here is how."]
    scores = reward.score([TEXT_ONLY, TEXT_ONLY], replies)
    assert scores[0] != scores[1]
    model = LlamaForSequenceClassification.from_pretrained(reward_dir)
    for reply, score in zip(replies, scores, strict=True):
        text = reward.render(TEXT_ONLY, reply)
        assert text == plain_transcript(
            [{"role": m.role, "content": m.text} for m in TEXT_ONLY]
            + [{"role": "assistant", "content": reply}]
        )
        ids = reward.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            assert model(**ids).logits[0, 0].item() == pytest.approx(score, abs=1e-4)
    answer = asyncio.run(
        reward.complete(
            ChatRequest((*TEXT_ONLY, Message("assistant", replies[0])), 1, kind="judge")
        )
    )
    assert json.loads(answer.text)["reward"] == pytest.approx(scores[0], abs=1e-4)


def test_the_classifier_uses_its_chat_template(tmp_path: Path) -> None:
    path = build_reward(tmp_path / "templated", template=TEMPLATE)
    scorer = ClassifierReward("hf-reward/x", str(path), device=DEVICE)
    assert scorer.render(TEXT_ONLY[:1], "No.") == "<|user|>What is in the picture?<|assistant|>No."


def test_a_classifier_with_several_outputs_is_refused(tmp_path: Path) -> None:
    path = build_reward(tmp_path / "two", labels=2)
    with pytest.raises(ConfigError, match="has 2 outputs"):
        ClassifierReward("hf-reward/two", str(path), device=DEVICE)
    with pytest.raises(ConfigError, match="cannot load the reward model"):
        ClassifierReward("hf-reward/none", str(tmp_path / "missing"), device=DEVICE)


def test_scorers_by_name(reward_dir: Path) -> None:
    keyword = create_scorer("baseline/keyword")
    assert isinstance(keyword, KeywordReward)
    assert keyword.score([(), ()], ["I'm sorry, but I can't help with that.", "Sure!"]) == [1, 0]
    assert isinstance(create_scorer(f"hf-reward/{reward_dir}", device=DEVICE), ClassifierReward)
    with pytest.raises(ConfigError, match="local reward model"):
        create_scorer("openai/gpt-4o")


# --- a whole run -------------------------------------------------------------------------------


def test_a_guided_run_decodes_turns_under_the_reward_and_records_it(
    tiny: dict[str, TinyModel], reward_dir: Path, tmp_path: Path
) -> None:
    reward_name = f"hf-reward/{reward_dir}"
    config = RunConfig(
        model=tiny["llava"].name,
        judge="baseline/keyword",
        dataset="sample",
        splits=("type_a",),
        limit=1,
        out=tmp_path,
        defense="immune",
        immune=ImmuneOptions(reward_model=reward_name, weight=2.0, top_k=3),
    )
    result = run_benchmark(config)
    assert result.complete
    meta = result.summary["metadata"]
    assert meta["immune"] == {
        "mode": "guided",
        "method": "reward-guided decoding (top-k tokens rescored by logit + w · reward)",
        "reward_model": reward_name,
        "reward_is_judge": False,
        "candidates": None,
        "seeds": None,
        "temperature": None,
        "weight": 2.0,
        "top_k": 3,
        "selection": "argmax of logit + weight · reward over the top-k tokens",
        "questions": "plain model",
    }
    assert "reward" not in meta["calls"]  # the reward model ran inside the model's calls
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT model, kind, trace FROM calls").fetchall()
    model_rows = [r for r in rows if r[1] in ("turn", "mcq", "tf")]
    expected = f"{tiny['llava'].name}+immune[guided, reward {reward_name}, top-k 3, weight 2]"
    assert {model for model, _, _ in model_rows} == {expected}
    for _, kind, trace in model_rows:
        if kind == "turn":
            assert json.loads(trace)[0][0] == "reward-guided decoding"
        else:  # questions: the plain model, no guidance
            assert trace is None


def test_best_of_n_with_a_classifier_reward_keeps_the_candidate_it_scores_highest(
    fake_server: Callable[..., FakeServer], reward_dir: Path, tmp_path: Path
) -> None:
    """An API model's candidates, each scored by the local classifier (its own caller and
    store items); the answer is the candidate of the highest logit."""
    styles = ("I can't help with that.", "Sure, here is how.", "Be careful here.", "No.")

    def reply(request: RecordedRequest) -> str:
        if request.body["model"] == "test-model" and kind_of(request) == "turn":
            return styles[request.body["seed"] % 4]
        return standard_reply(request)

    server = fake_server(reply)
    reward_name = f"hf-reward/{reward_dir}"
    result = run_benchmark(
        RunConfig(
            model="openai-compatible/test-model",
            judge="openai-compatible/judge",
            dataset="sample",
            splits=("type_a",),
            modalities=("unimodal",),
            limit=1,
            out=tmp_path,
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            defense="immune",
            immune=ImmuneOptions(reward_model=reward_name),
        )
    )
    assert result.complete
    assert result.summary["metadata"]["calls"]["reward"]["made"] == 6 * 4
    assert all(r.body["model"] in ("test-model", "judge") for r in server.requests)
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT model, kind, output, trace FROM calls").fetchall()
    rewards = [r for r in rows if r[1] == "reward"]
    assert len(rewards) == 24 and {r[0] for r in rewards} == {reward_name}
    assert all(isinstance(json.loads(r[2])["reward"], float) for r in rewards)
    for _, kind, output, trace in rows:
        if kind != "turn":
            continue
        steps = json.loads(trace)
        scored = [(float(label.rsplit("reward ", 1)[1].rstrip(")")), text) for label, text in steps]
        assert output == max(scored, key=lambda pair: pair[0])[1]
        assert len({text for _, text in scored}) == 4  # seeds 0-3: four different candidates
