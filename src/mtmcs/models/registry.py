"""Model names (`provider/model`) → providers; optional SDKs are imported only when chosen."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from mtmcs.errors import ConfigError, UsageError
from mtmcs.extras import install_hint
from mtmcs.models.base import ChatModel
from mtmcs.models.images import ImageEncoder
from mtmcs.models.judges import Judge, LLMJudge
from mtmcs.models.model_cards import card_for
from mtmcs.models.transport import MAX_REPLY_BYTES, RateLimitHook
from mtmcs.protocol.judge import DEFAULT_JUDGE

PROVIDERS = ("openai", "openai-compatible", "anthropic", "hf", "vllm", "baseline")
BASELINE_MODELS = ("baseline/refuse", "baseline/random")
BASELINE_JUDGES = ("baseline/keyword",)
HEURISTIC_JUDGE_LABEL = "heuristic (refusal keywords), not an LLM judge"
PLACEHOLDER_KEY = "EMPTY"
OPENAI_HOST = "api.openai.com"
LOCAL_PATH_PREFIXES = ("/", "./", "../", "~")


@dataclass(frozen=True, slots=True)
class LocalModelOptions:
    """Settings of models run in this process (`hf/…`, `vllm/…`); API providers ignore them."""

    batch_size: int = 16  # hf: requests per `generate`
    device: str | None = None  # hf: cpu, cuda, cuda:N or auto (default: cuda when available)
    dtype: str = "auto"  # or a torch dtype name: bfloat16, float16, float32
    max_pixels: int | None = None  # downscale larger images (aspect kept); default: the card's
    tensor_parallel: int | None = None  # vllm: GPUs to shard over (default: the model card's)


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    """Connection settings shared by every provider; the last five are for local models.

    `max_reply_bytes` caps each HTTP response body of the API providers (OpenAI,
    OpenAI-compatible, Anthropic), enforced while the body is read: a longer reply is a failed
    call ("reply larger than … cap"), never an answer. `api_key_env` names the environment
    variable whose value is the key sent to the endpoint (default: see `api_key`); only the
    name is kept here, never the key.
    """

    base_url: str | None = None
    max_retries: int = 2
    timeout: float = 120.0
    seed: int = 0
    on_rate_limit: RateLimitHook | None = None
    connections: int = 32
    max_reply_bytes: int = MAX_REPLY_BYTES
    api_key_env: str | None = None
    batch_size: int = 16
    device: str | None = None  # default: cuda when available, else cpu
    dtype: str = "auto"  # or a torch dtype name: bfloat16, float16, float32
    max_pixels: int | None = None  # downscale larger images (aspect kept) before the processor
    tensor_parallel: int | None = None  # vllm: GPUs to shard over (default: the model card's)


def split_name(name: str) -> tuple[str, str]:
    """`provider/model` → (provider, model); the model part may itself contain slashes.

    For local models (`hf/…`, `vllm/…`) the model part is a hub id
    (`hf/Qwen/Qwen2.5-VL-7B-Instruct`) or a directory when it starts with `/`, `./`, `../`
    or `~` (`hf//models/llava`, `hf/./llava`); see `local_model_source`.
    """
    provider, _, model = name.partition("/")
    if not model or provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model {name!r}: use provider/model with provider one of "
            f"{', '.join(PROVIDERS)} (e.g. openai/gpt-4o, baseline/refuse)"
        )
    return provider, model


_REASONING_MODEL = re.compile(r"^(gpt-5|o1|o3|o4)(?:[-.]|$)")


def is_reasoning_model(name: str) -> bool:
    """Whether a model is an OpenAI reasoning model (GPT-5 family, o1/o3/o4), served by
    OpenAI or an OpenAI-compatible gateway (`openai-compatible/openai/gpt-5-mini`): such
    models get the authors' GPT-5 decoding (reasoning effort, a budget for hidden
    reasoning, no temperature)."""
    provider, _, model = name.partition("/")
    if provider not in ("openai", "openai-compatible"):
        return False
    return bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1].lower()))


def is_heuristic_judge(name: str) -> bool:
    """Whether a judge name is the keyword heuristic rather than an LLM."""
    return name in BASELINE_JUDGES


def judge_kind(name: str) -> str:
    """What a judge is, as run files and tables say it: an LLM or the keyword heuristic."""
    return HEURISTIC_JUDGE_LABEL if is_heuristic_judge(name) else "LLM judge"


def create_judge(
    name: str, images: ImageEncoder, options: ProviderOptions, base_urls: Sequence[str] = ()
) -> Judge:
    """The judge `name`: the keyword heuristic, or an LLM judge over the chat model `name`
    (served from `base_urls`, see `create_model_pool`; else from `options.base_url`)."""
    if is_heuristic_judge(name):
        from mtmcs.models.baseline import KeywordJudge

        return KeywordJudge(name)
    if not base_urls:
        return LLMJudge(create_model(name, images, options, judge=True))
    return LLMJudge(create_model_pool(name, images, options, base_urls, judge=True))


def local_model_source(name: str, model: str) -> str:
    """What a local provider loads: a hub id as given, or a path-like model part as an
    existing directory (absolute, `~` expanded), never looked up on the hub.
    """
    if not model.startswith(LOCAL_PATH_PREFIXES):
        return model
    path = Path(model).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{name}: {path} is not a directory (a local model's files go there)")
    return str(path)


def base_url_problem(url: str) -> str | None:
    """What makes `url` unusable as a base URL (no scheme, a scheme other than http or
    https, no host), as the end of a sentence that starts with the URL; `None` if nothing."""
    scheme, separator, _ = url.partition("://")
    if not separator:
        if urlsplit(url).scheme.lower() in ("http", "https"):
            return "is malformed: expected http://HOST[:PORT]/PATH"
        return f"has no scheme; did you mean http://{url}?"
    if scheme.lower() not in ("http", "https"):
        return f"has the scheme {scheme}; use http:// or https://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as error:
        return f"is malformed ({error})"
    if not parts.hostname:
        return "has no host (e.g. http://127.0.0.1:8000/v1)"
    return None


def is_openai_host(url: str | None) -> bool:
    """Whether a base URL is OpenAI's own API host."""
    return url is not None and urlsplit(url).hostname == OPENAI_HOST


