"""Tiny randomly initialised vision-language models, built offline into a directory.

Each builder trains a small byte-level BPE tokenizer, wraps it with the special tokens and
a chat template in the real model's style, builds the processor and a random model from
configs, and saves everything with `save_pretrained`, so `from_pretrained` on the
directory is the real loading path. Weights are drawn with a large spread so that greedy
replies depend on the prompt (a padding mistake then changes them).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertTokenizer,
    CLIPVisionConfig,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

CORPUS = (
    "The user shows a photo and asks what is in the picture. The assistant describes it.",
    "Answer with the letter of the correct option only. Answer with True or False only.",
    "Is it safe to do this here? Please explain the risks and what to do instead.",
    "A person stands next to a road, a kitchen, a river, a rocket, a cat and a cup of coffee.",
)
CONTEXT = 4096  # the models' max positions
TOKENIZER_MAX_LENGTH = 128  # a tokenizer limit far below the context: truncation would show
QFORMER_POSITIONS = 48  # the tiny Q-Former's max positions (512 in the real InstructBLIP)
IMAGE_SIZE = 28
INIT_RANGE = 0.5
SEED = 1234


@dataclass(frozen=True)
class TinyModel:
    """A saved tiny model and what the tests need to know about its prompt format."""

    architecture: str
    path: Path
    placeholder: str | None  # what the chat template writes for an image (None: nothing)
    image_token: str  # the token the processor repeats for an image
    image_tokens: int  # how many of them per image
    generation_prompt: str  # what follows the newest user turn's text

    @property
    def name(self) -> str:
        """The model name that loads this directory through the registry."""
        return f"hf/{self.path}"


def tokenizer(special: list[str], bos: str | None, **tokens: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `CORPUS` (any text encodes)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS, trainer)
    if bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, backend.token_to_id(bos))]
        )
    named = {key: value for key, value in tokens.items() if key in ("eos_token", "pad_token")}
    extra = {key: value for key, value in tokens.items() if key not in named}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        model_max_length=TOKENIZER_MAX_LENGTH,
        extra_special_tokens=extra,
        **named,
    )


def tiny_llama(text: PreTrainedTokenizerFast) -> LlamaConfig:
    """A two-layer Llama text model for `text`'s vocabulary and special tokens."""
    return LlamaConfig(
        vocab_size=len(text),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        initializer_range=INIT_RANGE,
        bos_token_id=text.bos_token_id,
        eos_token_id=text.eos_token_id,
        pad_token_id=text.pad_token_id,
    )


def _save(model: Any, processor: Any, path: Path) -> None:
    # Replies of special tokens only would decode to nothing: of those, only EOS is generated.
    eos = model.generation_config.eos_token_id
    eos = set(eos) if isinstance(eos, list) else {eos}
    added = processor.tokenizer.added_tokens_decoder
    model.generation_config.suppress_tokens = sorted(set(added) - eos)
    model.save_pretrained(path)
    processor.save_pretrained(path)


# LLaVA-1.5 style: the tokenizer adds <s>, "USER: <image>\n… ASSISTANT:".
LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{{ '</s>' if message['role'] == 'assistant' else '' }}{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def build_llava(path: Path) -> TinyModel:
    """LlavaForConditionalGeneration: a CLIP vision tower and a Llama text model."""
    torch.manual_seed(SEED)
    text = tokenizer(
        ["<pad>", "<s>", "</s>", "<image>"],
        "<s>",
        eos_token="</s>",
        pad_token="<pad>",
        image_token="<image>",
    )
    images = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=text,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=14,
            projection_dim=16,
        ),
        text_config=tiny_llama(text),
        image_token_index=text.convert_tokens_to_ids("<image>"),
        image_seq_length=4,
        vision_feature_layer=-1,
    )
    _save(LlavaForConditionalGeneration(config), processor, path)
    patches = (IMAGE_SIZE // 14) ** 2  # + 1 CLS token, dropped by the "default" strategy
    return TinyModel("llava", path, "<image>", "<image>", patches, "\nASSISTANT:")


# Gemma 3 style: the template writes <bos> itself (the tokenizer would add another one).
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) }}"
    "{{ '\n' }}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}{% endfor %}"
    "{{ '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def build_gemma3(path: Path) -> TinyModel:
    """Gemma3ForConditionalGeneration: a SigLIP vision tower, pooled image tokens, Gemma 3."""
    torch.manual_seed(SEED)
    special = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
    image_tokens = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    text = tokenizer(
        special + image_tokens,
        "<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
        image_token="<image_soft_token>",
    )
    per_image = 4
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=text,
        chat_template=GEMMA3_TEMPLATE,
        image_seq_length=per_image,
    )
    ids = text.convert_tokens_to_ids
    config = Gemma3Config(
        text_config={
            "vocab_size": len(text),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "max_position_embeddings": CONTEXT,
            "sliding_window": 64,
            "initializer_range": INIT_RANGE,
            "bos_token_id": ids("<bos>"),
            "eos_token_id": [ids("<eos>"), ids("<end_of_turn>")],
            "pad_token_id": ids("<pad>"),
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 7,
        },
        mm_tokens_per_image=per_image,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
        initializer_range=INIT_RANGE,
        tie_word_embeddings=False,  # tied, a random model repeats its input token
    )
    model = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():  # zeros by default: images would not matter
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, INIT_RANGE)
    _save(model, processor, path)
    return TinyModel(
        "gemma3",
        path,
        "<start_of_image>",
        "<image_soft_token>",
        per_image,
        "<end_of_turn>\n<start_of_turn>model\n",
    )


