"""Model names (`provider/model`) → providers; optional SDKs are imported only when chosen."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from mtmcs.errors import ConfigError
from mtmcs.models.base import ChatModel
from mtmcs.models.images import ImageEncoder
from mtmcs.models.transport import RateLimitHook

PROVIDERS = ("openai", "openai-compatible", "anthropic", "baseline")
BASELINE_MODELS = ("baseline/refuse", "baseline/random")
BASELINE_JUDGES = ("baseline/keyword",)
PLACEHOLDER_KEY = "EMPTY"


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    """Connection settings shared by every provider."""

    base_url: str | None = None
    max_retries: int = 2
    timeout: float = 120.0
    seed: int = 0
    on_rate_limit: RateLimitHook | None = None
    connections: int = 32


def split_name(name: str) -> tuple[str, str]:
    """`provider/model` → (provider, model); the model part may itself contain slashes."""
    provider, _, model = name.partition("/")
    if not model or provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model {name!r}: use provider/model with provider one of "
            f"{', '.join(PROVIDERS)} (e.g. openai/gpt-4o, baseline/refuse)"
        )
    return provider, model


def is_heuristic_judge(name: str) -> bool:
    """Whether a judge name is the keyword heuristic rather than an LLM."""
    return name in BASELINE_JUDGES


def _key(variable: str, name: str) -> str:
    key = os.environ.get(variable, "")
    if not key:
        raise ConfigError(f"{name} needs an API key: set the {variable} environment variable")
    return key


def create_model_pool(
    name: str,
    images: ImageEncoder,
    options: ProviderOptions,
    base_urls: Sequence[str] = (),
    *,
    judge: bool = False,
) -> ChatModel:
    """One model served from several base URLs (or from the provider's default, when none)."""
    if len(base_urls) <= 1:
        url = base_urls[0] if base_urls else None
        return create_model(name, images, replace(options, base_url=url), judge=judge)
    from mtmcs.models.endpoints import EndpointPool

    return EndpointPool(
        name,
        [
            create_model(name, images, replace(options, base_url=url), judge=judge)
            for url in base_urls
        ],
    )


def create_model(
    name: str, images: ImageEncoder, options: ProviderOptions, *, judge: bool = False
) -> ChatModel:
    """Build the provider for a model name."""
    provider, model = split_name(name)
    if provider == "baseline":
        from mtmcs.models import baseline

        allowed = BASELINE_JUDGES if judge else BASELINE_MODELS
        if name == "baseline/refuse" and not judge:
            return baseline.RefuseModel(name)
        if name == "baseline/random" and not judge:
            return baseline.RandomModel(name, options.seed)
        if name == "baseline/keyword" and judge:
            return baseline.KeywordJudge(name)
        raise ConfigError(
            f"unknown {'judge' if judge else 'model'} {name!r}; baselines here: "
            f"{', '.join(allowed)}"
        )
    if provider == "anthropic":
        from mtmcs.models.anthropic_chat import AnthropicChat

        return AnthropicChat(
            name,
            model,
            images=images,
            api_key=_key("ANTHROPIC_API_KEY", name),
            base_url=options.base_url,
            max_retries=options.max_retries,
            timeout=options.timeout,
            on_rate_limit=options.on_rate_limit,
            connections=options.connections,
        )
    from mtmcs.models.openai_chat import OpenAIChat

    if provider == "openai-compatible":
        if not options.base_url:
            raise ConfigError(f"{name} needs --base-url (e.g. http://localhost:8000/v1)")
        api_key = os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY
        return OpenAIChat(
            name,
            model,
            images=images,
            api_key=api_key,
            base_url=options.base_url,
            max_retries=options.max_retries,
            timeout=options.timeout,
            token_parameter="max_tokens",
            on_rate_limit=options.on_rate_limit,
            connections=options.connections,
        )
    return OpenAIChat(
        name,
        model,
        images=images,
        api_key=_key("OPENAI_API_KEY", name),
        base_url=options.base_url,
        max_retries=options.max_retries,
        timeout=options.timeout,
        token_parameter="max_completion_tokens",
        on_rate_limit=options.on_rate_limit,
        connections=options.connections,
    )