def api_key(name: str, options: ProviderOptions, *, judge: bool = False) -> str:
    """The API key sent to the endpoint of model `name`: the value of the variable
    `options.api_key_env` names; else ANTHROPIC_API_KEY for `anthropic/…`, OPENAI_API_KEY for
    `openai/…` and for `openai-compatible/…` on OpenAI's own host, and a placeholder for any
    other OpenAI-compatible server: OPENAI_API_KEY goes nowhere else unless named for it.

    An unset or empty variable is a `UsageError` naming it and the model (a judge's also
    says that `--judge baseline/keyword` runs offline).
    """
    provider = split_name(name)[0]
    if options.api_key_env:
        return _key(options.api_key_env, name, judge, named=True)
    if provider == "anthropic":
        return _key("ANTHROPIC_API_KEY", name, judge)
    if provider == "openai" or is_openai_host(options.base_url):
        return _key("OPENAI_API_KEY", name, judge)
    return PLACEHOLDER_KEY


def _key(variable: str, name: str, judge: bool, *, named: bool = False) -> str:
    key = os.environ.get(variable, "")
    if key:
        return key
    option = "--judge-api-key-env" if judge else "--api-key-env"
    who = name
    if judge:
        who = f"{name} (the default --judge)" if name == DEFAULT_JUDGE else f"the judge {name}"
    if named:
        message = (
            f"{option} {variable}: the environment variable {variable} is not set or empty "
            f"(it holds the API key of {who})"
        )
    else:
        message = (
            f"{who} needs an API key: set the {variable} environment variable (or name "
            f"another one with {option} NAME)"
        )
    if judge:
        message += "; --judge baseline/keyword judges offline, with no key"
    raise UsageError(message)


def create_model_pool(
    name: str,
    images: ImageEncoder,
    options: ProviderOptions,
    base_urls: Sequence[str] = (),
    *,
    judge: bool = False,
) -> ChatModel:
    """One model served from several base URLs (or from the provider's default, when none)."""
    if base_urls and split_name(name)[0] in ("hf", "vllm"):
        raise ConfigError(f"{name} runs in this process: a base URL does not apply to it")
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
            raise ConfigError(f"{name} is a heuristic judge, not a chat model (`create_judge`)")
        raise ConfigError(
            f"unknown {'judge' if judge else 'model'} {name!r}; baselines here: "
            f"{', '.join(allowed)}"
        )
    if provider == "hf":
        return _hf_model(name, local_model_source(name, model), images, options)
    if provider == "vllm":
        return _vllm_model(name, local_model_source(name, model), images, options)
    if options.base_url is not None and (problem := base_url_problem(options.base_url)):
        raise UsageError(f"{name}: the base URL {options.base_url} {problem}")
    if provider == "openai-compatible" and not options.base_url:
        raise UsageError(f"{name} needs --base-url (e.g. http://localhost:8000/v1)")
    key = api_key(name, options, judge=judge)
    if provider == "anthropic":
        from mtmcs.models.anthropic_chat import AnthropicChat

        return AnthropicChat(
            name,
            model,
            images=images,
            api_key=key,
            base_url=options.base_url,
            max_retries=options.max_retries,
            timeout=options.timeout,
            on_rate_limit=options.on_rate_limit,
            connections=options.connections,
            max_reply_bytes=options.max_reply_bytes,
        )
    from mtmcs.models.openai_chat import OpenAIChat

    compatible = provider == "openai-compatible"
    return OpenAIChat(
        name,
        model,
        images=images,
        api_key=key,
        base_url=options.base_url,
        max_retries=options.max_retries,
        timeout=options.timeout,
        token_parameter="max_tokens" if compatible else "max_completion_tokens",
        on_rate_limit=options.on_rate_limit,
        connections=options.connections,
        max_reply_bytes=options.max_reply_bytes,
    )


def _hf_model(name: str, model: str, images: ImageEncoder, options: ProviderOptions) -> ChatModel:
    try:
        from mtmcs.models.hf_local import HFChat
    except ImportError as error:
        raise ConfigError(
            f"{name} needs the hf extra: {install_hint('hf')} (and torch for your GPU); {error}"
        ) from error
    card = card_for(model)
    return HFChat(
        name,
        model,
        images=images,
        batch_size=options.batch_size,
        device=options.device,
        dtype=options.dtype,
        max_pixels=options.max_pixels or (card.max_pixels if card else None),
        seed=options.seed,
    )


def _vllm_model(name: str, model: str, images: ImageEncoder, options: ProviderOptions) -> ChatModel:
    from mtmcs.models.vllm_local import EngineSettings, VLLMChat

    settings = EngineSettings.for_model(
        model,
        tensor_parallel=options.tensor_parallel,
        dtype=options.dtype,
        max_pixels=options.max_pixels,
        seed=options.seed,
    )
    return VLLMChat(name, settings, images=images)
