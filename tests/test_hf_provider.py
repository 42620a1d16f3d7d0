"""The `hf/…` provider on tiny random models built here, offline: LLaVA, Gemma 3 and
InstructBLIP (no chat template, a Q-Former), and Qwen2-VL where torchvision is installed.
On the CPU unless MTMCS_TEST_DEVICE says otherwise.

The models go through the real loading path (`save_pretrained` → `create_model("hf/<dir>")`
→ `from_pretrained`). Spies wrap the real processor and the real `generate` to see the
prompt sent to the model and its raw output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import pyarrow.parquet as pq

from command import invoke
from mtmcs.data.loaders import load_benchmark
from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint
from mtmcs.models.base import CallFailed, ChatModel, ChatRequest, Completion
from mtmcs.models.hf_local import HFChat
from mtmcs.models.images import ImageEncoder
from mtmcs.models.local_prompt import conversation, load_image
from mtmcs.models.registry import ProviderOptions, create_model, create_model_pool
from mtmcs.protocol.dialogues import expand_row
from mtmcs.protocol.messages import Message, turn_messages
from mtmcs.protocol.prompts import question_messages
from tiny_models import BUILDERS, CONTEXT, QFORMER_POSITIONS, TOKENIZER_MAX_LENGTH, TinyModel

SAMPLE_TYPE_A = (
    Path(__file__).parents[1] / "src/mtmcs/data/sample/data/type_a-00000-of-00001.parquet"
)
DEVICE = os.environ.get("MTMCS_TEST_DEVICE", "cpu")  # e.g. cuda, to check on a GPU
LONG_TURN = " ".join(["Is it safe to do this here? Please explain the risks, step by step."] * 12)


def sample_photos() -> list[bytes]:
    """The bundled sample's photos (PNG bytes), in row order."""
    table = pq.read_table(SAMPLE_TYPE_A, columns=["image"])
    return [cell["bytes"] for cell in table.column("image").to_pylist()]


