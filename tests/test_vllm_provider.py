"""The vLLM provider's request shaping (engine mocked at vLLM's public interface) and
`mtmcs serve` (command line, and the wait loop against a fake `vllm serve` executable).

vLLM itself is not installed here (no GPU): a fake `vllm` module stands in for it.
"""

from __future__ import annotations

import asyncio
import enum
import io
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image

from command import invoke
from mtmcs.errors import ConfigError, ProviderError
from mtmcs.extras import install_hint
from mtmcs.models.base import CallFailed, ChatRequest
from mtmcs.models.images import ImageEncoder
from mtmcs.models.model_cards import MODEL_CARDS, QWEN_VL_MAX_PIXELS, card_for
from mtmcs.models.registry import ProviderOptions, create_model
from mtmcs.models.vllm_local import EngineSettings, VLLMChat
from mtmcs.models.vllm_serve import serve_arguments, stop, wait_until_ready
from mtmcs.protocol.messages import Message

QWEN = "Qwen/Qwen3-VL-8B-Instruct"
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] "
    "{% for c in m.content %}{% if c.type == 'image' %}<image> {% else %}{{ c.text }}"
    "{% endif %}{% endfor %} [/INST]{% else %} {{ m.content[0].text }} </s>{% endif %}"
    "{% endfor %}"
)
FINAL_TEXT = "I can help with the first part."


# --- a fake `vllm`: the public names the provider uses, recording what it gets --------


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class AsyncEngineArgs:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class SamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@dataclass
class FakeEngine:
    """Streams two partial outputs, then the finished one; `gate` holds requests."""

    args: AsyncEngineArgs
    calls: list[tuple[dict[str, Any], SamplingParams, str]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail_with: Exception | None = None
    errored: bool = False
    shut_down: bool = False
    model_config: Any = field(
        default_factory=lambda: types.SimpleNamespace(
            get_diff_sampling_param=lambda: {"temperature": 0.7, "top_p": 0.8}
        )
    )

    async def generate(
        self, prompt: dict[str, Any], sampling_params: SamplingParams, request_id: str
    ) -> AsyncIterator[Any]:
        self.calls.append((prompt, sampling_params, request_id))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        for end in (4, 12):
            yield _output(prompt, FINAL_TEXT[:end], finished=False)
        yield _output(prompt, FINAL_TEXT, finished=True)

    def shutdown(self) -> None:
        self.shut_down = True


def _output(prompt: dict[str, Any], text: str, *, finished: bool) -> Any:
    completion = types.SimpleNamespace(
        text=text,
        token_ids=list(range(len(text.split()))),
        finish_reason="stop" if finished else None,
    )
    return types.SimpleNamespace(
        outputs=[completion], finished=finished, prompt_token_ids=prompt["prompt_token_ids"]
    )


class AsyncLLMEngine:
    engines: ClassVar[list[FakeEngine]] = []

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs) -> FakeEngine:
        engine = FakeEngine(args)
        cls.engines.append(engine)
        return engine


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[AsyncLLMEngine]:
    vllm = types.ModuleType("vllm")
    sampling = types.ModuleType("vllm.sampling_params")
    vllm.AsyncEngineArgs = AsyncEngineArgs  # type: ignore[attr-defined]
    vllm.AsyncLLMEngine = AsyncLLMEngine  # type: ignore[attr-defined]
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    sampling.RequestOutputKind = RequestOutputKind  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    monkeypatch.setattr(AsyncLLMEngine, "engines", [])
    return AsyncLLMEngine


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local 'checkpoint': a word-level tokenizer that adds a BOS, with a chat template."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["[UNK]", "<s>", "</s>", "<image>", "[INST]", "[/INST]"]
    words = [*special, "first", "second", "third", "turn", "question"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="[UNK]",
        chat_template=TEMPLATE,
    )
    fast.add_special_tokens({"additional_special_tokens": ["<image>", "[INST]", "[/INST]"]})
    directory = tmp_path_factory.mktemp("checkpoint")
    fast.save_pretrained(directory)
    return directory


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = ImageEncoder({"photo": _png(1000, 800)}.__getitem__)


def _chat(model_dir: Path, **overrides: Any) -> VLLMChat:
    """The provider on the local checkpoint, with Qwen3-VL-8B's card limits."""
    settings = replace(EngineSettings.for_model(QWEN), model=str(model_dir), **overrides)
    return VLLMChat("vllm/test", settings, images=IMAGES)


def _turn_three() -> tuple[Message, ...]:
    return (
        Message("user", "first turn", "photo"),
        Message("assistant", "reply one"),
        Message("user", "second turn"),
        Message("assistant", "reply two"),
        Message("user", "third turn: the newest question"),
    )


