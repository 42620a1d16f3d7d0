"""Local transformers models (`hf/<hf-id>`, `hf/<dir>`), answered in batches on one device."""

from __future__ import annotations

import asyncio
import copy
import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessorList

from mtmcs.errors import ConfigError
from mtmcs.models.base import CallFailed, ChatRequest, Completion
from mtmcs.models.guided import Guidance, RewardGuidance
from mtmcs.models.images import ImageEncoder
from mtmcs.models.local_prompt import adds_special_tokens, render_prompt, short_cause
from mtmcs.models.model_cards import fallback_template
from mtmcs.protocol.messages import Message

GATHER_MS = 20.0

Result = Completion | CallFailed
GroupKey = tuple[int, float | None, int, bool, int]


@dataclass(frozen=True, slots=True)
class Pending:
    """A request with its rendered prompt and images, waiting for its batch."""

    request: ChatRequest
    prompt: str
    images: tuple[Image.Image, ...]
    seed: int
    future: asyncio.Future[Completion]
    guidance: Guidance | None = None  # reward-guided decoding (`complete_guided`)

    @property
    def temperature(self) -> float | None:
        """The sampling temperature, or `None` for greedy decoding (temperature 0 or unset)."""
        return self.request.temperature or None

    @property
    def key(self) -> GroupKey:
        """Requests with equal keys share one `generate` call (the seed matters when sampling;
        guided requests share one only with requests of the same guidance)."""
        seed = 0 if self.temperature is None else self.seed
        guided = 0 if self.guidance is None else id(self.guidance)
        return (self.request.max_tokens, self.temperature, seed, bool(self.images), guided)


def groups(batch: Sequence[Pending]) -> list[list[Pending]]:
    """The batch split by decoding settings and by whether prompts carry images (in order)."""
    by_key: dict[GroupKey, list[Pending]] = {}
    for item in batch:
        by_key.setdefault(item.key, []).append(item)
    return list(by_key.values())


def default_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(model: str, device: str, dtype: str) -> tuple[Any, Any]:
    """The processor and the model (`from_pretrained` sets eval mode) of a hub id or directory.

    A device other than `cpu` is a device map (`cuda`, `cuda:1`, or `auto` to shard the
    model over the GPUs), which needs `accelerate`.
    """
    processor = AutoProcessor.from_pretrained(model)  # type: ignore[no-untyped-call]
    loaded = AutoModelForImageTextToText.from_pretrained(
        model, dtype=dtype, device_map=None if device == "cpu" else device
    )
    return processor, loaded


def newest_user_text(messages: Sequence[Message]) -> str:
    """The text of the last user message."""
    return next((m.text for m in reversed(messages) if m.role == "user"), "")


class QFormerText:
    """The hook for InstructBLIP-style models, whose Q-Former reads a text with the image.

    Their processor gives the Q-Former the whole prompt, which a three-turn conversation
    can make longer than its position embeddings (512 in InstructBLIP-Vicuna-7B); and the
    visual queries should look for what the newest turn asks. So the Q-Former reads the
    newest user turn only (LAVIS gives it the instruction): right-padded, as its positions
    count from its first token, and cut from the left only past its positions, so the end
    of the turn (the question) stays. The language model still gets the whole prompt.
    """

    def __init__(self, tokenizer: Any, max_positions: int) -> None:
        tokenizer.truncation_side = "left"
        self._tokenizer = tokenizer
        self._max_positions = max_positions

    @classmethod
    def of(cls, processor: Any, model: Any) -> QFormerText | None:
        """The hook of a model with a Q-Former tokenizer, else None."""
        tokenizer = getattr(processor, "qformer_tokenizer", None)
        if tokenizer is None:
            return None
        return cls(tokenizer, model.config.qformer_config.max_position_embeddings)

    def adapt(self, inputs: Any, newest_turns: Sequence[str]) -> None:
        """Give the Q-Former the newest turns, and move the prompts' padding to the left.

        The processor puts the query tokens before the already left-padded text; the
        padding goes first again (order otherwise kept). Without images there is no
        Q-Former input.
        """
        mask = inputs["attention_mask"]
        order = torch.sort(mask, dim=1, stable=True).indices
        inputs["input_ids"] = inputs["input_ids"].gather(1, order)
        inputs["attention_mask"] = mask.gather(1, order)
        if "pixel_values" not in inputs:
            del inputs["qformer_input_ids"], inputs["qformer_attention_mask"]
            return
        qformer = self._tokenizer(
            newest_turns,
            padding=True,
            padding_side="right",
            truncation=True,
            max_length=self._max_positions,
            return_tensors="pt",
        )
        inputs["qformer_input_ids"] = qformer["input_ids"]
        inputs["qformer_attention_mask"] = qformer["attention_mask"]


