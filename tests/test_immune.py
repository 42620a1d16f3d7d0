"""Immune with a reward model of its own: the best-of-N approximation through the local test
server (whose requests say which model each call went to), the refusal of the judge as
reward model, the options and the summary. Guided decoding: `test_immune_guided.py`."""

from __future__ import annotations

import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from command import invoke
from fakeserver import FakeServer, RecordedRequest
from mtmcs.engine.run import RunConfig, RunResult, plan_run, run_benchmark
from mtmcs.engine.scheduler import RunSettings
from mtmcs.errors import UsageError
from mtmcs.guardrails.defences.immune import IMMUNE_CANDIDATES, ImmuneOptions
from test_run_e2e import JUDGE_REPLY, kind_of, standard_reply, text_of

MODEL = "openai-compatible/test-model"
JUDGE = "openai-compatible/judge"
REWARD = "openai-compatible/reward"
TURNS = 6  # type_a, unimodal, one row: 2 dialogues × 3 turns
QUESTIONS = 6  # and 3 questions each


def run(server: FakeServer, out: Path, *, seed: int | None = None, **immune: Any) -> RunResult:
    options = {"reward_model": REWARD, "reward_base_urls": (server.base_url,), **immune}
    return run_benchmark(
        RunConfig(
            model=MODEL,
            judge=JUDGE,
            dataset="sample",
            splits=("type_a",),
            modalities=("unimodal",),
            limit=1,
            out=out,
            base_urls=(server.base_url,),
            judge_base_urls=(server.base_url,),
            max_retries=0,
            settings=RunSettings(max_connections=8, seed=seed),
            defense="immune",
            immune=ImmuneOptions(**options),
        )
    )


def served(server: FakeServer, model: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.body["model"] == model.split("/", 1)[1]]


def scored_reply(request: RecordedRequest) -> str:
    """The reward model rates a candidate by its number (1–5); the rest as usual."""
    if request.body["model"] == "reward":
        prompt = text_of(request.body["messages"][0])
        found = re.search(r"Reply to rate: Candidate (\d+)", prompt)  # else a question's
        score = int(found.group(1)) % 5 + 1 if found else 3
        return json.dumps({"score": score, "explanation": "x"})
    if request.body["model"] == "test-model" and kind_of(request) == "turn":
        return f"Candidate {request.body.get('seed', 'none')}."
    return standard_reply(request)