def _request(messages: tuple[Message, ...], **decoding: Any) -> ChatRequest:
    return ChatRequest(messages=messages, max_tokens=decoding.pop("max_tokens", 64), **decoding)


def _engine_call(engines: type[AsyncLLMEngine]) -> tuple[dict[str, Any], dict[str, Any]]:
    prompt, params, _ = engines.engines[0].calls[0]
    return prompt, params.kwargs


# --- model cards --------------------------------------------------------------------


def test_cards_cover_the_papers_eight_models_with_exact_checkpoints() -> None:
    assert len(MODEL_CARDS) == 8
    assert {card.checkpoint for card in MODEL_CARDS} == {
        "llava-hf/llava-v1.6-mistral-7b-hf",
        "llava-hf/llava-next-72b-hf",
        "Qwen/Qwen3-VL-8B-Instruct",
        "Qwen/Qwen3-VL-32B-Instruct",
        "Salesforce/instructblip-vicuna-7b",
        "HuggingFaceM4/Idefics3-8B-Llama3",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "meta-llama/Llama-3.2-90B-Vision-Instruct",
    }
    assert card_for("qwen/qwen3-vl-8b-instruct") is card_for("qwen3-vl-8b") is card_for(QWEN)
    assert card_for("someone/else") is None
    qwen = card_for(QWEN)
    assert qwen is not None and qwen.max_pixels == 256 * 28 * 28 == 200_704
    assert qwen.weights_gib == pytest.approx(8.77e9 * 2 / 2**30)


def test_docs_give_every_model_its_run_command() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "models.md").read_text(encoding="utf-8")
    for card in MODEL_CARDS:
        assert f"| `{card.checkpoint}` | {card.provider} |" in docs
        assert f"mtmcs run --model {card.provider}/{card.checkpoint}" in docs


def test_engine_settings_carry_the_cards_limits() -> None:
    arguments = EngineSettings.for_model(QWEN, tensor_parallel=2).engine_arguments()
    assert arguments["model"] == QWEN
    assert arguments["tensor_parallel_size"] == 2
    assert arguments["limit_mm_per_prompt"] == {"image": 1}
    assert arguments["mm_processor_kwargs"] == {
        "size": {"shortest_edge": 65_536, "longest_edge": QWEN_VL_MAX_PIXELS}
    }
    assert arguments["max_model_len"] == 8192 and arguments["dtype"] == "bfloat16"
    assert EngineSettings.for_model("llava-next-72b").tensor_parallel == 4
    assert "mm_processor_kwargs" not in EngineSettings.for_model("idefics3-8b").engine_arguments()


def test_models_vllm_cannot_serve_are_refused_with_the_alternative() -> None:
    with pytest.raises(ConfigError, match=r"0\.10\.2.*--model hf/meta-llama/Llama-3\.2-11B"):
        EngineSettings.for_model("meta-llama/Llama-3.2-11B-Vision-Instruct")
    with pytest.raises(ConfigError, match="BLIP-2 only"):
        EngineSettings.for_model("Salesforce/instructblip-vicuna-7b")


# --- the in-process provider -----------------------------------------------------------


def test_missing_vllm_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ConfigError, match=re.escape(install_hint("vllm"))):
        _chat(model_dir)


