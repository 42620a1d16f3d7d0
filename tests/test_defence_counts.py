"""Every defence's calls by role: the dry run's plan, the calls the local server receives and
the summary's counts agree (and a resumed run counts them all as taken from the store)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from command import invoke
from fakeserver import FakeServer
from mtmcs.engine.finished import FINISHED_FILE
from mtmcs.engine.run import RunConfig, plan_run, run_benchmark, run_connections
from mtmcs.engine.scheduler import RunSettings
from mtmcs.guardrails.defences.immune import ImmuneOptions
from test_run_e2e import standard_reply

DEFENDED: dict[str, dict[str, Any]] = {
    "none": {},
    "dpp": {"defense": "dpp", "defense_text": "ours"},
    "adashield-s": {"defense": "adashield-s", "defense_text": "ours"},
    "adashield-a": {"defense": "adashield-a", "defense_text": "ours"},
    "adashield-a/judge": {
        "defense": "adashield-a",
        "defense_text": "ours",
        "defense_selector": "judge",
    },
    "self-reflection": {"defense": "self-reflection"},
    "self-reflection/turns": {"defense": "self-reflection", "defense_scope": "turns"},
    "cot": {"defense": "cot"},
    "immune": {"defense": "immune"},
}


def config(server: FakeServer, out: Path, **defence: Any) -> RunConfig:
    if defence.get("defense") == "immune":  # its own reward model, on the same server
        defence["immune"] = ImmuneOptions(
            reward_model="openai-compatible/reward", reward_base_urls=(server.base_url,)
        )
    return RunConfig(
        model="openai-compatible/test-model",
        judge="openai-compatible/judge",
        dataset="sample",
        modalities=("unimodal",),
        limit=1,
        out=out,
        base_urls=(server.base_url,),
        judge_base_urls=(server.base_url,),
        max_retries=0,
        settings=RunSettings(max_connections=4),
        **defence,
    )


def received(server: FakeServer) -> Counter[str]:
    """The server's requests by role: the model's by model name, the judge model's by the
    kind its client says each call is (judge, reward, selector)."""
    return Counter(
        "model" if r.body["model"] == "test-model" else r.call_kind for r in server.requests
    )


@pytest.mark.parametrize("case", DEFENDED)
def test_the_plan_the_server_and_the_summary_count_the_same_calls(
    fake_server: Callable[..., FakeServer], tmp_path: Path, case: str
) -> None:
    server = fake_server(standard_reply)
    run_config = config(server, tmp_path, **DEFENDED[case])
    planned = dict(plan_run(run_config).planned)
    result = run_benchmark(run_config)
    assert result.complete
    assert dict(received(server)) == planned
    calls = result.summary["metadata"]["calls"]
    assert {role: counts["made"] for role, counts in calls.items()} == planned
    assert {role: counts["planned"] for role, counts in calls.items()} == planned

    server.clear()
    assert run_benchmark(run_config).up_to_date  # finished: nothing called, read or written
    (run_config.out / FINISHED_FILE).unlink()
    again = run_benchmark(run_config)  # replayed: every call from the store, none made
    assert server.request_count == 0
    calls = again.summary["metadata"]["calls"]
    assert {role: (c["made"], c["cached"]) for role, c in calls.items()} == {
        role: (0, n) for role, n in planned.items()
    }


def test_planned_calls_follow_each_defences_declaration(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    """4 dialogues (both splits, unimodal): 12 turns, 12 questions, 4 judge calls."""
    server = fake_server(standard_reply)

    def planned(case: str) -> dict[str, int]:
        return dict(plan_run(config(server, tmp_path, **DEFENDED[case])).planned)

    assert planned("none") == planned("cot") == {"model": 24, "judge": 4}
    assert planned("self-reflection") == {"model": 72, "judge": 4}
    assert planned("self-reflection/turns") == {"model": 3 * 12 + 12, "judge": 4}
    assert planned("adashield-a/judge") == {"model": 24, "judge": 4, "selector": 24}
    immune = planned("immune")  # candidates and their rewards: the defence's own settings
    assert immune["judge"] == 4 and immune["model"] > 24 and immune["reward"] > 0


def test_the_estimate_puts_each_roles_calls_on_its_connections(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    """The selector's calls share the judge's connections; Immune's reward model has its own."""
    server = fake_server(standard_reply)
    plan = plan_run(config(server, tmp_path, **DEFENDED["adashield-a/judge"]))
    assert plan.critical_path == 3 * 2 + 2
    # 24 model calls; 4 judge + 24 selector calls on the judge's connection
    assert plan.estimate_s(1.0, {"model": 1, "judge": 1}) == 28
    assert plan.estimate_s(1.0, {"model": 2, "judge": 1, "selector": 2}) == 12
    immune = config(server, tmp_path, **DEFENDED["immune"])
    assert run_connections(immune) == {"model": 4, "judge": 16, "reward": 16}
    assert "reward" not in run_connections(config(server, tmp_path, **DEFENDED["cot"]))


def test_dry_run_prints_the_calls_by_role_and_the_longer_critical_path(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai-compatible/m",
        "--base-url",
        server.base_url,
        "--judge",
        "openai-compatible/j",
        "--judge-base-url",
        server.base_url,
        "--defense",
        "self-reflection",
        "--dry-run",
        "--assume-latency",
        "2",
        "--max-connections",
        "96",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    assert "1728 model + 96 judge = 1824" in result.stdout  # 3 × 576 model calls
    # Three calls in a row per answer: 3 turns × 3, then a question's 3.
    assert "critical path: 12 calls" in result.stdout
    # max(12 × 2 s, 1,728 × 2 / 96 = 36 s, 96 × 2 / 16 = 12 s) = 36 s
    assert "at least 36 s" in result.stdout
    assert server.request_count == 0
