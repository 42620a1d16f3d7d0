"""Local models through vLLM's in-process async engine (`vllm/<hf-id>`, extra `vllm`).

Continuous batching comes from concurrency: every `complete` is one engine request, and
the engine batches whatever is in flight (set `--max-connections` high, e.g. 256).
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from mtmcs.errors import ConfigError, ProviderError
from mtmcs.extras import install_hint
from mtmcs.models.base import CallFailed, ChatRequest, Completion
from mtmcs.models.images import ImageEncoder
from mtmcs.models.local_prompt import adds_special_tokens, render_prompt, short_cause
from mtmcs.models.model_cards import ModelCard, card_for
from mtmcs.protocol.messages import Message

GPU_MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the engine is started with: the model card's values unless overridden."""

    model: str
    tensor_parallel: int = 1
    dtype: str = "auto"
    max_model_len: int | None = None
    images_per_prompt: int = 1
    max_pixels: int | None = None
    mm_processor_kwargs: tuple[tuple[str, object], ...] = ()
    seed: int = 0

    @classmethod
    def for_model(
        cls,
        model: str,
        *,
        tensor_parallel: int | None = None,
        dtype: str = "auto",
        max_pixels: int | None = None,
        seed: int = 0,
    ) -> EngineSettings:
        """Settings from the model's card (when it has one), with explicit overrides.

        Raises `ConfigError` for a model whose card says vLLM cannot serve it.
        """
        card: ModelCard | None = card_for(model)
        if card is not None and card.provider != "vllm":
            raise ConfigError(
                f"{card.checkpoint}: {card.provider_note} Evaluate it with "
                f"mtmcs run --model {card.provider}/{card.checkpoint}"
            )
        if card is None:
            return cls(
                model=model,
                tensor_parallel=tensor_parallel or 1,
                dtype=dtype,
                max_pixels=max_pixels,
                seed=seed,
            )
        pixels = max_pixels or card.max_pixels
        return cls(
            model=card.checkpoint,
            tensor_parallel=tensor_parallel or card.gpus,
            dtype=card.dtype if dtype == "auto" else dtype,
            max_model_len=card.max_model_len,
            images_per_prompt=card.images_per_prompt,
            max_pixels=pixels,
            mm_processor_kwargs=tuple(card.mm_processor_kwargs(pixels).items()),
            seed=seed,
        )

    def engine_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `vllm.AsyncEngineArgs`."""
        arguments: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": self.tensor_parallel,
            "dtype": self.dtype,
            "limit_mm_per_prompt": {"image": self.images_per_prompt},
            "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
            "seed": self.seed,
        }
        if self.max_model_len is not None:
            arguments["max_model_len"] = self.max_model_len
        if self.mm_processor_kwargs:
            arguments["mm_processor_kwargs"] = dict(self.mm_processor_kwargs)
        return arguments


@dataclass(frozen=True, slots=True)
class Prompt:
    """A request as the engine gets it: the chat-template rendering, its tokens, images."""

    text: str
    token_ids: tuple[int, ...]
    images: tuple[Image.Image, ...]

    def engine_input(self) -> dict[str, Any]:
        """vLLM's `TokensPrompt` (a dict), with `multi_modal_data` when there are images."""
        engine_input: dict[str, Any] = {"prompt_token_ids": list(self.token_ids)}
        if self.images:
            engine_input["multi_modal_data"] = {"image": list(self.images)}
        return engine_input


def _import_vllm(name: str) -> tuple[Any, Any]:
    """vLLM and its `RequestOutputKind.FINAL_ONLY`, or a `ConfigError` saying how to install it."""
    try:
        vllm = importlib.import_module("vllm")
        final_only = importlib.import_module("vllm.sampling_params").RequestOutputKind.FINAL_ONLY
    except ImportError as error:
        raise ConfigError(
            f"{name} needs the vllm extra: {install_hint('vllm')} on a machine with a GPU ({error})"
        ) from error
    return vllm, final_only


def _load_processor(name: str, model: str) -> Any:
    transformers = importlib.import_module("transformers")  # untyped at this boundary
    try:
        return transformers.AutoProcessor.from_pretrained(model)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load the processor of {name}: {short_cause(error)}") from error


