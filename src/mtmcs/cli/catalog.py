"""`mtmcs list models|defences|guards|datasets`: what can be named on the command line,
read from the registries themselves (providers, model cards, defence classes, guard kinds)."""

from __future__ import annotations

import inspect

import typer
from rich.table import Table

from mtmcs.cli.console import console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="List what can be named: models, defences, guards, datasets.",
)

PROVIDER_NAMING = {
    "openai": ("openai/gpt-5-mini", "OpenAI's API; key: OPENAI_API_KEY or --api-key-env"),
    "anthropic": (
        "anthropic/claude-sonnet-4-5",
        "Anthropic's API; key: ANTHROPIC_API_KEY or --api-key-env",
    ),
    "openai-compatible": (
        "openai-compatible/NAME --base-url http://HOST:PORT/v1",
        "any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, OpenRouter…); "
        "key: --api-key-env NAME (none sent otherwise)",
    ),
    "hf": ("hf/Qwen/Qwen3-VL-8B-Instruct", "transformers in this process (extra: hf; GPU)"),
    "vllm": ("vllm/Qwen/Qwen3-VL-8B-Instruct", "vLLM in this process (extra: vllm; GPU)"),
    "baseline": (
        "baseline/random, baseline/refuse; judge baseline/keyword",
        "reference policies and a heuristic judge: offline, no model",
    ),
}
"""How each provider's models are named, and what it needs."""

GUARD_DESCRIPTIONS = {
    "llama-guard": "Llama Guard 3 / 3-Vision / 4 on a stock vLLM server (its own chat "
    "template): each prefix as one user message (--guard-format raw, the default); "
    "'safe', or 'unsafe' and categories S1–S14. --guard-format prompt: our Llama Guard 3 "
    "prompt, for pass-through templates only",
    "shieldgemma": "ShieldGemma on a stock vLLM server: one call per published policy (four), "
    "the user turns as the message and the policy as chat_template_kwargs.guideline (raw; "
    "prompt: the model card's prompt); Yes/No each, unsafe if any says Yes; text only "
    "unless --images",
    "dialogue-json": "a LLaVAShield-style dialogue guard; reads LLaVAShield's <OUTPUT> JSON "
    "(user_rating, user_dimension) or one JSON rating, category, rationale",
    "openai-moderation": "the OpenAI moderation endpoint (omni-moderation-latest)",
}
"""What each guard kind (`mtmcs guard --guard-kind`) asks and reads."""


def _first_line(text: str | None) -> str:
    return inspect.cleandoc(text or "").split("\n\n")[0].replace("\n", " ")


@app.command()
def models() -> None:
    """Providers (how to name a model) and the paper's open models (model cards)."""
    from mtmcs.models.model_cards import MODEL_CARDS
    from mtmcs.models.registry import PROVIDERS

    providers = Table(title="providers: --model / --judge PROVIDER/MODEL")
    for header in ("provider", "example", "what it needs"):
        providers.add_column(header, overflow="fold")
    for provider in PROVIDERS:
        example, needs = PROVIDER_NAMING[provider]
        providers.add_row(provider, example, needs)
    console.print(providers)
    cards = Table(title="the paper's open models (vllm/ or hf/ + checkpoint; see docs/models.md)")
    for header in ("paper name", "checkpoint", "provider", "GPUs (80 GB)"):
        cards.add_column(header, overflow="fold")
    for card in MODEL_CARDS:
        cards.add_row(card.paper_name, card.checkpoint, card.provider, str(card.gpus))
    console.print(cards)


@app.command()
def defences() -> None:
    """The inference-time defences of `mtmcs run --defense`."""
    from mtmcs.guardrails.defences import DEFENCE_CLASSES, DEFENCES

    table = Table(title="defences: mtmcs run --defense NAME")
    for header in ("name", "what it does", "asks the judge"):
        table.add_column(header, overflow="fold")
    for name in DEFENCES:
        cls = DEFENCE_CLASSES[name]
        summary = _first_line(cls.__doc__).removeprefix(f"`{name}`: ")
        asks = "yes" if cls.needs_judge(False) else "optional" if cls.needs_judge(True) else "no"
        table.add_row(name, summary, asks)
    console.print(table)


@app.command()
def guards() -> None:
    """The guard kinds of `mtmcs guard --guard-kind`."""
    from mtmcs.guardrails.guards import GUARD_KINDS

    table = Table(title="guard kinds: mtmcs guard --guard-kind KIND")
    for header in ("kind", "what it asks and reads"):
        table.add_column(header, overflow="fold")
    for kind in GUARD_KINDS:
        table.add_row(kind, GUARD_DESCRIPTIONS[kind])
    console.print(table)


@app.command()
def datasets() -> None:
    """What `--dataset` takes."""
    from mtmcs.data.loaders import OFFICIAL_DATASET

    table = Table(title="datasets: --dataset NAME")
    for header in ("name", "what it is"):
        table.add_column(header, overflow="fold")
    table.add_row("official", f"{OFFICIAL_DATASET} on the Hugging Face hub (the default)")
    table.add_row(
        "sample", "bundled with the package, offline: 12 rows per split, with real photos"
    )
    table.add_row(
        "DIR",
        "a local directory: parquet in the official schema, or JSONL + image files "
        "(mtmcs data validate DIR checks it; mtmcs build makes one from images)",
    )
    console.print(table)
