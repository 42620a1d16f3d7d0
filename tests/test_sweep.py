"""`mtmcs sweep PLAN.toml`: two scripted models × two defences through a real local server,
then one report; a rerun makes no call; plan mistakes stop the sweep before any call."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from command import invoke
from fakeserver import FakeServer, RecordedRequest
from mtmcs.errors import UsageError
from mtmcs.sweeps import parse_plan, run_dir_name
from test_run_e2e import standard_reply


def _plan(tmp_path: Path, base_url: str, extra: str = "", second_url: str | None = None) -> Path:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f"""
out = "{tmp_path / "runs"}"
report_formats = ["md", "csv"]
defences = ["none", "dpp"]

[run]
dataset = "sample"
split = ["type_a"]
limit = 1
judge = "openai-compatible/judge"
judge_base_url = ["{base_url}"]
max_retries = 0
defense_texts_dir = "{Path(__file__).parent / "defence_texts"}"
{extra}

[[models]]
name = "openai-compatible/model-a"
base_url = ["{base_url}"]

[[models]]
name = "openai-compatible/model-b"
base_url = ["{second_url or base_url}"]
""",
        encoding="utf-8",
    )
    return plan


def _models_seen(server: FakeServer) -> set[str]:
    return {str(r.body.get("model")) for r in server.requests}


def test_two_models_under_two_defences_then_one_report_and_a_rerun_makes_no_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    plan = _plan(tmp_path, server.base_url)
    result = invoke("sweep", str(plan))
    assert result.returncode == 0, result.stderr
    assert _models_seen(server) == {"model-a", "model-b", "judge"}
    runs = tmp_path / "runs"
    for model in ("openai-compatible/model-a", "openai-compatible/model-b"):
        for defence in (None, "dpp"):
            summary = json.loads((runs / run_dir_name(model, defence) / "summary.json").read_text())
            assert summary["metadata"]["model"] == model
            assert summary["metadata"]["defense"] == defence
    turns = [r for r in server.requests if r.call_kind == "turn" and r.body["model"] == "model-a"]
    patched = [r for r in turns if "Kindly furnish" in json.dumps(r.body["messages"][-1])]
    assert len(turns) == 2 * 12 and len(patched) == 12  # 4 dialogues × 3 turns, per defence
    leaderboard = (runs / "report" / "leaderboard.md").read_text()
    assert leaderboard.count("model-a") >= 2 and leaderboard.count("model-b") >= 2
    assert "dpp" in leaderboard
    assert (runs / "report" / "leaderboard.csv").is_file()
    assert not (runs / "report" / "report.html").exists()  # only the formats asked for

    server.clear()
    again = invoke("sweep", str(plan))
    assert again.returncode == 0, again.stderr
    assert server.request_count == 0


def test_a_bad_option_in_the_plan_stops_the_sweep_before_any_call(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = invoke("sweep", str(_plan(tmp_path, server.base_url, extra="max_conections = 4")))
    assert result.returncode == 2
    assert str(tmp_path / "plan.toml") in result.stderr and "--max-conections" in result.stderr
    assert server.request_count == 0
    assert not (tmp_path / "runs").exists()


def test_a_model_whose_endpoint_is_down_is_listed_and_the_others_run(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    result = invoke("sweep", str(_plan(tmp_path, server.base_url, second_url=down)))
    assert result.returncode == 1
    assert "failed: openai-compatible__model-b" in result.stderr
    assert "rerun the same command" in result.stderr
    runs = tmp_path / "runs"
    assert (runs / "openai-compatible__model-a+dpp" / "summary.json").is_file()
    assert not (runs / "openai-compatible__model-b" / "summary.json").exists()
    assert "model-a" in (runs / "report" / "leaderboard.md").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models = []", "models"),
        ('[[models]]\nname = "m"\nout = "x"', "'out' is set by the sweep"),
        ('defences = [{ adashield_selector = "judge" }]\n[[models]]\nname = "m"', "needs a name"),
        ('colour = "blue"\n[[models]]\nname = "m"', "unknown keys ['colour']"),
        ("[[models]]\nname = ", "TOML"),
        ('[[models]]\nname = "m"\n[[models]]\nname = "m"', "listed twice"),
        ('[[models]]\nname = "m"\nbase_url = { a = 1 }', "must be text"),
    ],
)
def test_plan_mistakes_name_the_file_and_the_entry(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=r"plan\.toml") as caught:
        parse_plan(text, Path("plan.toml"))
    assert message in str(caught.value)


def test_options_become_run_arguments() -> None:
    plan = parse_plan(
        """
out = "runs/x"
defences = ["none", { name = "adashield-a", adashield_selector = "judge" }]
[run]
split = ["type_a", "type_b"]
variants = true
check_images = false
[[models]]
name = "openai/gpt-5.2"
api_key_env = "MY_KEY"
""",
        Path("plan.toml"),
    )
    first, second = plan.runs
    assert first.command_line == (
        "--model",
        "openai/gpt-5.2",
        "--split",
        "type_a",
        "--split",
        "type_b",
        "--variants",
        "--no-check-images",
        "--api-key-env",
        "MY_KEY",
        "--out",
        "runs/x/openai__gpt-5.2",
    )
    assert second.command_line[-6:] == (
        "--defense",
        "adashield-a",
        "--adashield-selector",
        "judge",
        "--out",
        "runs/x/openai__gpt-5.2+adashield-a",
    )


def test_the_judge_is_asked_about_each_dialogue_of_each_run(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    judged: list[RecordedRequest] = []

    def respond(request: RecordedRequest) -> str:
        if request.call_kind == "judge":
            judged.append(request)
        return standard_reply(request)

    server = fake_server(respond)
    assert invoke("sweep", str(_plan(tmp_path, server.base_url))).returncode == 0
    assert len(judged) == 4 * 4  # 4 runs × 4 dialogues (one row of type_a)


@pytest.mark.parametrize("example", ["paper-table2.toml", "paper-table3.toml"])
def test_the_shipped_paper_plans_parse_as_mtmcs_run_arguments(example: str) -> None:
    from mtmcs.cli.sweep import check_plan_arguments
    from mtmcs.guardrails.defences import DEFENCES
    from mtmcs.sweeps import load_plan

    plan = load_plan(Path(__file__).parents[1] / "examples" / example)
    check_plan_arguments(plan)  # every run's options, as `mtmcs run` parses them
    if example == "paper-table3.toml":
        assert {run.defence for run in plan.runs} == {None, *DEFENCES}
    else:
        assert len(plan.runs) == 15 and "openai/gpt-5.2" in {run.model for run in plan.runs}