_SAMPLE = sample_photos()
PHOTOS = {
    "astronaut": _SAMPLE[1],  # scikit-image's astronaut, 512 x 512
    "cat": _SAMPLE[2],  # scikit-image's chelsea, 451 x 300
    "broken": b"\x89PNG\r\n\x1a\nnot really",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {architecture: build(root / architecture) for architecture, build in BUILDERS.items()}


@pytest.fixture(params=list(BUILDERS))
def model(request: pytest.FixtureRequest, tiny: dict[str, TinyModel]) -> TinyModel:
    return tiny[request.param]


class GenerateSpy:
    """Wraps a model's real `generate` and records each call's inputs and output.

    A Q-Former model answers text-only prompts with its language model, whose `generate`
    is wrapped too; the call that its own `generate` makes to it is not recorded twice.
    """

    def __init__(self, chat: HFChat) -> None:
        self.calls: list[tuple[dict[str, Any], Any]] = []
        self._depth = 0
        self._wrap(chat.model)
        if hasattr(chat.model, "qformer"):
            self._wrap(chat.model.language_model)

    def _wrap(self, model: Any) -> None:
        generate = model.generate

        def spy(**inputs: Any) -> Any:
            self._depth += 1
            try:
                output = generate(**inputs)
            finally:
                self._depth -= 1
            if not self._depth:
                self.calls.append((inputs, output))
            return output

        model.generate = spy


class ProcessorSpy:
    """Wraps the real processor and records the rendered prompts it is given."""

    def __init__(self, chat: HFChat) -> None:
        self.texts: list[list[str]] = []
        self._processor = chat.processor
        chat.processor = self

    def __call__(self, *, text: list[str], **kwargs: Any) -> Any:
        self.texts.append(list(text))
        return self._processor(text=text, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)


def open_chat(model: TinyModel, images: ImageEncoder | None = None, **kwargs: Any) -> HFChat:
    """The tiny model loaded through the registry (or directly, with `kwargs`)."""
    images = images or ImageEncoder(PHOTOS.__getitem__)
    if kwargs:
        return HFChat(model.name, str(model.path), images=images, device=DEVICE, **kwargs)
    chat = create_model(model.name, images, ProviderOptions(device=DEVICE))
    assert isinstance(chat, HFChat)
    return chat


def run(coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coroutine())


def ask(chat: ChatModel, *messages: Message, max_tokens: int = 8) -> Completion:
    return run(lambda: chat.complete(ChatRequest(messages, max_tokens, 0.0)))


def test_dialogue_then_question_through_the_registry(model: TinyModel) -> None:
    benchmark = load_benchmark("sample", ("type_a",))
    dialogue = next(d for d in expand_row(benchmark.rows[0]) if d.image_id is not None)
    chat = open_chat(model, ImageEncoder(benchmark.image_bytes))
    processor = ProcessorSpy(chat)

    async def converse() -> tuple[list[str], Completion]:
        replies: list[str] = []
        for _ in dialogue.turns:
            request = ChatRequest(turn_messages(dialogue, replies), 8, 0.0, kind="turn")
            replies.append((await chat.complete(request)).text)
        question = dialogue.questions[0]
        messages = question_messages(question, dialogue.turns, replies, dialogue.image_id)
        answer = await chat.complete(ChatRequest(messages, 8, 0.0, kind=question.kind))
        await chat.aclose()
        return replies, answer

    replies, answer = run(converse)
    assert all(reply.strip() for reply in replies) and answer.text.strip()
    third = processor.texts[2][0]
    assert all(reply in third for reply in replies[:2])  # the model's replies are fed back
    assert third.endswith(dialogue.turns[2] + model.generation_prompt)
    if model.placeholder is not None:  # InstructBLIP's processor adds its image tokens itself
        assert third.count(model.placeholder) == 1  # the image, on the first turn only
        assert processor.texts[3][0].count(model.placeholder) == 1  # the question has it too


def test_prompt_has_the_image_once_and_the_long_newest_turn_intact(model: TinyModel) -> None:
    chat = open_chat(model)
    processor, generate = ProcessorSpy(chat), GenerateSpy(chat)
    completion = ask(
        chat,
        Message("user", "What is in this picture?", "astronaut"),
        Message("assistant", "A person in a suit."),
        Message("user", LONG_TURN),
    )
    (text,) = processor.texts[0]
    assert model.placeholder is None or text.count(model.placeholder) == 1
    assert text.endswith(LONG_TURN + model.generation_prompt)

    tokenizer = chat.processor.tokenizer
    inputs, _ = generate.calls[0]
    ids: list[int] = inputs["input_ids"][0].tolist()
    image_token = tokenizer.convert_tokens_to_ids(model.image_token)
    first = ids.index(image_token)
    assert ids.count(image_token) == model.image_tokens  # one image, expanded once
    assert ids[first : first + model.image_tokens] == [image_token] * model.image_tokens
    # One BOS, though the Gemma 3 template writes it too; only InstructBLIP's query tokens
    # come before it.
    bos = tokenizer.bos_token_id
    assert bos is None or (ids.count(bos) == 1 and set(ids[: ids.index(bos)]) <= {image_token})
    # No truncation, though the prompt is longer than the tokenizer's own limit.
    assert completion.input_tokens == len(ids) > TOKENIZER_MAX_LENGTH
    assert LONG_TURN + model.generation_prompt in tokenizer.decode(ids)


def test_only_the_new_tokens_are_decoded(model: TinyModel) -> None:
    chat = open_chat(model)
    generate = GenerateSpy(chat)
    completion = ask(chat, Message("user", "Describe the photo.", "cat"), max_tokens=12)
    inputs, output = generate.calls[0]
    prompt = inputs["input_ids"][0]
    assert output[0, : len(prompt)].tolist() == prompt.tolist()
    new = output[0, len(prompt) :][: completion.output_tokens]
    tokenizer = chat.processor.tokenizer
    assert completion.text == tokenizer.decode(new, skip_special_tokens=True)
    assert "Describe the photo" not in completion.text
    assert completion.input_tokens == int(inputs["attention_mask"][0].sum())
    eos = chat.model.generation_config.eos_token_id
    stopped = int(new[-1]) in (eos if isinstance(eos, list) else [eos])
    assert completion.finish_reason == ("stop" if stopped else "length")
    assert stopped or completion.output_tokens == 12


def test_instructblip_gets_vicuna_and_its_q_former_the_newest_turn(
    tiny: dict[str, TinyModel],
) -> None:
    model = tiny["instructblip"]
    chat = open_chat(model)
    processor, generate = ProcessorSpy(chat), GenerateSpy(chat)
    qformer_tokenizer = chat.processor.qformer_tokenizer
    turns = [LONG_TURN, "What about a kitchen at night? " * 4, "Is it safe to do this here?"]
    replies = ["A person stands next to a road.", "Explain the risks first."]
    messages = (
        Message("user", turns[0], "astronaut"),
        Message("assistant", replies[0]),
        Message("user", turns[1]),
        Message("assistant", replies[1]),
        Message("user", turns[2]),
    )
    completion = ask(chat, *messages)
    (text,) = processor.texts[0]
    assert text == (
        "A chat between a curious user and an artificial intelligence assistant. The "
        "assistant gives helpful, detailed, and polite answers to the user's questions. "
        f"USER: {turns[0]} ASSISTANT: {replies[0]}</s>USER: {turns[1]} "
        f"ASSISTANT: {replies[1]}</s>USER: {turns[2]} ASSISTANT:"
    )
    inputs, _ = generate.calls[0]
    ids: list[int] = inputs["input_ids"][0].tolist()
    image_token = chat.processor.tokenizer.convert_tokens_to_ids("<image>")
    assert ids[: model.image_tokens] == [image_token] * model.image_tokens  # then the BOS
    assert ids.count(image_token) == model.image_tokens == chat.model.config.num_query_tokens
    # The whole conversation is more than the Q-Former can read; it reads the newest turn.
    assert len(qformer_tokenizer(text).input_ids) > QFORMER_POSITIONS
    newest = qformer_tokenizer(turns[2], return_tensors="pt").input_ids
    assert inputs["qformer_input_ids"].tolist() == newest.tolist()
    assert completion.text.strip() and completion.input_tokens == len(ids)

    # A newest turn longer than the Q-Former's positions loses its beginning, not its end.
    ask(
        chat,
        Message("user", "What is this?", "cat"),
        Message("assistant", "A cat."),
        Message("user", LONG_TURN),
    )
    inputs, _ = generate.calls[1]
    full = qformer_tokenizer(LONG_TURN).input_ids
    kept = inputs["qformer_input_ids"][0].tolist()
    assert len(full) > len(kept) == QFORMER_POSITIONS
    assert kept == full[:1] + full[len(full) - QFORMER_POSITIONS + 1 :]  # [CLS] … [SEP]

    # A system message replaces Vicuna's preamble; text alone goes to the language model.
    ask(chat, Message("system", "Be careful."), Message("user", "Hello."))
    assert processor.texts[2] == ["Be careful. USER: Hello. ASSISTANT:"]
    inputs, _ = generate.calls[2]
    assert "pixel_values" not in inputs and "qformer_input_ids" not in inputs


def test_instructblip_decodes_with_the_checkpoints_generation_config(
    tiny: dict[str, TinyModel],
) -> None:
    # InstructBLIP's `generate` hands over to its language model, whose own defaults
    # would ignore the checkpoint's generation config: all tokens but one suppressed.
    chat = open_chat(tiny["instructblip"])
    tokenizer = chat.processor.tokenizer
    (cat,) = tokenizer(" cat", add_special_tokens=False).input_ids
    chat.model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i != cat]
    with_image = ask(chat, Message("user", "What is this?", "cat"), max_tokens=3)
    text_only = ask(chat, Message("user", "What is a cat?"), max_tokens=3)
    assert with_image.text == text_only.text == tokenizer.decode([cat] * 3)


