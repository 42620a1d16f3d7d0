"""The paper's eight open MLLMs: exact checkpoints, how to serve them, what they need.

Pure data. Memory figures are estimates, not measurements: weights are 2 bytes per
parameter (bf16); the KV cache per token is 2 (K and V) × decoder layers × KV heads ×
head size × 2 bytes, read from each checkpoint's text config (docs/models.md derives each
model's minimum GPU memory from these two figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LocalProvider = Literal["vllm", "hf"]

GIB = 2**30
QWEN_VL_MAX_PIXELS = 256 * 28 * 28  # the paper's cap for Qwen3-VL: 200,704 pixels
QWEN3_VL_MIN_PIXELS = 65_536  # the checkpoints' own `size.shortest_edge`


@dataclass(frozen=True, slots=True)
class ModelCard:
    """How to run one open model of the paper.

    `gpus` is the number of 80 GB GPUs we suggest: vLLM's tensor-parallel size, or the
    devices the hf provider spreads the model over. `min_pixels` is set only for
    processors whose `size` is a pixel budget (Qwen-VL); `max_pixels` caps every image
    sent to the model (images are downscaled to it before they are sent).
    `chat_template` describes the prompt format in words; `fallback_template` is the Jinja
    chat template the hf provider renders with when the processor ships none.
    """

    key: str
    paper_name: str
    checkpoint: str
    provider: LocalProvider
    params_billion: float
    kv_cache_mib_per_token: float
    max_model_len: int
    chat_template: str
    gpus: int = 1
    images_per_prompt: int = 1
    max_pixels: int | None = None
    min_pixels: int | None = None
    dtype: str = "bfloat16"
    gated: bool = False
    provider_note: str = ""
    fallback_template: str | None = None

    @property
    def weights_gib(self) -> float:
        """bf16 weights: 2 bytes per parameter."""
        return self.params_billion * 1e9 * 2 / GIB

    def mm_processor_kwargs(self, max_pixels: int | None = None) -> dict[str, object]:
        """Keyword arguments for the model's HF processor (vLLM's `mm_processor_kwargs`)."""
        longest = max_pixels or self.max_pixels
        if self.min_pixels is None or longest is None:
            return {}
        return {"size": {"shortest_edge": self.min_pixels, "longest_edge": longest}}


# FastChat's `vicuna_v1.1`: "<system> USER: … ASSISTANT: …</s>USER: … ASSISTANT:". A system
# message replaces the default preamble. No image placeholder: InstructBLIP's processor
# puts the image's query tokens before the text itself.
VICUNA_V1_1_TEMPLATE = (
    "{%- set preamble = 'A chat between a curious user and an artificial intelligence "
    "assistant. The assistant gives helpful, detailed, and polite answers to the "
    "user\\'s questions.' -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set preamble = messages[0]['content'] | selectattr('type', 'equalto', 'text') "
    "| map(attribute='text') | join('\\n') -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{{- preamble + ' ' -}}"
    "{%- for message in messages -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') "
    "| map(attribute='text') | join('\\n') -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' + text + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'ASSISTANT: ' + text + '</s>' -}}"
    "{%- else -%}{{- raise_exception('unexpected role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

# For checkpoints without a card (local copies, fine-tunes): by their config's `model_type`.
FALLBACK_TEMPLATES = {"instructblip": VICUNA_V1_1_TEMPLATE}

_MLLAMA_REMOVED = (
    "vLLM dropped Mllama (Llama 3.2 Vision) after 0.10.2 with its V0 engine "
    "(MllamaForConditionalGeneration is in vLLM's previously-supported list), so the "
    "vllm extra (vllm>=0.11) cannot serve it."
)

MODEL_CARDS: tuple[ModelCard, ...] = (
    ModelCard(
        key="llava-v1.6-mistral-7b",
        paper_name="LLaVA-v1.6-Mistral-7B",
        checkpoint="llava-hf/llava-v1.6-mistral-7b-hf",
        provider="vllm",
        params_billion=7.57,
        kv_cache_mib_per_token=0.125,  # 32 layers × 8 KV heads × 128
        max_model_len=8192,
        chat_template=(
            "Mistral [INST] … [/INST]; the image becomes <image>, expanded by the "
            "processor to up to ~2,900 tokens (AnyRes tiles); no system role."
        ),
    ),
    ModelCard(
        key="llava-next-72b",
        paper_name="LLaVA-NeXT-72B",
        checkpoint="llava-hf/llava-next-72b-hf",
        provider="vllm",
        params_billion=72.7,
        kv_cache_mib_per_token=2.5,  # Qwen1.5-72B: 80 layers × 64 KV heads × 128 (no GQA)
        max_model_len=8192,
        gpus=4,
        chat_template=(
            "Qwen1.5 ChatML (<|im_start|>user … <|im_end|>) from the checkpoint's "
            "chat_template.json; the image becomes <image> (AnyRes tiles)."
        ),
    ),
    ModelCard(
        key="qwen3-vl-8b",
        paper_name="Qwen3-VL-8B-Instruct",
        checkpoint="Qwen/Qwen3-VL-8B-Instruct",
        provider="vllm",
        params_billion=8.77,
        kv_cache_mib_per_token=0.140625,  # 36 layers × 8 KV heads × 128
        max_model_len=8192,
        max_pixels=QWEN_VL_MAX_PIXELS,
        min_pixels=QWEN3_VL_MIN_PIXELS,
        chat_template=(
            "ChatML; the image becomes <|vision_start|><|image_pad|><|vision_end|>, "
            "~196 tokens at the paper's 256×28×28-pixel cap (32-pixel merged patches); "
            "no default system prompt."
        ),
    ),
    ModelCard(
        key="qwen3-vl-32b",
        paper_name="Qwen3-VL-32B-Instruct",
        checkpoint="Qwen/Qwen3-VL-32B-Instruct",
        provider="vllm",
        params_billion=33.4,
        kv_cache_mib_per_token=0.25,  # 64 layers × 8 KV heads × 128
        max_model_len=8192,
        gpus=2,
        max_pixels=QWEN_VL_MAX_PIXELS,
        min_pixels=QWEN3_VL_MIN_PIXELS,
        chat_template="As Qwen3-VL-8B.",
    ),
    ModelCard(
        key="instructblip-vicuna-7b",
        paper_name="InstructBLIP-Vicuna-7B",
        checkpoint="Salesforce/instructblip-vicuna-7b",
        provider="hf",
        params_billion=7.91,
        kv_cache_mib_per_token=0.5,  # LLaMA-7B: 32 layers × 32 heads × 128 (no GQA)
        max_model_len=2048,
        chat_template=(
            "None in the processor: the hf provider renders Vicuna v1.1 (system preamble, "
            "USER: … ASSISTANT: …</s>, ending in ASSISTANT:), whole and untruncated; the "
            "processor puts 32 query tokens for the image before the text. The Q-Former "
            "reads the newest user turn only (cut from the left past its 512 positions). "
            "Vicuna's context is 2,048 tokens: a longer prompt fails rather than being cut."
        ),
        provider_note=("vLLM has no InstructBLIP implementation (it serves BLIP-2 only): use hf."),
        fallback_template=VICUNA_V1_1_TEMPLATE,
    ),
    ModelCard(
        key="idefics3-8b",
        paper_name="Idefics3-8B-Llama3",
        checkpoint="HuggingFaceM4/Idefics3-8B-Llama3",
        provider="vllm",
        params_billion=8.46,
        kv_cache_mib_per_token=0.125,  # Llama 3 8B: 32 layers × 8 KV heads × 128
        max_model_len=8192,
        chat_template=(
            "User:<image>…<end_of_utterance>\\nAssistant: …; the image is split into "
            "up to 4×4 crops of 364 px plus a global view, 169 tokens each; one image "
            "per prompt in vLLM."
        ),
    ),
    ModelCard(
        key="llama-3.2-11b-vision",
        paper_name="Llama-3.2-11B-Vision-Instruct",
        checkpoint="meta-llama/Llama-3.2-11B-Vision-Instruct",
        provider="hf",
        params_billion=10.7,
        kv_cache_mib_per_token=0.15625,  # 40 decoder layers × 8 KV heads × 128 (conservative)
        max_model_len=8192,
        gated=True,
        chat_template=(
            "Llama 3 headers; <|image|> must be in the first user message and there "
            "must be one image only (cross-attention model); no system prompt with an "
            "image."
        ),
        provider_note=_MLLAMA_REMOVED,
    ),
    ModelCard(
        key="llama-3.2-90b-vision",
        paper_name="Llama-3.2-90B-Vision-Instruct",
        checkpoint="meta-llama/Llama-3.2-90B-Vision-Instruct",
        provider="hf",
        params_billion=88.6,
        kv_cache_mib_per_token=0.390625,  # 100 decoder layers × 8 KV heads × 128
        max_model_len=8192,
        gpus=4,
        gated=True,
        chat_template="As Llama-3.2-11B-Vision.",
        provider_note=_MLLAMA_REMOVED,
    ),
)


def card_for(model: str) -> ModelCard | None:
    """The card of a checkpoint id or key (case-insensitive), or None for other models."""
    wanted = model.casefold()
    return next(
        (c for c in MODEL_CARDS if wanted in (c.checkpoint.casefold(), c.key.casefold())),
        None,
    )


def fallback_template(model: str, model_type: str) -> str | None:
    """The chat template for a checkpoint whose processor has none: its card's, else the
    one for its config's `model_type` (a local copy or fine-tune), else None."""
    card = card_for(model)
    if card is not None and card.fallback_template is not None:
        return card.fallback_template
    return FALLBACK_TEMPLATES.get(model_type)
