"""A key per endpoint, and endpoints checked before any work: which credentials each server
really receives (real HTTP through the fake server, real SDKs), and the one-line errors for
an unset key variable, a malformed `--base-url`, a URL without `/v1` and an offline hub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from command import invoke
from fakeserver import FakeServer, RecordedRequest, Reply
from mtmcs.errors import UsageError
from mtmcs.models.registry import PLACEHOLDER_KEY, ProviderOptions, api_key
from test_build import _copy_sample_images
from test_run_e2e import standard_reply

OPENAI_SECRET = "sk-openai-ONLY-for-api-openai-com-1f2e3d"
MODEL_SECRET = "sk-router-key-of-the-model-9a8b7c"
JUDGE_SECRET = "sk-judge-key-of-the-judge-5d4c3b"
SMALL_RUN = ("--dataset", "sample", "--split", "type_a", "--modality", "unimodal", "--limit", "1")


def bearers(server: FakeServer) -> set[str]:
    """The Authorization headers the server received (at least one request)."""
    assert server.requests, "no request reached the server"
    return {request.headers.get("authorization", "") for request in server.requests}


def every_byte_under(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def one_error_line(stderr: str) -> str:
    """The error line of a failed command, checked to be alone and without traceback."""
    lines = [line for line in stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- which key each endpoint receives ------------------------------------------------------


def test_openai_key_never_reaches_an_openai_compatible_server_it_was_not_named_for(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    model_server, judge_server = fake_server(standard_reply), fake_server(standard_reply)
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "openai-compatible/m", "--base-url", model_server.base_url),
        *("--judge", "openai/gpt-5-mini", "--judge-base-url", judge_server.base_url),
        *("--out", str(tmp_path / "run")),
        env={"OPENAI_API_KEY": OPENAI_SECRET},
    )
    assert result.returncode == 0, result.stderr
    assert bearers(model_server) == {f"Bearer {PLACEHOLDER_KEY}"}  # a colleague's vLLM
    assert bearers(judge_server) == {f"Bearer {OPENAI_SECRET}"}  # openai/… as before


def test_each_endpoint_gets_the_key_of_the_variable_named_for_it(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    model_server, judge_server = fake_server(standard_reply), fake_server(standard_reply)
    out = tmp_path / "run"
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "openai-compatible/m", "--base-url", model_server.base_url),
        *("--api-key-env", "ROUTER_KEY"),
        *("--judge", "openai-compatible/judge", "--judge-base-url", judge_server.base_url),
        *("--judge-api-key-env", "JUDGE_KEY"),
        *("--out", str(out)),
        env={
            "OPENAI_API_KEY": OPENAI_SECRET,
            "ROUTER_KEY": MODEL_SECRET,
            "JUDGE_KEY": JUDGE_SECRET,
        },
    )
    assert result.returncode == 0, result.stderr
    assert bearers(model_server) == {f"Bearer {MODEL_SECRET}"}
    assert bearers(judge_server) == {f"Bearer {JUDGE_SECRET}"}
    written = every_byte_under(out)
    for secret in (MODEL_SECRET, JUDGE_SECRET, OPENAI_SECRET):
        assert secret not in result.stdout + result.stderr
        assert secret.encode() not in written  # neither stored, nor in any cache key


def test_an_anthropic_model_gets_the_named_key_instead_of_anthropic_api_key(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "anthropic/claude-test", "--base-url", server.anthropic_base_url),
        *("--api-key-env", "GATEWAY_KEY", "--judge", "baseline/keyword"),
        *("--out", str(tmp_path / "run")),
        env={"ANTHROPIC_API_KEY": "sk-ant-not-this-one-000000", "GATEWAY_KEY": MODEL_SECRET},
    )
    assert result.returncode == 0, result.stderr
    sent = {r.headers.get("x-api-key") or r.headers["authorization"] for r in server.requests}
    assert sent in ({MODEL_SECRET}, {f"Bearer {MODEL_SECRET}"})  # as this SDK release sends it
    assert "warning" not in result.stderr  # Anthropic's base URL has no /v1, rightly


def test_openai_key_goes_to_openai_host_and_to_openai_models_without_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", MODEL_SECRET)
    openai_host = ProviderOptions(base_url="https://api.openai.com/v1")
    assert api_key("openai-compatible/gpt-4o", openai_host) == OPENAI_SECRET
    assert api_key("openai/gpt-4o", ProviderOptions()) == OPENAI_SECRET
    assert api_key("anthropic/claude", ProviderOptions()) == MODEL_SECRET
    lookalike = ProviderOptions(base_url="https://api.openai.com.example.org/v1")
    assert api_key("openai-compatible/gpt-4o", lookalike) == PLACEHOLDER_KEY
    named = ProviderOptions(base_url="http://127.0.0.1:8000/v1", api_key_env="ANTHROPIC_API_KEY")
    assert api_key("openai-compatible/m", named) == MODEL_SECRET


def _images(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    _copy_sample_images(tmp_path / "images", 1)
    return tmp_path / "images"


def _run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "finished"
    done = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "baseline/random", "--judge", "baseline/keyword", "--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    return out


COMMANDS: dict[str, Callable[[Path, str], list[str]]] = {
    "guard": lambda tmp, url: [
        *("guard", "--guard", "openai-compatible/guard", "--guard-base-url", url),
        *("--dataset", "sample", "--limit", "1", "--out", str(tmp / "guard")),
    ],
    "stances": lambda tmp, url: [
        *("stances", str(_run_dir(tmp)), "--judge", "openai-compatible/judge"),
        *("--base-url", url),
    ],
    "rejudge": lambda tmp, url: [
        *("rejudge", str(_run_dir(tmp)), "--judge", "openai-compatible/judge"),
        *("--judge-base-url", url, "--out", str(tmp / "rejudged")),
    ],
    "judge-check": lambda tmp, url: [
        *("judge-check", "--judge", "openai-compatible/judge", "--judge-base-url", url),
        *("--store", str(tmp / "judge-check.sqlite")),
    ],
    "categorize": lambda tmp, url: [
        *("categorize", "--dataset", "sample", "--model", "openai-compatible/llm"),
        *("--base-url", url, "--out", str(tmp / "categories.json")),
    ],
    "build": lambda tmp, url: [
        *("build", str(_images(tmp)), "--out", str(tmp / "dataset")),
        *("--model", "openai-compatible/builder", "--base-url", url, "--max-retries", "0"),
    ],
}
KEY_OPTION = {
    "stances": "--judge-api-key-env",
    "judge-check": "--judge-api-key-env",
    "rejudge": "--judge-api-key-env",
}


def answer(request: RecordedRequest) -> str:
    return "safe" if request.call_kind == "guard" else standard_reply(request)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_sends_the_named_key_and_otherwise_no_openai_key(
    fake_server: Callable[..., FakeServer], tmp_path: Path, command: str
) -> None:
    server = fake_server(answer)
    args = COMMANDS[command](tmp_path, server.base_url)
    option = KEY_OPTION.get(command, "--api-key-env")
    invoke(*args, option, "SERVER_KEY", env={"SERVER_KEY": MODEL_SECRET})
    assert bearers(server) == {f"Bearer {MODEL_SECRET}"}

    server.clear()
    again = COMMANDS[command](tmp_path / "again", server.base_url)
    invoke(*again, env={"OPENAI_API_KEY": OPENAI_SECRET})
    assert bearers(server) == {f"Bearer {PLACEHOLDER_KEY}"}


# --- a missing key: one line, exit 2, before any work --------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_key_variable_stops_every_command_before_any_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path, command: str, value: str | None
) -> None:
    server = fake_server(answer)
    args = COMMANDS[command](tmp_path, server.base_url)
    option = KEY_OPTION.get(command, "--api-key-env")
    result = invoke(*args, option, "NO_SUCH_KEY", env={"NO_SUCH_KEY": value})
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert f"{option} NO_SUCH_KEY" in line and "openai-compatible/" in line
    assert server.request_count == 0


def test_the_default_judge_without_a_key_says_it_is_the_default_and_how_to_run_offline(
    tmp_path: Path,
) -> None:
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "baseline/random", "--out", str(tmp_path / "run")),
        env={"OPENAI_API_KEY": None},
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "openai/gpt-5-mini (the default --judge)" in line and "OPENAI_API_KEY" in line
    assert "--judge baseline/keyword" in line and "offline" in line
    assert not (tmp_path / "run").exists()


def test_a_model_without_its_key_is_named_with_the_option_that_names_another_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "anthropic/claude-test", "--judge", "baseline/keyword"),
        *("--out", str(tmp_path / "run")),
        env={"ANTHROPIC_API_KEY": ""},
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "anthropic/claude-test needs an API key" in line and "ANTHROPIC_API_KEY" in line
    assert "--api-key-env" in line and "default --judge" not in line
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UsageError, match="the judge openai/gpt-4o needs an API key") as raised:
        api_key("openai/gpt-4o", ProviderOptions(), judge=True)
    assert "--judge-api-key-env NAME" in str(raised.value)
    assert "--judge baseline/keyword judges offline" in str(raised.value)


# --- base URLs checked before any work -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:{port}/v1", "has no scheme; did you mean http://127.0.0.1:{port}/v1?"),
        ("localhost:{port}/v1", "has no scheme; did you mean http://localhost:{port}/v1?"),
        ("ftp://127.0.0.1:{port}/v1", "has the scheme ftp; use http:// or https://"),
        ("http:///v1", "has no host"),
        ("http://127.0.0.1:port/v1", "is malformed"),
    ],
)
@pytest.mark.parametrize("option", ["--base-url", "--judge-base-url"])
def test_a_malformed_base_url_is_one_line_exit_2_and_no_request(
    fake_server: Callable[..., FakeServer], tmp_path: Path, url: str, expected: str, option: str
) -> None:
    server = fake_server(standard_reply)
    bad = url.format(port=server.port)
    urls = {"--base-url": [server.base_url], "--judge-base-url": [server.base_url]}
    urls[option].append(bad)  # the second of two replicas: each is checked
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "openai-compatible/m", "--judge", "openai-compatible/judge"),
        *(arg for url_ in urls["--base-url"] for arg in ("--base-url", url_)),
        *(arg for url_ in urls["--judge-base-url"] for arg in ("--judge-base-url", url_)),
        *("--out", str(tmp_path / "run")),
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {option} {bad} {expected.format(port=server.port)}")
    assert server.request_count == 0 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_checks_its_base_url_before_any_work(tmp_path: Path, command: str) -> None:
    result = invoke(*COMMANDS[command](tmp_path, "127.0.0.1:8000/v1"))
    assert result.returncode == 2
    assert "127.0.0.1:8000/v1 has no scheme; did you mean http://" in one_error_line(result.stderr)


def test_a_url_without_v1_is_warned_and_its_404_says_the_url_may_lack_v1(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    root = server.base_url.removesuffix("/v1")
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "openai-compatible/m", "--base-url", root, "--judge", "baseline/keyword"),
        *("--max-retries", "0", "--out", str(tmp_path / "run")),
    )
    assert result.returncode == 1
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith(f"warning: --base-url {root} does not end in /v1")
    assert f"try {root}/v1" in error and "may be missing /v1" in error
    assert server.request_count == 0  # the server has no route there: each call got a 404


def test_a_404_from_a_url_with_v1_still_names_the_model(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(Reply(status=404, error_message="no such model"))
    result = invoke(
        "run",
        *SMALL_RUN,
        *("--model", "openai-compatible/m", "--base-url", server.base_url),
        *("--judge", "baseline/keyword", "--max-retries", "0", "--out", str(tmp_path / "run")),
    )
    assert result.returncode == 1 and "warning" not in result.stderr
    line = one_error_line(result.stderr)
    assert f"model 'm' not found at {server.base_url}" in line
    assert "missing /v1" not in line


# --- the default dataset offline ------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "guard"])
def test_without_dataset_the_hub_is_the_default_and_offline_the_error_suggests_the_sample(
    fake_server: Callable[..., FakeServer], tmp_path: Path, command: str
) -> None:
    server = fake_server(answer)
    args = {
        "run": ["run", "--model", "baseline/random", "--judge", "baseline/keyword"],
        "guard": ["guard", "--guard", "openai-compatible/g", "--guard-base-url", server.base_url],
    }[command]
    result = invoke(*args, "--out", str(tmp_path / "out"), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "cannot load ND-25/MCS-bench" in line and "try --dataset sample" in line
    assert server.request_count == 0