class VLLMChat:
    """A model in vLLM's async engine, prompted with the model's own chat template.

    `complete` renders the messages with the processor's chat template, tokenizes the
    text (adding no second BOS when the template writes one), loads the images, downscaled
    to `max_pixels` (all in a thread), and sends token ids plus images as one engine
    request. Prompts are never truncated: one whose text alone leaves no room for
    `max_tokens` within `max_model_len` fails, and so does one the engine refuses. The
    engine starts on the first call, in the running event loop; a dead engine stops the
    run (`ProviderError`), any other engine error fails the call (`CallFailed`).
    """

    def __init__(
        self,
        name: str,
        settings: EngineSettings,
        *,
        images: ImageEncoder,
    ) -> None:
        self.name = name
        self.settings = settings
        self._vllm, self._final_only = _import_vllm(name)
        self._images = images
        self._processor = _load_processor(name, settings.model)
        self._tokenizer = getattr(self._processor, "tokenizer", self._processor)
        self._engine: Any = None
        self._engine_error: ProviderError | None = None
        self._starting = asyncio.Lock()

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            prompt = await asyncio.to_thread(self.render, request.messages)
        except Exception as error:  # a template or image problem fails this call only
            raise CallFailed(f"cannot build the prompt: {short_cause(error)}") from error
        self._check_length(prompt, request.max_tokens)
        engine = await self._started_engine()
        final: Any = None
        try:
            async for output in engine.generate(
                prompt.engine_input(), self._sampling_params(request, engine), uuid.uuid4().hex
            ):
                final = output
        except Exception as error:
            if engine.errored:
                raise ProviderError(
                    f"{self.name}: the vLLM engine died: {short_cause(error)}"
                ) from error
            raise CallFailed(f"vLLM: {short_cause(error)}") from error
        return self._completion(final)

    async def aclose(self) -> None:
        """Shut the engine down (it frees the GPUs)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    def render(self, messages: Sequence[Message]) -> Prompt:
        """The messages as the engine gets them (chat template, tokens, loaded images)."""
        text, images = render_prompt(
            self._processor, messages, self._images.read_bytes, self.settings.max_pixels
        )
        special = adds_special_tokens(self._tokenizer, text)
        return Prompt(
            text, tuple(self._tokenizer(text, add_special_tokens=special).input_ids), images
        )

    def _check_length(self, prompt: Prompt, max_tokens: int) -> None:
        limit = self.settings.max_model_len
        if limit is not None and len(prompt.token_ids) + max_tokens > limit:
            raise CallFailed(
                f"prompt of {len(prompt.token_ids)} text tokens (+{max_tokens} to generate) "
                f"exceeds max_model_len {limit}; prompts are never truncated"
            )

    async def _started_engine(self) -> Any:
        async with self._starting:
            if self._engine_error is not None:
                raise self._engine_error
            if self._engine is None:
                arguments = self._vllm.AsyncEngineArgs(**self.settings.engine_arguments())
                try:
                    self._engine = self._vllm.AsyncLLMEngine.from_engine_args(arguments)
                except Exception as error:  # bad settings, no GPU, out of memory …
                    self._engine_error = ProviderError(
                        f"{self.name}: the vLLM engine did not start: {short_cause(error)}"
                    )
                    raise self._engine_error from error
            return self._engine

    def _sampling_params(self, request: ChatRequest, engine: Any) -> Any:
        options: dict[str, Any] = {}
        if request.temperature is None:  # as `vllm serve` does: the checkpoint's defaults
            options.update(engine.model_config.get_diff_sampling_param())
        else:
            options["temperature"] = request.temperature
        if request.seed is not None:
            options["seed"] = request.seed
        options["max_tokens"] = request.max_tokens
        return self._vllm.SamplingParams(**options, output_kind=self._final_only)

    def _completion(self, final: Any) -> Completion:
        if final is None or not final.outputs:
            raise CallFailed("vLLM returned no output")
        output = final.outputs[0]
        if not output.text.strip():
            raise CallFailed(f"empty completion (finish_reason={output.finish_reason})")
        return Completion(
            text=output.text,
            finish_reason=output.finish_reason,
            input_tokens=len(final.prompt_token_ids or ()),
            output_tokens=len(output.token_ids),
        )
