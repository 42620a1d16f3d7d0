"""`mtmcs run`: the benchmark on one model, then its metrics.

The options come in the groups `mtmcs run --help` shows (data, model, judge, decoding,
defence, scale-out, local models, output); each group is checked and turned into the typed
value the engine takes (`RunSettings`, `LocalModelOptions`, the defence fields), and
together they make the `RunConfig` of the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from mtmcs.cli.console import Interrupted, call_progress, console, errors
from mtmcs.cli.options import (
    DEFAULT_DATASET,
    MODALITY_HELP,
    REVISION_HELP,
    SPLIT_HELP,
    base_urls,
    choice,
    dataset_option,
    default_dir,
    key_env_option,
    modalities,
    splits,
    writable_dir,
)
from mtmcs.cli.run_output import print_plan, print_summary
from mtmcs.data.defence_texts import TextChoice
from mtmcs.engine.finished import finished_path
from mtmcs.engine.run import RUBRIC_SOURCES, RunConfig, plan_run, run_benchmark
from mtmcs.engine.scheduler import Role, RunSettings
from mtmcs.errors import ConfigError, UsageError
from mtmcs.guardrails.defences import DEFENCES, DefenceName, Scope
from mtmcs.guardrails.defences.immune import (
    IMMUNE_CANDIDATES,
    IMMUNE_MODES,
    IMMUNE_TOP_K,
    IMMUNE_WEIGHT,
    ImmuneOptions,
    ImmuneSettings,
    is_classifier_reward,
)
from mtmcs.models.registry import LocalModelOptions, ProviderOptions, api_key
from mtmcs.models.transport import MAX_REPLY_BYTES
from mtmcs.protocol.judge import DEFAULT_JUDGE
from mtmcs.protocol.messages import IMAGE_ORDERS, IMAGE_PLACEMENTS
from mtmcs.protocol.prompts import REASONING_EFFORTS, ReasoningEffort
from mtmcs.protocol.text import printable
from mtmcs.scoring.rundir import RunDir

DATA = "Data"
MODEL = "Model"
JUDGE = "Judge"
DECODING = "Decoding"
DEFENCE = "Defence"
IMMUNE = "Defence: Immune"
SCALE_OUT = "Scale-out"
LOCAL = "Local models"
OUTPUT = "Output"
Selector = Literal["retrieval", "judge"]
SELECTORS: tuple[Selector, ...] = ("retrieval", "judge")
SCOPES: tuple[Scope, ...] = ("all", "turns")


@dataclass(frozen=True)
class DefenceChoice:
    """The defence options: which defence, its text, AdaShield-A's selector and the scope."""

    name: DefenceName | None = None
    text: TextChoice = "original"
    texts_dir: Path | None = None
    selector: Selector = "retrieval"
    scope: Scope = "all"


def decoding_settings(
    *,
    temperature: str | None,
    seed: int | None,
    max_tokens: list[str] | None,
    judge_max_tokens: int | None,
    model_arg: list[str] | None,
    reasoning_effort: str | None,
    judge_reasoning_effort: str | None,
    image_placement: str,
    image_order: str,
    max_connections: int,
    judge_max_connections: int,
) -> RunSettings:
    """The decoding and connection options as the scheduler's `RunSettings`."""
    omit_temperature = temperature is not None and temperature.lower() == "none"
    try:
        chosen = None if temperature is None or omit_temperature else float(temperature)
    except ValueError:
        raise typer.BadParameter(
            "expected a number or 'none'", param_hint="--temperature"
        ) from None
    every_kind, by_kind = token_limits(max_tokens)
    return RunSettings(
        temperature=chosen,
        omit_temperature=omit_temperature,
        seed=seed,
        max_tokens=every_kind,
        max_tokens_by_kind=by_kind,
        judge_max_tokens=judge_max_tokens,
        model_args=provider_arguments(model_arg),
        reasoning_effort=_effort(reasoning_effort, "--reasoning-effort"),
        judge_reasoning_effort=_effort(judge_reasoning_effort, "--judge-reasoning-effort"),
        image_placement=choice(image_placement, IMAGE_PLACEMENTS, "--image-placement"),
        image_order=choice(image_order, IMAGE_ORDERS, "--image-order"),
        max_connections=max_connections,
        judge_max_connections=judge_max_connections,
    )