def test_best_of_n_asks_its_reward_model_with_distinct_seeds_at_the_protocol_temperature(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(scored_reply)
    result = run(server, tmp_path)  # --defense-scope all, the default
    assert result.complete

    # The candidates: four per turn, seeds 0–3 (no --seed), the protocol's temperature.
    turns = [r for r in served(server, MODEL) if kind_of(r) == "turn"]
    assert len(turns) == TURNS * IMMUNE_CANDIDATES
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for request in turns:
        assert request.body["temperature"] == 0.1
        by_prompt[json.dumps(request.body["messages"])].append(request.body["seed"])
    # (a pair's safe and unsafe dialogues may send the same prompt: 4 seeds for each)
    assert sum(len(seeds) for seeds in by_prompt.values()) == TURNS * IMMUNE_CANDIDATES
    assert all(
        sorted(seeds) == sorted([0, 1, 2, 3] * (len(seeds) // 4)) for seeds in by_prompt.values()
    )

    # Their rewards: from the reward model, not the judge; the judge judges, nothing else.
    rewards = served(server, REWARD)
    assert len(rewards) == TURNS * IMMUNE_CANDIDATES
    assert {kind_of(r) for r in rewards} == {"reward"}
    assert [kind_of(r) for r in served(server, JUDGE)] == ["judge", "judge"]

    # The intent questions: the plain model once each, no reward; no reward prompt holds one.
    questions = [r for r in served(server, MODEL) if kind_of(r) != "turn"]
    assert len(questions) == QUESTIONS
    assert all(r.body["temperature"] == 0.1 and "seed" not in r.body for r in questions)
    asked = {text_of(r.body["messages"][-1]) for r in questions}
    assert not any(q in text_of(r.body["messages"][0]) for r in rewards for q in asked)

    # The answer: the candidate the reward model scored highest (seed 3: 3 % 5 + 1 = 4).
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        rows = db.execute("SELECT model, item, kind, output, trace FROM calls").fetchall()
    defended = f"{MODEL}+immune[best-of-4, reward {REWARD}]"
    answered = [r for r in rows if r[2] == "turn"]
    assert len(answered) == TURNS and {r[0] for r in answered} == {defended}
    for _, _, _, output, trace in answered:
        assert output == "Candidate 3."
        labels = [step for step, _ in json.loads(trace)]
        assert labels == [f"candidate {k + 1} (seed {k}, reward {k % 5 + 1})" for k in range(4)]
    stored_rewards = [r for r in rows if r[2] == "reward"]
    assert {r[0] for r in stored_rewards} == {REWARD}
    assert sorted(r[1] for r in stored_rewards)[:4] == [
        f"type_a/000000/unimodal/safe/turn/1/reward/{k}" for k in range(1, 5)
    ]
    assert {r[0] for r in rows if r[2] in ("mcq", "tf")} == {defended}

    meta = result.summary["metadata"]
    assert meta["immune"] == {
        "mode": "best-of-n",
        "method": "best-of-N approximation (whole candidates scored by the reward model)",
        "reward_model": REWARD,
        "reward_is_judge": False,
        "candidates": 4,
        "seeds": "seed + k for candidate k = 0 … N-1",
        "temperature": 0.1,
        "weight": None,
        "top_k": None,
        "selection": "the candidate with the highest reward (the first, on ties)",
        "questions": "plain model",
    }
    calls = meta["calls"]
    assert (calls["reward"]["planned"], calls["reward"]["made"]) == (24, 24)
    assert (calls["judge"]["planned"], calls["judge"]["made"]) == (2, 2)
    assert calls["model"]["made"] == TURNS * IMMUNE_CANDIDATES + QUESTIONS
    assert meta["concurrency"]["reward"]["maximum"] == 16

    server.clear()  # resumed: nothing asked again
    again = run(server, tmp_path)
    assert server.request_count == 0 and again.summary["metadata"]["calls"]["reward"]["made"] == 0


def test_seed_temperature_and_candidates_can_be_set(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(scored_reply)
    result = run(server, tmp_path, seed=7, candidates=3, temperature=0.7)
    assert result.complete
    turns = [r for r in served(server, MODEL) if kind_of(r) == "turn"]
    assert len(turns) == TURNS * 3
    assert {r.body["temperature"] for r in turns} == {0.7}
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for request in turns:
        by_prompt[json.dumps(request.body["messages"])].append(request.body["seed"])
    assert all(
        sorted(seeds) == sorted([7, 8, 9] * (len(seeds) // 3)) for seeds in by_prompt.values()
    )
    questions = [r for r in served(server, MODEL) if kind_of(r) != "turn"]
    assert {(r.body["temperature"], r.body["seed"]) for r in questions} == {(0.1, 7)}
    assert len(served(server, REWARD)) == TURNS * 3
    immune = result.summary["metadata"]["immune"]
    assert (immune["candidates"], immune["temperature"]) == (3, 0.7)


def test_questions_are_reward_scored_only_when_asked(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(scored_reply)
    result = run(server, tmp_path, reward_questions=True)
    assert result.complete
    questions = [r for r in served(server, MODEL) if kind_of(r) != "turn"]
    assert len(questions) == QUESTIONS * IMMUNE_CANDIDATES
    assert len(served(server, REWARD)) == (TURNS + QUESTIONS) * IMMUNE_CANDIDATES
    assert result.summary["metadata"]["immune"]["questions"] == "reward-guided"
    assert result.summary["metadata"]["calls"]["reward"]["planned"] == 48


def test_reward_calls_keep_their_own_connection_limit(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    in_flight = {"reward": 0, "peak": 0}

    async def reply(request: RecordedRequest) -> str:
        import asyncio

        if request.body["model"] != "reward":
            return standard_reply(request)
        in_flight["reward"] += 1
        in_flight["peak"] = max(in_flight["peak"], in_flight["reward"])
        try:
            await asyncio.sleep(0.02)
        finally:
            in_flight["reward"] -= 1
        return JUDGE_REPLY

    server = fake_server(reply)
    assert run(server, tmp_path, reward_max_connections=2).complete
    assert in_flight["peak"] == 2


def test_a_failed_reward_fails_the_answer_and_is_retried(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    broken = {"on": True}

    def reply(request: RecordedRequest) -> Any:
        from fakeserver import Reply

        if request.body["model"] == "reward" and broken["on"]:
            return Reply(status=500)
        return scored_reply(request)

    server = fake_server(reply)
    failed = run(server, tmp_path)
    assert not failed.complete
    assert failed.summary["metadata"]["calls"]["reward"]["failed"] > 0
    broken["on"] = False
    assert run(server, tmp_path).complete


# --- the reward model is not the judge -------------------------------------------------------


def test_the_judge_as_reward_model_is_refused_unless_forced() -> None:
    refused = ImmuneOptions(reward_model="judge")
    with pytest.raises(UsageError, match=r"is the judge .* --allow-judge-reward"):
        refused.resolve(MODEL, JUDGE)
    for same in (JUDGE, "openai/judge", "vllm/org/judge"):  # the same model, another way
        with pytest.raises(UsageError, match="is the judge"):
            ImmuneOptions(reward_model=same).resolve(MODEL, JUDGE)
    forced = ImmuneOptions(reward_model="judge", allow_judge_reward=True).resolve(
        MODEL, JUDGE, ("http://127.0.0.1:9/v1",), "JUDGE_KEY"
    )
    assert (forced.reward_model, forced.reward_is_judge) == (JUDGE, True)
    assert (forced.reward_base_urls, forced.reward_api_key_env) == (
        ("http://127.0.0.1:9/v1",),
        "JUDGE_KEY",
    )
    with pytest.raises(UsageError, match="needs --reward-model"):
        ImmuneOptions().resolve(MODEL, JUDGE)


def test_modes_by_model_and_reward_model() -> None:
    assert ImmuneOptions(reward_model=REWARD).resolve(MODEL, JUDGE).mode == "best-of-n"
    local = ImmuneOptions(reward_model="hf-reward/org/rm").resolve("hf/org/vlm", JUDGE)
    assert (local.mode, local.top_k, local.weight) == ("guided", 5, 0.5)
    keyword = ImmuneOptions(reward_model="baseline/keyword").resolve("hf/org/vlm", JUDGE)
    assert keyword.mode == "guided"
    with pytest.raises(UsageError, match="hf/ models allow"):
        ImmuneOptions(reward_model="hf-reward/rm", mode="guided").resolve(MODEL, JUDGE)
    with pytest.raises(UsageError, match="its reward model runs"):
        ImmuneOptions(reward_model=REWARD).resolve("hf/org/vlm", JUDGE)
    bon = ImmuneOptions(reward_model=REWARD, mode="best-of-n").resolve("hf/org/vlm", JUDGE)
    assert bon.mode == "best-of-n"
    with pytest.raises(UsageError, match="runs in this process"):
        ImmuneOptions(reward_model="baseline/keyword", reward_base_urls=("http://x/v1",)).resolve(
            MODEL, JUDGE
        )


def test_the_offline_forced_run_is_labelled(tmp_path: Path) -> None:
    args = [
        "run",
        "--dataset",
        "sample",
        "--model",
        "baseline/random",
        "--judge",
        "baseline/keyword",
        "--limit",
        "1",
        "--split",
        "type_b",
        "--defense",
        "immune",
        "--reward-model",
        "judge",
        "--out",
        str(tmp_path / "r"),
    ]
    refused = invoke(*args)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "is the judge" in refused.stderr and "--allow-judge-reward" in refused.stderr
    assert not (tmp_path / "r").exists()

    forced = invoke(*args, "--allow-judge-reward")
    assert forced.returncode == 0, forced.stderr
    assert "THE JUDGE AS REWARD MODEL" in " ".join(forced.stdout.split())  # the table title
    meta = json.loads((tmp_path / "r" / "summary.json").read_text())["metadata"]
    assert meta["immune"]["reward_is_judge"] is True
    assert meta["immune"]["reward_model"] == "baseline/keyword"
    assert meta["calls"]["reward"]["made"] == 12 * IMMUNE_CANDIDATES  # 4 dialogues × 3 turns
    with sqlite3.connect(tmp_path / "r" / "store.sqlite") as db:
        traces = [
            json.loads(t)
            for (t,) in db.execute("SELECT trace FROM calls WHERE kind = 'turn'").fetchall()
        ]
    assert len(traces) == 12 and all(len(t) == IMMUNE_CANDIDATES for t in traces)

    report = invoke("report", str(tmp_path / "r"), "--out", str(tmp_path / "rep"), "--format", "md")
    assert report.returncode == 0, report.stderr
    leaderboard = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert "baseline/random + immune [judge as reward model]" in leaderboard


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --reward-model"),
        (["--reward-model", "openai-compatible/j"], "is the judge"),
        (["--reward-model", "hf-reward/x", "--immune-mode", "guided"], "hf/ models"),
        (["--reward-model", "r", "--immune-mode", "sideways"], "best-of-n"),
    ],
)
def test_cli_refusals_are_one_line_exit_2(extra: list[str], message: str, tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "openai-compatible/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--judge",
        "openai-compatible/j",
        "--judge-base-url",
        "http://127.0.0.1:9/v1",
        "--defense",
        "immune",
        "--dry-run",
        *extra,
        "--out",
        str(tmp_path / "r"),
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_immune_options_without_immune_are_refused(tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "baseline/random",
        "--judge",
        "baseline/keyword",
        "--defense",
        "dpp",
        "--reward-model",
        "baseline/keyword",
        "--out",
        str(tmp_path / "r"),
    )
    assert result.returncode == 2
    assert "apply to --defense immune only" in result.stderr


def test_the_plan_counts_reward_calls_by_the_runs_settings(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(standard_reply)

    def planned(**immune: Any) -> dict[str, int]:
        options = {"reward_model": REWARD, **immune}
        config = RunConfig(
            model=MODEL,
            judge=JUDGE,
            dataset="sample",
            splits=("type_a",),
            modalities=("unimodal",),
            limit=1,
            out=tmp_path,
            base_urls=(server.base_url,),
            defense="immune",
            immune=ImmuneOptions(**options),
        )
        return dict(plan_run(config).planned)

    assert planned() == {"model": 6 * 4 + 6, "judge": 2, "reward": 24}
    assert planned(candidates=2) == {"model": 6 * 2 + 6, "judge": 2, "reward": 12}
    assert planned(reward_questions=True) == {"model": 12 * 4, "judge": 2, "reward": 48}


def test_a_missing_reward_key_stops_the_run_naming_the_reward_option(tmp_path: Path) -> None:
    result = invoke(
        "run",
        "--dataset",
        "sample",
        "--model",
        "baseline/random",
        "--judge",
        "baseline/keyword",
        "--defense",
        "immune",
        "--reward-model",
        "openai/gpt-4o-mini",
        "--reward-api-key-env",
        "MTMCS_NO_SUCH_KEY",
        "--out",
        str(tmp_path / "r"),
        env={"MTMCS_NO_SUCH_KEY": None},
    )
    assert result.returncode == 2
    assert "--reward-api-key-env MTMCS_NO_SUCH_KEY" in result.stderr
    assert not (tmp_path / "r").exists()