def _settle(item: Pending, result: Result) -> None:
    if item.future.done():  # the caller gave up
        return
    if isinstance(result, CallFailed):
        item.future.set_exception(result)
    else:
        item.future.set_result(result)


class HFChat:
    """A transformers image-text-to-text model answering requests in batches.

    `complete` renders the prompt with the processor's chat template and loads the images
    (in a thread), then queues the request. One background task takes up to `batch_size`
    queued requests (waiting `gather_ms` for more once one is there), groups them by
    decoding settings and by whether they carry images, and runs each group as one
    left-padded `generate` in a worker thread, so the event loop keeps going. Only the
    tokens after the prompt are decoded. Prompts are never truncated: one that leaves no
    room for `max_tokens` in the model's context fails instead. A failed batch is retried
    request by request, so one bad request fails alone.

    A processor without a chat template gets the fallback template of the checkpoint's
    model card, or of its config's `model_type` (see `fallback_template`); with neither,
    loading fails. Models with a Q-Former get the `QFormerText` hook; given no image, they
    answer with their language model alone (their `generate` needs an image).
    """

    def __init__(
        self,
        name: str,
        model: str,
        *,
        images: ImageEncoder,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str = "auto",
        max_pixels: int | None = None,
        seed: int = 0,
        gather_ms: float = GATHER_MS,
    ) -> None:
        self.name = name
        self._images = images
        self._batch_size = max(1, batch_size)
        self._max_pixels = max_pixels
        self._seed = seed
        self._gather_s = gather_ms / 1000
        try:
            self.processor, self.model = load(model, device or default_device(), dtype)
        except Exception as error:  # not found, unsupported, a missing library (torchvision…)
            raise ConfigError(f"cannot load {name}: {short_cause(error)}") from error
        if self.processor.chat_template is None:
            template = fallback_template(model, self.model.config.model_type)
            if template is None:
                raise ConfigError(
                    f"{name} has no chat template; give its processor one "
                    "(chat_template.jinja in the model directory) or its model card a "
                    "fallback_template"
                )
            self.processor.chat_template = template
        self._qformer = QFormerText.of(self.processor, self.model)
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self._eos = frozenset(eos if isinstance(eos, list) else [eos])
        self._context: int | None = getattr(
            self.model.config.get_text_config(), "max_position_embeddings", None
        )
        self._queue: asyncio.Queue[Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Future[Completion]] = set()
        self._closed = False

    async def complete(self, request: ChatRequest) -> Completion:
        return await self._complete(request, None)

    async def complete_guided(self, request: ChatRequest, guidance: Guidance) -> Completion:
        """The answer decoded under reward guidance (`mtmcs.models.guided`): at each step the
        top-k next tokens are rescored by `logit + weight · reward` of the reply continued
        by each, given the request's messages; the argmax is taken, or sampled from at the
        request's temperature when it has one. Batched like any other request, in batches
        of requests with the same guidance."""
        return await self._complete(request, guidance)

    async def _complete(self, request: ChatRequest, guidance: Guidance | None) -> Completion:
        if self._closed:
            raise CallFailed(f"{self.name} is closed")
        try:
            prompt, images = await asyncio.to_thread(
                render_prompt,
                self.processor,
                request.messages,
                self._images.read_bytes,
                self._max_pixels,
            )
        except Exception as error:  # a template or image problem fails this call only
            raise CallFailed(f"cannot build the prompt: {short_cause(error)}") from error
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        seed = self._seed if request.seed is None else request.seed
        pending = Pending(request, prompt, images, seed, future, guidance)
        self._queue_of_this_loop().put_nowait(pending)
        return await future

    async def aclose(self) -> None:
        """Stop the batching task, fail what is still waiting, free the model."""
        self._closed = True
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for future in list(self._pending):
            if not future.done():
                future.set_exception(CallFailed(f"{self.name} was closed"))
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _queue_of_this_loop(self) -> asyncio.Queue[Pending]:
        # One batching task per event loop (each `asyncio.run` has its own).
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._serve(self._queue))
        return self._queue

    async def _serve(self, queue: asyncio.Queue[Pending]) -> None:
        while True:
            for group in groups(await self._gather(queue)):
                await self._answer(group)

    async def _gather(self, queue: asyncio.Queue[Pending]) -> list[Pending]:
        batch = [await queue.get()]
        deadline = asyncio.get_running_loop().time() + self._gather_s
        while len(batch) < self._batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _answer(self, group: list[Pending]) -> None:
        try:
            results = await asyncio.to_thread(self._run_batch, group)
        except Exception as error:  # e.g. out of memory: retry one by one, then fail
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(group) > 1:
                for item in group:
                    await self._answer([item])
                return
            results = [CallFailed(f"generation failed: {short_cause(error)}")]
        for item, result in zip(group, results, strict=True):
            _settle(item, result)

    def _run_batch(self, group: Sequence[Pending]) -> list[Result]:
        """Generate for one group (same settings): prompts too long fail, the rest answer."""
        inputs = self._encode(group)
        lengths: list[int] = inputs["attention_mask"].sum(dim=1).tolist()
        max_tokens = group[0].request.max_tokens
        room = None if self._context is None else self._context - max_tokens
        too_long = [room is not None and length > room for length in lengths]
        if any(too_long):
            fitting = [item for item, long in zip(group, too_long, strict=True) if not long]
            answers = iter(self._run_batch(fitting) if fitting else [])
            return [
                CallFailed(
                    f"prompt of {length} tokens (+{max_tokens} to generate) exceeds the "
                    f"model's context of {self._context}"
                )
                if long
                else next(answers)
                for length, long in zip(lengths, too_long, strict=True)
            ]
        output = self._generate(inputs, group)
        return self._decode(output[:, inputs["input_ids"].shape[1] :], lengths)

    def _encode(self, group: Sequence[Pending]) -> Any:
        texts = [item.prompt for item in group]
        inputs = self.processor(
            text=texts,
            images=[list(item.images) for item in group] if group[0].images else None,
            padding=True,
            truncation=False,
            return_tensors="pt",
            # A template that writes the BOS itself must not get a second one.
            add_special_tokens=adds_special_tokens(self.processor.tokenizer, texts[0]),
        )
        if self._qformer is not None:
            self._qformer.adapt(inputs, [newest_user_text(i.request.messages) for i in group])
        return inputs.to(self.model.device, dtype=self.model.dtype)

    def _generate(self, inputs: Any, group: Sequence[Pending]) -> Any:
        # The checkpoint's generation config, passed explicitly: InstructBLIP's `generate`
        # would otherwise use its language model's defaults.
        first = group[0]
        config = copy.deepcopy(self.model.generation_config)
        config.update(
            max_new_tokens=first.request.max_tokens,
            do_sample=first.temperature is not None,
            pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        if first.temperature is not None:
            config.update(temperature=first.temperature)
            torch.manual_seed(first.seed)
        generate = self.model.generate
        if self._qformer is not None and "pixel_values" not in inputs:
            generate = self.model.language_model.generate
        processors = LogitsProcessorList()
        if first.guidance is not None:
            tokenizer = self.processor.tokenizer
            processors.append(
                RewardGuidance(
                    first.guidance,
                    [item.request.messages for item in group],
                    lambda ids: str(tokenizer.decode(ids, skip_special_tokens=True)),
                    self._eos,
                )
            )
        with torch.inference_mode():
            return generate(**inputs, generation_config=config, logits_processor=processors)

    def _decode(self, new_tokens: Any, prompt_lengths: Sequence[int]) -> list[Result]:
        results: list[Result] = []
        for row, prompt_length in zip(new_tokens.tolist(), prompt_lengths, strict=True):
            end = next((i + 1 for i, token in enumerate(row) if token in self._eos), None)
            tokens = row if end is None else row[:end]
            finish = "length" if end is None else "stop"
            text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
            if text.strip():
                results.append(Completion(text, finish, prompt_length, len(tokens)))
            else:
                results.append(CallFailed(f"empty completion (finish_reason={finish})"))
        return results