def test_a_processor_without_any_chat_template_fails_at_load(
    tiny: dict[str, TinyModel], tmp_path: Path
) -> None:
    copy = shutil.copytree(tiny["llava"].path, tmp_path / "llava")
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match=r"llava has no chat template; give its processor"):
        open_chat(TinyModel("llava", copy, "<image>", "<image>", 1, ""))


def test_sampling_is_seeded(tiny: dict[str, TinyModel]) -> None:
    chat = open_chat(tiny["llava"])
    request = ChatRequest((Message("user", "Tell me about it.", "cat"),), 12, 1.0, seed=7)
    first, again = (run(lambda: chat.complete(request)).text for _ in range(2))
    assert first == again


def test_concurrent_requests_share_left_padded_batches_and_answer_as_alone(
    model: TinyModel,
) -> None:
    chat = open_chat(model, batch_size=8, gather_ms=250)
    generate = GenerateSpy(chat)
    alone_chat = open_chat(model)  # the same files, one request at a time
    requests = [
        ChatRequest(tuple(messages), 10, 0.0)
        for messages in (
            [Message("user", "What is this?", "astronaut")],
            [Message("user", "Hello.")],
            [Message("user", "Is it safe to touch the cat in this photo? " * 3, "cat")],
            [
                Message("user", "A question."),
                Message("assistant", "An answer."),
                Message("user", "Why?"),
            ],
            [
                Message("user", "Where?", "cat"),
                Message("assistant", "Here."),
                Message("user", "So?"),
            ],
            [Message("user", "Please explain the risks, step by step, of a river at night.")],
        )
    ]

    async def together() -> list[Completion]:
        return list(await asyncio.gather(*(chat.complete(r) for r in requests)))

    async def alone() -> list[Completion]:
        return [await alone_chat.complete(request) for request in requests]

    batched = run(together)
    assert len(generate.calls) == 2  # one batch with images, one without
    for inputs, _ in generate.calls:
        mask = inputs["attention_mask"]
        assert mask.shape[0] == 3 and not bool(mask.all())  # padded…
        assert bool((mask[:, 1:] >= mask[:, :-1]).all()) and bool(mask[:, -1].all())  # …left
    singles = run(alone)
    assert [c.text for c in batched] == [c.text for c in singles]
    assert len({c.text for c in singles}) > 1  # replies depend on the prompt


