"""The whole benchmark against a hostile model and judge (`tests/hostile.py`): the run and
its rerun finish without a traceback, no form of the key reaches any file or export, no raw
escape sequence reaches the terminal, failures are recorded with their causes, and neither a
pasted nor an injected verdict moves a judge figure or drops a dialogue."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from command import invoke
from fakeserver import FakeServer
from hostile import TURN_TRICKS, HostileResponder, encodings

KEY = "sk-hostile-0123456789abcdefXYZ"


def _every_byte(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def _run(server: FakeServer, out: Path) -> tuple[int, str, str]:
    result = invoke(
        *("run", "--dataset", "sample", "--limit", "3", "--max-retries", "0"),
        *("--model", "openai-compatible/hostile", "--base-url", server.base_url),
        *("--judge", "openai-compatible/hostile-judge", "--judge-base-url", server.base_url),
        *("--api-key-env", "HOSTILE_KEY", "--judge-api-key-env", "HOSTILE_KEY"),
        *("--max-reply-bytes", "100000", "--out", str(out)),
        env={"HOSTILE_KEY": KEY, "COLUMNS": "200"},
    )
    return result.returncode, result.stdout, result.stderr


def test_a_hostile_model_and_judge_crash_nothing_leak_nothing_and_game_nothing(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    hostile = HostileResponder(oversize=300_000)
    server = fake_server(hostile)
    out = tmp_path / "run"
    code, stdout, stderr = _run(server, out)

    # Every trick was played, and the run finished: incomplete (exit 3), never a traceback.
    assert {f"turn:{trick}" for trick in TURN_TRICKS} <= set(hostile.tricks), hostile.tricks
    assert code == 3, stderr
    for printed in (stdout, stderr):
        assert "Traceback" not in printed
        assert "\x1b" not in printed and "\x9b" not in printed and "\x07" not in printed

    # Failures are recorded with their causes, never stored as answers.
    summary = json.loads((out / "summary.json").read_text())
    calls = summary["metadata"]["calls"]
    causes = " | ".join(calls["model"]["causes"])
    assert "reply larger than" in causes and "500" in causes
    assert calls["model"]["replaced_code_points"] > 0
    with sqlite3.connect(out / "store.sqlite") as db:
        outputs = [
            row[0] for row in db.execute("SELECT output FROM calls WHERE output IS NOT NULL")
        ]
    assert not any(output.startswith("x" * 1000) for output in outputs)

    # Neither pasted nor injected verdicts count: the terse judge's 1 everywhere, unscored 0.
    for split in ("type_a", "type_b"):
        for modality in ("multimodal", "unimodal"):
            for name in ("safety_awareness", "helpfulness"):
                stat = summary[split][modality][name]
                assert stat["unparseable"] == 0, (split, modality, name, stat)
                assert stat["value"] in (None, 1.0), (split, modality, name, stat)
    assert any(
        summary[s][m]["safety_awareness"]["value"] == 1.0
        for s in ("type_a", "type_b")
        for m in ("multimodal", "unimodal")
    )

    # The rerun retries the failures, and fails them the same way without crashing.
    server.clear()
    again, _, again_stderr = _run(server, out)
    assert again == 3 and "Traceback" not in again_stderr
    assert 0 < server.request_count < calls["model"]["failed"] + calls["judge"]["failed"] + 1

    # The report's exports carry no form of the key either.
    report = tmp_path / "report"
    result = invoke("report", str(out), "--out", str(report), env={"HOSTILE_KEY": KEY})
    assert result.returncode == 0, result.stderr
    for directory in (out, report):
        written = _every_byte(directory)
        for form, text in encodings(KEY).items():
            assert text.encode() not in written, (directory.name, form)