TOKEN_KINDS = ("turn", "mcq", "tf")
RESERVED_ARGUMENTS = {
    "model": "--model",
    "messages": "the dataset",
    "stream": "nothing: replies are read whole",
    "n": "nothing: one reply per call",
    "max_tokens": "--max-tokens",
    "max_completion_tokens": "--max-tokens",
    "temperature": "--temperature",
    "seed": "--seed",
    "reasoning_effort": "--reasoning-effort",
    "thinking": "--reasoning-effort",
    "system": "the protocol's prompts",
}
"""Body fields the run sets itself, and the option that sets them instead of -M."""


def token_limits(values: list[str] | None) -> tuple[int | None, tuple[tuple[str, int], ...]]:
    """`--max-tokens` values: the limit of every kind (`N`) and per-kind limits (`KIND=N`)."""
    every: int | None = None
    by_kind: dict[str, int] = {}
    for value in values or ():
        kind, _, number = value.rpartition("=")
        if kind and kind not in TOKEN_KINDS:
            raise UsageError(f"--max-tokens {value}: the kind is one of {', '.join(TOKEN_KINDS)}")
        if not number.isdigit() or int(number) < 1:
            raise UsageError(f"--max-tokens {value}: expected N or KIND=N with N ≥ 1")
        if kind:
            by_kind[kind] = int(number)
        else:
            every = int(number)
    return every, tuple(sorted(by_kind.items()))


