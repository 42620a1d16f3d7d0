"""`vllm serve` for a model with its card's settings, on loopback only (`mtmcs serve`).

The alternative to the in-process `vllm/<hf-id>` provider: the server runs apart (its
own process, logs and lifetime) and `mtmcs run` talks to it as `openai-compatible/…`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import httpx2

from mtmcs.errors import ProviderError
from mtmcs.models.vllm_local import GPU_MEMORY_UTILIZATION, EngineSettings

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 30.0
SUGGESTED_CONNECTIONS = 256


def serve_arguments(settings: EngineSettings, port: int, executable: str = "vllm") -> list[str]:
    """The `vllm serve` command line for these settings; it listens on loopback only."""
    arguments = [
        executable,
        "serve",
        settings.model,
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--served-model-name",
        settings.model,
        "--tensor-parallel-size",
        str(settings.tensor_parallel),
        "--dtype",
        settings.dtype,
        "--limit-mm-per-prompt",
        json.dumps({"image": settings.images_per_prompt}),
        "--gpu-memory-utilization",
        str(GPU_MEMORY_UTILIZATION),
        "--seed",
        str(settings.seed),
    ]
    if settings.max_model_len is not None:
        arguments += ["--max-model-len", str(settings.max_model_len)]
    if settings.mm_processor_kwargs:
        arguments += ["--mm-processor-kwargs", json.dumps(dict(settings.mm_processor_kwargs))]
    return arguments


def base_url(port: int) -> str:
    """The OpenAI-compatible base URL of a server started here."""
    return f"http://{LOOPBACK}:{port}/v1"


def run_hint(settings: EngineSettings, port: int) -> str:
    """The `mtmcs run` command that evaluates the served model."""
    return shlex.join(
        [
            "mtmcs",
            "run",
            "--model",
            f"openai-compatible/{settings.model}",
            "--base-url",
            base_url(port),
            "--max-connections",
            str(SUGGESTED_CONNECTIONS),
        ]
    )


def _serves(client: httpx2.Client, port: int, served_name: str) -> bool:
    try:
        response = client.get(f"{base_url(port)}/models")
        models = response.json()["data"] if response.status_code == 200 else []
        return any(model.get("id") == served_name for model in models)
    except (httpx2.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return False


def wait_until_ready(
    process: subprocess.Popen[bytes],
    port: int,
    served_name: str,
    *,
    timeout: float,
    interval: float = 1.0,
) -> None:
    """Wait until `GET /v1/models` lists `served_name`; `ProviderError` if the process
    exits first or `timeout` seconds pass.
    """
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=max(interval, 1.0), trust_env=False) as client:
        while True:
            code = process.poll()
            if code is not None:
                raise ProviderError(
                    f"vllm serve exited with code {code} before it was ready (its output is above)"
                )
            if _serves(client, port, served_name):
                return
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"vllm serve did not list {served_name} at {base_url(port)}/models "
                    f"within {timeout:g} s (raise --startup-timeout for a first download)"
                )
            time.sleep(interval)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server (SIGTERM, then SIGKILL after a grace period)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