def test_registry_builds_the_provider_with_options(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    options = ProviderOptions(tensor_parallel=2, seed=5)
    model = create_model(f"vllm/{model_dir}", IMAGES, options)
    assert isinstance(model, VLLMChat)
    asyncio.run(model.complete(_request((Message("user", "question"),))))
    arguments = fake_vllm.engines[0].args.kwargs
    assert arguments["tensor_parallel_size"] == 2 and arguments["seed"] == 5
    assert arguments["model"] == str(model_dir)


def test_engine_gets_the_cards_limits(fake_vllm: type[AsyncLLMEngine], model_dir: Path) -> None:
    chat = _chat(model_dir, tensor_parallel=2)
    asyncio.run(chat.complete(_request((Message("user", "question"),))))
    arguments = fake_vllm.engines[0].args.kwargs
    assert arguments["mm_processor_kwargs"]["size"]["longest_edge"] == 200_704
    assert arguments["limit_mm_per_prompt"] == {"image": 1}
    assert arguments["tensor_parallel_size"] == 2


def test_multimodal_turn_one_has_one_image_placeholder_and_the_image(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    chat = _chat(model_dir)
    messages = (Message("user", "first turn", "photo"),)
    rendered = chat.render(messages)
    assert rendered.text == "<s>[INST] <image> first turn [/INST]"
    asyncio.run(chat.complete(_request(messages)))
    prompt, _ = _engine_call(fake_vllm)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert (
        prompt["prompt_token_ids"] == tokenizer(rendered.text, add_special_tokens=False).input_ids
    )
    assert prompt["prompt_token_ids"].count(tokenizer.bos_token_id) == 1  # no second BOS
    assert prompt["prompt_token_ids"].count(tokenizer.convert_tokens_to_ids("<image>")) == 1
    (image,) = prompt["multi_modal_data"]["image"]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.width * image.height <= QWEN_VL_MAX_PIXELS < 1000 * 800
    assert image.width / image.height == pytest.approx(1000 / 800, rel=0.01)


def test_text_only_dialogue_has_no_image(fake_vllm: type[AsyncLLMEngine], model_dir: Path) -> None:
    chat = _chat(model_dir)
    messages = (Message("user", "first turn"),)
    assert "<image>" not in chat.render(messages).text
    asyncio.run(chat.complete(_request(messages)))
    prompt, _ = _engine_call(fake_vllm)
    assert "multi_modal_data" not in prompt


def test_newest_user_turn_is_intact_at_the_end(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    rendered = _chat(model_dir).render(_turn_three())
    assert rendered.text.endswith("[INST] third turn: the newest question [/INST]")
    assert rendered.text.count("<image>") == 1
    assert rendered.text.index("<image>") < rendered.text.index("first turn")
    assert len(rendered.images) == 1


def test_sampling_params_follow_the_request(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    chat = _chat(model_dir)

    async def both() -> None:
        await chat.complete(_request(_turn_three(), max_tokens=32, temperature=0.0, seed=7))
        await chat.complete(_request(_turn_three(), max_tokens=16))

    asyncio.run(both())
    greedy, defaults = (params.kwargs for _, params, _ in fake_vllm.engines[0].calls)
    final_only = RequestOutputKind.FINAL_ONLY
    assert greedy == {"temperature": 0.0, "seed": 7, "max_tokens": 32, "output_kind": final_only}
    # No temperature: the checkpoint's defaults, as `vllm serve` applies them.
    assert defaults == {
        "temperature": 0.7,
        "top_p": 0.8,
        "max_tokens": 16,
        "output_kind": final_only,
    }


def test_final_text_and_token_counts_are_returned(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    completion = asyncio.run(_chat(model_dir).complete(_request(_turn_three())))
    prompt, _ = _engine_call(fake_vllm)
    assert completion.text == FINAL_TEXT
    assert completion.finish_reason == "stop"
    assert completion.input_tokens == len(prompt["prompt_token_ids"])
    assert completion.output_tokens == len(FINAL_TEXT.split())


def test_concurrent_calls_are_all_in_the_engine_before_any_finishes(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    chat = _chat(model_dir)
    count = 8

    async def run() -> list[str]:
        engine_ready = asyncio.create_task(chat.complete(_request((Message("user", "warm up"),))))
        await engine_ready
        engine = fake_vllm.engines[0]
        engine.gate = asyncio.Event()
        calls = [
            asyncio.create_task(chat.complete(_request((Message("user", f"question {i}"),))))
            for i in range(count)
        ]
        while len(engine.calls) < 1 + count:  # all in flight, none answered yet
            assert not any(call.done() for call in calls)
            await asyncio.sleep(0.01)
        engine.gate.set()
        return [completion.text for completion in await asyncio.gather(*calls)]

    texts = asyncio.run(asyncio.wait_for(run(), timeout=10))
    assert texts == [FINAL_TEXT] * count
    assert len({request_id for _, _, request_id in fake_vllm.engines[0].calls}) == 1 + count


def test_engine_error_fails_the_call_and_a_dead_engine_stops_the_run(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    chat = _chat(model_dir)
    request = _request((Message("user", "question"),))

    async def run() -> None:
        await chat.complete(request)
        engine = fake_vllm.engines[0]
        engine.fail_with = RuntimeError("CUDA error: an illegal memory access")
        with pytest.raises(CallFailed, match="RuntimeError: CUDA error"):
            await chat.complete(request)
        engine.errored = True
        with pytest.raises(ProviderError, match="engine died"):
            await chat.complete(request)

    asyncio.run(run())


def test_prompt_longer_than_max_model_len_fails_without_truncation(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path
) -> None:
    chat = _chat(model_dir, max_model_len=40)
    long_turn = Message("user", " ".join(["question"] * 30))
    with pytest.raises(CallFailed, match=r"exceeds max_model_len 40; prompts are never truncated"):
        asyncio.run(chat.complete(_request((long_turn,), max_tokens=16)))
    assert not fake_vllm.engines  # nothing was sent (the engine did not even start)


def test_aclose_shuts_the_engine_down(fake_vllm: type[AsyncLLMEngine], model_dir: Path) -> None:
    chat = _chat(model_dir)

    async def run() -> None:
        await chat.complete(_request((Message("user", "question"),)))
        await chat.aclose()

    asyncio.run(run())
    assert fake_vllm.engines[0].shut_down


def test_run_command_passes_local_model_options_to_the_engine(
    fake_vllm: type[AsyncLLMEngine], model_dir: Path, tmp_path: Path
) -> None:
    """`mtmcs run --tensor-parallel/--dtype/--max-pixels` reach vLLM's engine arguments, and a
    whole run (turns, questions) goes through the in-process engine."""
    from typer.testing import CliRunner

    from mtmcs.cli import app

    arguments = ["run", "--model", f"vllm/{model_dir}", "--judge", "baseline/keyword"]
    arguments += ["--dataset", "sample", "--split", "type_a", "--limit", "1"]
    arguments += ["--tensor-parallel", "2", "--dtype", "bfloat16", "--max-pixels", "50176"]
    result = CliRunner().invoke(app, [*arguments, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (engine,) = fake_vllm.engines
    assert engine.args.kwargs["tensor_parallel_size"] == 2
    assert engine.args.kwargs["dtype"] == "bfloat16"
    multimodal = [prompt for prompt, _, _ in engine.calls if "multi_modal_data" in prompt]
    assert multimodal, "the multimodal dialogues sent their image"
    for prompt in multimodal:
        (image,) = prompt["multi_modal_data"]["image"]
        assert image.width * image.height <= 50176
    assert len(engine.calls) == 24  # 1 row: 4 dialogues × 3 turns, and their 12 questions


# --- mtmcs serve ----------------------------------------------------------------------


def test_serve_dry_run_prints_a_loopback_vllm_command_and_the_run_command() -> None:
    result = invoke("serve", QWEN, "--port", "8123", "--tensor-parallel", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    serve_line, run_line = result.stdout.strip().splitlines()
    argv = shlex.split(serve_line)
    assert argv[:3] == ["vllm", "serve", QWEN]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options["--host"] == "127.0.0.1"
    assert options["--port"] == "8123"
    assert options["--tensor-parallel-size"] == "2"
    assert options["--served-model-name"] == QWEN
    assert options["--limit-mm-per-prompt"] == '{"image": 1}'
    assert '"longest_edge": 200704' in options["--mm-processor-kwargs"]
    assert options["--max-model-len"] == "8192"
    assert run_line == (
        f"then: mtmcs run --model openai-compatible/{QWEN} "
        "--base-url http://127.0.0.1:8123/v1 --max-connections 256"
    )


def test_serve_refuses_a_model_vllm_cannot_serve() -> None:
    result = invoke("serve", "meta-llama/Llama-3.2-90B-Vision-Instruct", "--dry-run")
    assert result.returncode == 1
    assert "mtmcs run --model hf/meta-llama/Llama-3.2-90B-Vision-Instruct" in result.stderr


FAKE_SERVER = """
import json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

args = sys.argv[1:]
option = lambda name: args[args.index(name) + 1]
mode = {mode!r}
if mode == "crash":
    sys.exit(3)
if mode == "hang":
    time.sleep(60)


class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        known = self.path == "/v1/models"
        body = json.dumps({{"data": [{{"id": option("--served-model-name")}}]}}).encode()
        self.send_response(200 if known else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


time.sleep(0.3)  # a server is not up at once
HTTPServer((option("--host"), int(option("--port"))), Models).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fake_serve(tmp_path: Path) -> Iterator[Any]:
    """Start a fake `vllm serve` executable (`ok`, `crash` or `hang`); stopped at teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> tuple[subprocess.Popen[bytes], int, str]:
        script = tmp_path / f"vllm-{mode}"
        script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_SERVER.format(mode=mode)))
        script.chmod(0o755)
        port = _free_port()
        settings = EngineSettings.for_model(QWEN)
        process = subprocess.Popen(serve_arguments(settings, port, executable=str(script)))
        processes.append(process)
        return process, port, settings.model

    yield start
    for process in processes:
        stop(process)


def test_wait_until_ready_returns_once_the_model_is_listed(fake_serve: Any) -> None:
    process, port, name = fake_serve("ok")
    wait_until_ready(process, port, name, timeout=20, interval=0.05)
    assert process.poll() is None
    stop(process)
    assert process.returncode is not None


def test_wait_until_ready_reports_a_server_that_exits(fake_serve: Any) -> None:
    process, port, name = fake_serve("crash")
    with pytest.raises(ProviderError, match="exited with code 3 before it was ready"):
        wait_until_ready(process, port, name, timeout=20, interval=0.05)


def test_wait_until_ready_gives_up_after_the_timeout(fake_serve: Any) -> None:
    process, port, name = fake_serve("hang")
    with pytest.raises(ProviderError, match=r"did not list .* within 0\.3 s"):
        wait_until_ready(process, port, name, timeout=0.3, interval=0.05)
    stop(process)
    assert process.returncode is not None