def provider_arguments(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`-M KEY=VALUE` values as (key, JSON text) pairs, sorted: VALUE as JSON when it parses,
    else as a string; a key the run sets itself is refused, naming the option to use."""
    import json

    pairs: dict[str, str] = {}
    for value in values or ():
        key, equals, raw = value.partition("=")
        key = key.strip()
        if not equals or not key:
            raise UsageError(f"-M {value}: expected KEY=VALUE, e.g. -M top_p=0.9")
        if key in RESERVED_ARGUMENTS:
            raise UsageError(f"-M {key}: set by the run; use {RESERVED_ARGUMENTS[key]}")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        pairs[key] = json.dumps(parsed, ensure_ascii=False, sort_keys=True)
    return tuple(sorted(pairs.items()))


def _effort(value: str | None, option: str) -> ReasoningEffort | None:
    return None if value is None else choice(value, REASONING_EFFORTS, option)


def defence_choice(
    defense: str | None,
    defense_text: str,
    selector: str,
    scope: str,
    texts_dir: Path | None = None,
) -> DefenceChoice:
    """The defence options, checked: `--defense-text` is `original`, `ours` or a file."""
    name = None if defense is None else choice(defense, DEFENCES, "--defense")
    text: TextChoice
    if defense_text in ("original", "ours"):
        text = "ours" if defense_text == "ours" else "original"
    elif Path(defense_text).is_file():
        text = Path(defense_text)
    else:
        raise ConfigError(f"--defense-text {defense_text}: not original, ours or a readable file")
    return DefenceChoice(
        name,
        text,
        texts_dir,
        choice(selector, SELECTORS, "--adashield-selector"),
        choice(scope, SCOPES, "--defense-scope"),
    )


def immune_options(
    defense: str | None,
    *,
    reward_model: str | None,
    reward_base_url: list[str] | None,
    reward_api_key_env: str | None,
    reward_max_connections: int,
    allow_judge_reward: bool,
    immune_mode: str | None,
    immune_candidates: int,
    immune_temperature: float | None,
    immune_weight: float,
    immune_top_k: int,
    reward_questions: bool,
) -> ImmuneOptions:
    """Immune's options, checked; given with another defence (or none), a usage error."""
    options = ImmuneOptions(
        reward_model=reward_model,
        reward_base_urls=base_urls(reward_base_url, "--reward-base-url", reward_model or ""),
        reward_api_key_env=reward_api_key_env,
        reward_max_connections=reward_max_connections,
        allow_judge_reward=allow_judge_reward,
        mode=None if immune_mode is None else choice(immune_mode, IMMUNE_MODES, "--immune-mode"),
        candidates=immune_candidates,
        temperature=immune_temperature,
        weight=immune_weight,
        top_k=immune_top_k,
        reward_questions=reward_questions,
    )
    if defense != "immune" and options != ImmuneOptions():
        raise UsageError(
            "--reward-model and the --immune-… / --reward-… options apply to --defense immune only"
        )
    return options


def check_reward_key(immune: ImmuneSettings) -> None:
    """A missing API key of Immune's reward model stops the run before it starts."""
    name = immune.reward_model
    if is_classifier_reward(name) or name.startswith("baseline/"):
        return  # runs here
    urls = immune.reward_base_urls
    options = ProviderOptions(urls[0] if urls else None, api_key_env=immune.reward_api_key_env)
    try:
        api_key(name, options)
    except UsageError as error:
        message = str(error).replace("--api-key-env", "--reward-api-key-env")
        raise UsageError(f"Immune's reward model: {message}") from None


def default_out(model: str, defense: str | None = None) -> Path:
    """`runs/<model>` (slashes as `__`), `+<defence>` when defended."""
    return default_dir("", model, f"+{defense}" if defense else "")


def execute(config: RunConfig, ray: str | None, ray_shards: int) -> bool:
    """Run `config` with progress bars (as Ray tasks with `ray`), print its summary; whether
    every call was answered."""
    progress = call_progress()
    tasks: dict[Role, Any] = {}

    def on_start(planned: Mapping[Role, int]) -> None:
        tasks["model"] = progress.add_task(f"model {config.model}", total=planned["model"])
        tasks["judge"] = progress.add_task(f"judge {config.judge}", total=planned["judge"])

    if ray is not None:
        from mtmcs.engine.ray_run import run_with_ray

        with progress:
            shard_task = progress.add_task("Ray shards", total=None)
            result = run_with_ray(
                config,
                ray,
                ray_shards,
                lambda done, total: progress.update(shard_task, completed=done, total=total),
            )
    else:
        try:
            with progress:
                result = run_benchmark(config, on_start, lambda role: progress.advance(tasks[role]))
        except KeyboardInterrupt:
            raise Interrupted(sum(int(task.completed) for task in progress.tasks)) from None
    if result.up_to_date:
        console.print(
            f"{config.out} is up to date: finished by this command on the same data, code and "
            f"store, unchanged since; no call made, nothing written (delete "
            f"{finished_path(config.out)} to compute it again from the store)",
            soft_wrap=True,
            markup=False,
        )
    print_summary(RunDir(config.out), up_to_date=result.up_to_date)
    if not result.complete:
        errors.print(
            "[yellow]incomplete run:[/] some calls failed (excluded from the metrics); "
            "rerun the same command to retry only them. Most frequent causes:",
            soft_wrap=True,
        )
        for role, counts in result.outcome.counts.items():
            for cause, count in counts.causes.most_common(5):
                errors.print(
                    f"  {role}: {count} × {printable(cause)}", markup=False, soft_wrap=True
                )
    return result.complete


def run(
    *,
    # Data
    dataset: Annotated[str, dataset_option(DATA)] = DEFAULT_DATASET,
    revision: Annotated[str | None, typer.Option(help=REVISION_HELP, rich_help_panel=DATA)] = None,
    split: Annotated[list[str] | None, typer.Option(help=SPLIT_HELP, rich_help_panel=DATA)] = None,
    modality: Annotated[
        list[str] | None, typer.Option(help=MODALITY_HELP, rich_help_panel=DATA)
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="First N rows of each split.", rich_help_panel=DATA)
    ] = None,
    variants: Annotated[
        bool,
        typer.Option(
            help="Also run multimodal dialogues on each row's variant images.",
            rich_help_panel=DATA,
        ),
    ] = False,
    # Model
    model: Annotated[
        str, typer.Option(help="Model under test, provider/model.", rich_help_panel=MODEL)
    ],
    base_url: Annotated[
        list[str] | None,
        typer.Option(
            help="Server of the model under test; repeat for replicas (least busy first).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    api_key_env: Annotated[
        str | None, key_env_option("--api-key-env", "the model under test", MODEL)
    ] = None,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Model calls in flight.", rich_help_panel=MODEL)
    ] = 32,
    max_retries: Annotated[
        int,
        typer.Option(min=0, help="SDK retries per call (model and judge).", rich_help_panel=MODEL),
    ] = 2,
    timeout: Annotated[
        float,
        typer.Option(min=1, help="Seconds per call (model and judge).", rich_help_panel=MODEL),
    ] = 120.0,
    max_reply_bytes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Cap on each HTTP reply body (model and judge); a longer reply is a failed "
            "call, never stored as an answer.",
            rich_help_panel=MODEL,
        ),
    ] = MAX_REPLY_BYTES,
    # Judge
    judge: Annotated[
        str,
        typer.Option(help="Judge, provider/model or baseline/keyword.", rich_help_panel=JUDGE),
    ] = DEFAULT_JUDGE,
    judge_base_url: Annotated[
        list[str] | None,
        typer.Option(help="Server of the judge; repeat for replicas.", rich_help_panel=JUDGE),
    ] = None,
    judge_api_key_env: Annotated[
        str | None, key_env_option("--judge-api-key-env", "the judge", JUDGE)
    ] = None,
    judge_max_connections: Annotated[
        int, typer.Option(min=1, help="Judge calls in flight.", rich_help_panel=JUDGE)
    ] = 16,
    captions: Annotated[
        Path | None,
        typer.Option(help="Captions JSON (id → caption) for the judge.", rich_help_panel=JUDGE),
    ] = None,
    rubrics: Annotated[
        str,
        typer.Option(
            help="Judge rubrics: ours (default; the authors' score anchors in our words) or "
            "authors (their text verbatim, downloaded at a pinned commit and checksummed).",
            rich_help_panel=JUDGE,
        ),
    ] = "ours",
    rubrics_dir: Annotated[
        Path | None,
        typer.Option(
            help="With --rubrics authors: a local copy of their rubric files (checksummed "
            "like the download), for machines without network.",
            rich_help_panel=JUDGE,
        ),
    ] = None,
    # Decoding
    temperature: Annotated[
        str | None,
        typer.Option(
            help="Temperature of model calls (default: the authors' 0.1); 'none' sends none, "
            "for models that refuse one (e.g. OpenAI reasoning models).",
            rich_help_panel=DECODING,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Sampling seed sent to the model.", rich_help_panel=DECODING)
    ] = None,
    max_tokens: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[KIND=]N",
            help="Token limit of every model call, or of one kind: turn=N, mcq=N, tf=N "
            "(repeat; default: the authors' 128 / 64 / 32 for turns / MCQ / TF; 256 for "
            "reasoning models, hidden reasoning included).",
            rich_help_panel=DECODING,
        ),
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--model-arg",
            "-M",
            metavar="KEY=VALUE",
            help="Provider argument sent with every call to the model under test (repeat; "
            "VALUE is read as JSON when it parses, else as text), e.g. -M top_p=0.9 "
            "-M 'stop=[\"###\"]'. API providers only; recorded in the summary and part of "
            "each call's store key.",
            rich_help_panel=DECODING,
        ),
    ] = None,
    judge_max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Token limit of judge calls (default: 128; 256 for a reasoning judge).",
            rich_help_panel=DECODING,
        ),
    ] = None,
    reasoning_effort: Annotated[
        str | None,
        typer.Option(
            help="Reasoning effort of the model under test: none, minimal, low, medium, high "
            "(default: low for OpenAI reasoning models, as the authors ran GPT-5.x; unset "
            "otherwise). Anthropic models: an extended-thinking budget.",
            rich_help_panel=DECODING,
        ),
    ] = None,
    judge_reasoning_effort: Annotated[
        str | None,
        typer.Option(
            help="Reasoning effort of the judge (default: low for a reasoning judge).",
            rich_help_panel=DECODING,
        ),
    ] = None,
    image_placement: Annotated[
        str,
        typer.Option(
            help="newest: image on the newest user turn (default, as the authors); first: on R1.",
            rich_help_panel=DECODING,
        ),
    ] = "newest",
    image_order: Annotated[
        str,
        typer.Option(
            help="before: image before the text of its message (default, as the authors' "
            "local-model wrappers); after: after it (their OpenAI wrapper).",
            rich_help_panel=DECODING,
        ),
    ] = "before",
    # Defence
    defense: Annotated[
        str | None,
        typer.Option(
            help=f"Run the model behind a defence: {', '.join(DEFENCES)}.",
            rich_help_panel=DEFENCE,
        ),
    ] = None,
    defense_text: Annotated[
        str,
        typer.Option(
            help="The text of dpp / adashield-s: original (its authors' published text, "
            "fetched at a pinned commit; default), ours (our contextual rewording, placed as "
            "before), or a FILE of your own; for adashield-a, original or ours sets where "
            "its prompts go.",
            rich_help_panel=DEFENCE,
        ),
    ] = "original",
    defense_texts_dir: Annotated[
        Path | None,
        typer.Option(
            help="A local copy of the published defence texts (AdaShield/…, DPP/README.md, "
            "as in their repositories) instead of downloading them.",
            rich_help_panel=DEFENCE,
        ),
    ] = None,
    adashield_selector: Annotated[
        str,
        typer.Option(
            help="How adashield-a picks its prompt: retrieval (by embedding similarity to "
            "example attacks, with pass-through below a threshold; default) or judge.",
            rich_help_panel=DEFENCE,
        ),
    ] = "retrieval",
    defense_scope: Annotated[
        str,
        typer.Option(
            help="all: defend turns and questions (default); turns: turns only. (Immune "
            "answers questions with the plain model unless --reward-questions.)",
            rich_help_panel=DEFENCE,
        ),
    ] = "all",
    # Defence: Immune
    reward_model: Annotated[
        str | None,
        typer.Option(
            help="Immune's reward model, apart from the judge (required with --defense "
            "immune): provider/model (an LLM asked for a 1-5 safety score), hf-reward/<id or "
            "dir> (a local sequence-classification reward model, its logit the reward) or "
            "baseline/keyword (refusal phrases, offline). 'judge' (or the judge's model) needs "
            "--allow-judge-reward.",
            rich_help_panel=IMMUNE,
        ),
    ] = None,
    reward_base_url: Annotated[
        list[str] | None,
        typer.Option(
            help="Server of the reward model; repeat for replicas.", rich_help_panel=IMMUNE
        ),
    ] = None,
    reward_api_key_env: Annotated[
        str | None, key_env_option("--reward-api-key-env", "Immune's reward model", IMMUNE)
    ] = None,
    reward_max_connections: Annotated[
        int, typer.Option(min=1, help="Reward-model calls in flight.", rich_help_panel=IMMUNE)
    ] = 16,
    allow_judge_reward: Annotated[
        bool,
        typer.Option(
            help="Let the judge be Immune's reward model (it then both picks the replies and "
            "grades them, biasing Immune upward; the run is labelled so).",
            rich_help_panel=IMMUNE,
        ),
    ] = False,
    immune_mode: Annotated[
        str | None,
        typer.Option(
            help="guided: Immune's reward-guided decoding, token by token (hf/ models, local "
            "reward model; their default); best-of-n: the best-of-N approximation, whole "
            "candidates scored (every other model's default).",
            rich_help_panel=IMMUNE,
        ),
    ] = None,
    immune_candidates: Annotated[
        int,
        typer.Option(min=1, help="best-of-n: candidates per answer.", rich_help_panel=IMMUNE),
    ] = IMMUNE_CANDIDATES,
    immune_temperature: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="best-of-n: the candidates' temperature (default: the run's, 0.1 by the "
            "protocol); guided: sample among the rescored top-k at this temperature (default: "
            "argmax).",
            rich_help_panel=IMMUNE,
        ),
    ] = None,
    immune_weight: Annotated[
        float,
        typer.Option(
            help="guided: the reward's weight w in logit + w · reward.", rich_help_panel=IMMUNE
        ),
    ] = IMMUNE_WEIGHT,
    immune_top_k: Annotated[
        int,
        typer.Option(
            min=1, help="guided: next tokens rescored at each step.", rich_help_panel=IMMUNE
        ),
    ] = IMMUNE_TOP_K,
    reward_questions: Annotated[
        bool,
        typer.Option(
            help="Reward-guide the intent questions too (with --defense-scope all); by default "
            "the plain model answers them, so the reward model never sees a question.",
            rich_help_panel=IMMUNE,
        ),
    ] = False,
    # Scale-out
    ray: Annotated[
        str | None,
        typer.Option(
            help="Run shards as Ray tasks: 'local' (a Ray instance here), 'auto' (the running "
            "cluster) or a Ray address.",
            rich_help_panel=SCALE_OUT,
        ),
    ] = None,
    ray_shards: Annotated[
        int, typer.Option(min=1, help="Shards of rows for --ray.", rich_help_panel=SCALE_OUT)
    ] = 8,
    # Local models
    batch_size: Annotated[
        int,
        typer.Option(min=1, help="hf/ models: requests per generate call.", rich_help_panel=LOCAL),
    ] = 16,
    device: Annotated[
        str | None,
        typer.Option(
            help="hf/ models: cpu, cuda, cuda:N or auto (shard over the GPUs).",
            rich_help_panel=LOCAL,
        ),
    ] = None,
    dtype: Annotated[
        str,
        typer.Option(
            help="hf/ and vllm/ models: auto, bfloat16, float16 or float32.",
            rich_help_panel=LOCAL,
        ),
    ] = "auto",
    max_pixels: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="hf/ and vllm/ models: downscale larger images (aspect kept).",
            rich_help_panel=LOCAL,
        ),
    ] = None,
    tensor_parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="vllm/ models: GPUs to shard over (default: the model card's).",
            rich_help_panel=LOCAL,
        ),
    ] = None,
    # Output
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (store + summary); default runs/<model>.", rich_help_panel=OUTPUT
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print the planned calls and a time estimate; call nothing.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    assume_latency: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds per call assumed by --dry-run's estimate.", rich_help_panel=OUTPUT
        ),
    ] = 1.0,
) -> None:
    """Run (or resume) the benchmark on one model and print its metrics."""
    model_urls = base_urls(base_url, "--base-url", model)
    judge_urls = base_urls(judge_base_url, "--judge-base-url", judge)
    settings = decoding_settings(
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        judge_max_tokens=judge_max_tokens,
        model_arg=model_arg,
        reasoning_effort=reasoning_effort,
        judge_reasoning_effort=judge_reasoning_effort,
        image_placement=image_placement,
        image_order=image_order,
        max_connections=max_connections,
        judge_max_connections=judge_max_connections,
    )
    if settings.model_args and model.split("/", 1)[0] in ("hf", "vllm", "baseline"):
        raise UsageError(
            f"-M passes arguments to an API provider; {model} is not one (local models take "
            "--dtype, --max-pixels …)"
        )
    defence = defence_choice(
        defense, defense_text, adashield_selector, defense_scope, defense_texts_dir
    )
    immune = immune_options(
        defense,
        reward_model=reward_model,
        reward_base_url=reward_base_url,
        reward_api_key_env=reward_api_key_env,
        reward_max_connections=reward_max_connections,
        allow_judge_reward=allow_judge_reward,
        immune_mode=immune_mode,
        immune_candidates=immune_candidates,
        immune_temperature=immune_temperature,
        immune_weight=immune_weight,
        immune_top_k=immune_top_k,
        reward_questions=reward_questions,
    )
    config = RunConfig(
        model=model,
        judge=judge,
        dataset=dataset,
        revision=revision,
        splits=splits(split),
        modalities=modalities(modality),
        limit=limit,
        variants=variants,
        base_urls=model_urls,
        judge_base_urls=judge_urls,
        api_key_env=api_key_env,
        judge_api_key_env=judge_api_key_env,
        max_retries=max_retries,
        timeout=timeout,
        max_reply_bytes=max_reply_bytes,
        captions=captions,
        rubrics=choice(rubrics, RUBRIC_SOURCES, "--rubrics"),
        rubrics_dir=rubrics_dir,
        settings=settings,
        defense=defence.name,
        defense_scope=defence.scope,
        defense_text=defence.text,
        defense_texts_dir=defence.texts_dir,
        defense_selector=defence.selector,
        local=LocalModelOptions(batch_size, device, dtype, max_pixels, tensor_parallel),
        immune=immune,
        out=out or default_out(model, defence.name),
    )
    resolved = None
    if defence.name == "immune":  # a missing or judge reward model: one line, exit 2
        resolved = immune.resolve(model, judge, judge_urls, judge_api_key_env)
    if dry_run:
        print_plan(plan_run(replace(config, check_images=False)), config, assume_latency)
        return
    for name, env, urls, judge_role in (
        (model, api_key_env, model_urls, False),
        (judge, judge_api_key_env, judge_urls, True),
    ):  # a missing key stops the run before its directory is made
        api_key(name, ProviderOptions(urls[0] if urls else None, api_key_env=env), judge=judge_role)
    if resolved is not None:
        check_reward_key(resolved)
    writable_dir(config.out)
    if not execute(config, ray, ray_shards):
        raise typer.Exit(3)