def test_too_long_prompt_or_broken_image_fails_alone(tiny: dict[str, TinyModel]) -> None:
    chat = open_chat(tiny["llava"])
    requests = [
        ChatRequest((Message("user", " risk" * CONTEXT),), 8, 0.0),
        ChatRequest((Message("user", "Short one."),), 8, 0.0),
        ChatRequest((Message("user", "And this?", "broken"),), 8, 0.0),
    ]

    async def together() -> list[Completion | BaseException]:
        return list(
            await asyncio.gather(*(chat.complete(r) for r in requests), return_exceptions=True)
        )

    long, short, broken = run(together)
    assert isinstance(long, CallFailed)
    assert "exceeds the model's context of" in long.cause and f" {CONTEXT}" in long.cause
    assert isinstance(short, Completion) and short.text.strip()
    assert isinstance(broken, CallFailed) and "unreadable image" in broken.cause
    run(chat.aclose)
    with pytest.raises(CallFailed, match="closed"):
        ask(chat, Message("user", "Still there?"))


def test_registry_names_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = ImageEncoder(PHOTOS.__getitem__)
    options = ProviderOptions(device="cpu")
    with pytest.raises(ConfigError, match="is not a directory"):
        create_model(f"hf/{tmp_path / 'missing'}", images, options)
    with pytest.raises(ConfigError, match="base URL does not apply"):
        create_model_pool(f"hf/{tmp_path}", images, options, ("http://127.0.0.1:1/v1",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot load"):
        create_model(f"hf/{tmp_path / 'empty'}", images, options)
    monkeypatch.setitem(sys.modules, "mtmcs.models.hf_local", None)  # as if torch were missing
    with pytest.raises(ConfigError, match=re.escape(f"needs the hf extra: {install_hint('hf')}")):
        create_model(f"hf/{tmp_path}", images, options)


def test_importing_the_command_does_not_import_torch() -> None:
    code = "import mtmcs.cli, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_conversation_puts_each_image_before_its_text() -> None:
    turns, image_ids = conversation(
        (Message("user", "Look.", "a"), Message("assistant", "Yes."), Message("user", "And?", "b"))
    )
    assert image_ids == ["a", "b"]
    assert turns[0] == {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "Look."}],
    }
    assert turns[1] == {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}


def test_load_image_converts_to_rgb_and_caps_the_pixels() -> None:
    image = load_image(PHOTOS["cat"], max_pixels=30_000)  # 451 x 300
    assert image.mode == "RGB" and image.width * image.height <= 30_000
    assert abs(image.width / image.height - 451 / 300) < 0.02
    assert load_image(PHOTOS["cat"]).size == (451, 300)
    with pytest.raises(ValueError, match="unreadable image"):
        load_image(PHOTOS["broken"])


def test_sample_run_end_to_end(tiny: dict[str, TinyModel], tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--split",
        "type_a",
        "--limit",
        "1",
        "--model",
        tiny["llava"].name,
        "--judge",
        "baseline/keyword",
        "--temperature",
        "0",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    calls = json.loads((tmp_path / "summary.json").read_text())["metadata"]["calls"]["model"]
    assert calls["made"] == calls["planned"] == 24 and calls["failed"] == 0