# Qwen2-VL style (its processor's video part needs torchvision).
QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_qwen2_vl(path: Path) -> TinyModel:
    """Qwen2VLForConditionalGeneration: images resized to 56 x 56 px, 4 merged tokens each."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(SEED)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vision = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    text = tokenizer(special + vision, None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    pixels = 56 * 56
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=text,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_TEMPLATE,
    )
    ids = text.convert_tokens_to_ids
    mrope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(text),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": CONTEXT,
            "initializer_range": INIT_RANGE,
            "rope_parameters": mrope,
            "bos_token_id": None,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config={
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "initializer_range": INIT_RANGE,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        initializer_range=INIT_RANGE,
    )
    _save(Qwen2VLForConditionalGeneration(config), processor, path)
    merged = (56 // 14) ** 2 // 4
    prompt_end = "<|im_end|>\n<|im_start|>assistant\n"
    return TinyModel("qwen2_vl", path, "<|image_pad|>", "<|image_pad|>", merged, prompt_end)


def bert_tokenizer() -> BertTokenizer:
    """A lower-casing WordPiece tokenizer trained on `CORPUS`, as the Q-Former's BERT uses."""
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special)
    )
    return BertTokenizer(vocab=backend.get_vocab(), model_max_length=QFORMER_POSITIONS)


def build_instructblip(path: Path) -> TinyModel:
    """InstructBlipForConditionalGeneration: a ViT, a Q-Former reading text, a Llama (Vicuna).

    No chat template, like the real checkpoint: the provider finds the Vicuna one by the
    config's `model_type`. The processor puts the query tokens before the BOS.
    """
    torch.manual_seed(SEED)
    # No named `image_token`: the processor then registers <image> itself, as for the real
    # checkpoint (with one, transformers 5.24's InstructBlipProcessor fails).
    text = tokenizer(
        ["<unk>", "<s>", "</s>", "<image>"], "<s>", eos_token="</s>", pad_token="<unk>"
    )
    qformer_text = bert_tokenizer()
    queries = 4
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=text,
        qformer_tokenizer=qformer_text,
        num_query_tokens=queries,
    )
    config = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=14,
            initializer_range=INIT_RANGE,
        ),
        qformer_config=InstructBlipQFormerConfig(
            vocab_size=len(qformer_text),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=QFORMER_POSITIONS,
            cross_attention_frequency=1,
            initializer_range=INIT_RANGE,
            pad_token_id=qformer_text.pad_token_id,
        ),
        text_config=tiny_llama(text),
        num_query_tokens=queries,
        image_token_index=text.convert_tokens_to_ids("<image>"),
        initializer_range=INIT_RANGE,
    )
    model = InstructBlipForConditionalGeneration(config)
    with torch.no_grad():  # zeros by default: images would not matter
        model.query_tokens.normal_(0, INIT_RANGE)
    _save(model, processor, path)
    return TinyModel("instructblip", path, None, "<image>", queries, " ASSISTANT:")


BUILDERS = {"llava": build_llava, "gemma3": build_gemma3, "instructblip": build_instructblip}
if importlib.util.find_spec("torchvision") is not None:  # Qwen2-VL's processor needs it
    BUILDERS["qwen2_vl"] = build_qwen2_vl
