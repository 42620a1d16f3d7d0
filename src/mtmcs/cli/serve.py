"""`mtmcs serve`: start `vllm serve` for a model with its card's settings, on loopback only.

The alternative to the in-process `vllm/<hf-id>` provider: the server runs apart (its
own process, logs and lifetime) and `mtmcs run` talks to it as `openai-compatible/…`.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from typing import Annotated

import typer

from mtmcs.cli.console import console, errors
from mtmcs.errors import ConfigError, ProviderError
from mtmcs.extras import install_hint
from mtmcs.models.vllm_local import EngineSettings
from mtmcs.models.vllm_serve import base_url, run_hint, serve_arguments, stop, wait_until_ready


def serve(
    model: Annotated[str, typer.Argument(help="Hub id (or model card key) to serve.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8000,
    tensor_parallel: Annotated[
        int | None, typer.Option(min=1, help="GPUs to shard over (default: the model card's).")
    ] = None,
    startup_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the server (download + load).")
    ] = 1800.0,
    dry_run: Annotated[bool, typer.Option(help="Print the vllm serve command only.")] = False,
) -> None:
    """Start `vllm serve` on 127.0.0.1 with the model card's settings; Ctrl-C stops it."""
    settings = EngineSettings.for_model(model, tensor_parallel=tensor_parallel)
    if dry_run:
        console.print(shlex.join(serve_arguments(settings, port)), markup=False, soft_wrap=True)
        console.print(f"then: {run_hint(settings, port)}", markup=False, soft_wrap=True)
        return
    executable = shutil.which("vllm")
    if executable is None:
        raise ConfigError(f"vllm is not installed here: {install_hint('vllm')}")
    process = subprocess.Popen(serve_arguments(settings, port, executable))
    try:
        wait_until_ready(process, port, settings.model, timeout=startup_timeout)
        errors.print(f"serving {settings.model} at {base_url(port)}; Ctrl-C stops it")
        console.print(run_hint(settings, port), markup=False, soft_wrap=True)
        code = process.wait()
        raise ProviderError(f"vllm serve exited with code {code}")
    except KeyboardInterrupt:
        errors.print("stopping vllm serve")
    finally:
        stop(process)
