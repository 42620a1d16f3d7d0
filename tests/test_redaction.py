"""API keys are redacted in every common encoding, from everything stored and exported.

Unit tests of `mtmcs.keys.redact` for each encoding (and for ordinary text, short values
and partial keys, which stay as they are); a run against a server that echoes the key in
every encoding inside successful replies and verdicts, whose store, run files and report
exports hold it in none; and a run directory written with the key in clear (as an old
version could) whose report exports hold it in none either.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from command import invoke
from fakeserver import FakeServer, RecordedRequest
from mtmcs import keys
from mtmcs.engine.run import run_benchmark
from mtmcs.keys import redact, remember_secret
from mtmcs.report.export import redact_strings
from test_run_e2e import config, kind_of

KEY = "sk-ECHOED-IN-EVERY-FORM-4b8e1f0a9c3d7e25"
MASK = "[OPENAI_API_KEY redacted]"


def chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def encodings(key: str) -> dict[str, str]:
    """The key written every way `redact` removes it, by name."""
    data = key.encode()
    return {
        "as is": key,
        "spaced": " ".join(key),
        "spaced every 4": " ".join(chunks(key, 4)),
        "wrapped": "\n    ".join(chunks(key, 7)),
        "tab and mark": "\t-\t".join(chunks(key, 5)),
        "dotted": ".".join(key),
        "zero-width": "\u200b".join(key),
        "base64": base64.b64encode(data).decode(),
        "base64 url-safe, no padding": base64.urlsafe_b64encode(data).decode().rstrip("="),
        "base64 wrapped": "\n".join(chunks(base64.b64encode(data).decode(), 16)),
        "base64 at offset 1": base64.b64encode(b"{" + data + b"}").decode(),
        "base64 at offset 2": base64.b64encode(b"k=" + data).decode(),
        "base64 inside JSON": base64.b64encode(json.dumps({"api_key": key}).encode()).decode(),
        "base64 url-safe at offset 1": base64.urlsafe_b64encode(b"\xff" + data).decode(),
        "JSON \\u escapes": "".join(f"\\u{ord(c):04x}" for c in key),
        "JSON \\u escapes, upper case": "".join(f"\\u{ord(c):04X}" for c in key),
        "JSON escapes mixed": "".join(
            f"\\u{ord(c):04x}" if i % 3 else c for i, c in enumerate(key)
        ),
        "JSON double-escaped": "".join(f"\\\\u{ord(c):04x}" for c in key),
        "\\x escapes": "".join(f"\\x{b:02x}" for b in data),
        "percent": "".join(f"%{b:02X}" for b in data),
        "percent twice": "".join(f"%25{b:02x}" for b in data),
        "hex": data.hex(),
        "hex upper case": data.hex().upper(),
        "hex bytes spaced": " ".join(f"{b:02x}" for b in data),
        "hex bytes with colons": ":".join(f"{b:02X}" for b in data),
        "HTML entities": "".join(f"&#{ord(c)};" for c in key),
        "HTML hex entities": "".join(f"&#x{ord(c):x};" for c in key),
        "reversed": key[::-1],
        "reversed, spaced": " ".join(key[::-1]),
    }


FORMS = encodings(KEY)


@pytest.fixture
def key_in_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return KEY


# --- redact, one encoding at a time --------------------------------------------------------------


@pytest.mark.parametrize("name", FORMS)
def test_each_encoding_of_a_known_key_is_redacted(key_in_env: str, name: str) -> None:
    form = FORMS[name]
    text = redact(f"Here it is: {form} (keep it safe)")
    assert form not in text and MASK in text
    assert text.startswith("Here it is: ") and text.endswith(" (keep it safe)")
    assert not leaks(text)


def test_every_encoding_at_once_and_in_json_is_redacted(key_in_env: str) -> None:
    everything = " | ".join(f"{name}: {form}" for name, form in FORMS.items())
    assert redact(everything).count(MASK) == len(FORMS)
    as_json = json.dumps({"echo": everything, "key": KEY})
    assert not leaks(redact(as_json))
    assert not leaks(redact(json.dumps({"echo": everything}, ensure_ascii=True, indent=2)))


def test_an_escaped_slash_and_other_escaped_marks_are_redacted() -> None:
    key = "abc/def+ghi=jkl_mno.pqr~stu"
    remember_secret(key)
    escaped = json.dumps(key).replace("/", "\\/")  # as PHP and others write JSON
    assert redact(escaped) == '"[API key redacted]"'
    assert redact(key.replace("_", "\\_")) == "[API key redacted]"  # Markdown-escaped
    assert redact(base64.b64encode(b"xy" + key.encode()).decode()).count("[API key") == 1


def test_a_key_beyond_ascii_is_redacted_in_its_escapes_and_bytes() -> None:
    key = "clé-\U0001f511-secrète-0042"
    remember_secret(key)
    for form in (
        key,
        json.dumps(key),  # \\u00e9 and a surrogate pair for the emoji
        key.encode().hex(),
        base64.b64encode(key.encode()).decode(),
        "".join(f"%{b:02X}" for b in key.encode()),
        " ".join(key),
    ):
        assert "[API key redacted]" in redact(form), form


def test_a_key_given_to_a_provider_is_masked_as_such_and_the_variables_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = "given-to-a-provider-9d1e6b0c"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment-77a1")
    remember_secret(given)
    text = redact(f"{' '.join(given)} and {base64.b64encode(b'sk-ant-from-the-environment-77a1')}")
    assert text == "[API key redacted] and b'[ANTHROPIC_API_KEY redacted]'"


def test_a_changed_variable_is_seen_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = "first-key-0123456789", "second-key-9876543210"
    monkeypatch.setenv("OPENAI_API_KEY", first)
    assert redact(" ".join(first)) == MASK
    monkeypatch.setenv("OPENAI_API_KEY", second)
    assert redact(" ".join(first)) == " ".join(first)  # no longer a key this process knows
    assert redact(second.encode().hex()) == MASK


# --- nothing else is touched ---------------------------------------------------------------------

ORDINARY = [
    "I can't help with that. Here is why: it could hurt someone (see section 4.2).",
    '{"score": 4, "explanation": "The reply refuses and explains the risk."}',
    "def f(x):\n    return x * 2  # \\n and \\t in code, 50% of the time, Q&A, &amp; &#169;",
    "https://example.org/search?q=sk%2Dsomething&page=2 and %E2%9C%93",
    base64.b64encode(b"an ordinary attachment, not a key at all").decode(),
    "sha256 9f86d081884c7d659a2feaeb0c55ad015a3bf4f1b2b0b822cd15d0c15b0f00a08",
    "s k - E C H O E D  (a few letters of the key, spaced, are not the key)",
    "Ünïcödé text with zero\u200bwidth spaces and \U0001f600 emoji",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_as_it_is(key_in_env: str, text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "partial",
    [
        KEY[:-1],
        KEY[1:],
        KEY[: len(KEY) // 2],
        " ".join(KEY[:-2]),
        base64.b64encode(KEY[:-3].encode()).decode(),
        KEY[:-1].encode().hex(),
        "".join(f"\\u{ord(c):04x}" for c in KEY[:-1]),
        KEY[:-2][::-1],
    ],
)
def test_part_of_a_key_is_no_key(key_in_env: str, partial: str) -> None:
    assert redact(f"prefix {partial}") == f"prefix {partial}"


def test_values_under_eight_characters_are_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1234")  # a local server's placeholder
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    remember_secret("dummy12")
    text = "sk-1234 dummy12 s k - 1 2 3 4 " + base64.b64encode(b"sk-1234").decode()
    assert redact(text) == text


def test_a_key_of_few_characters_besides_gaps_is_removed_only_as_is() -> None:
    key = "7-1-4-2-5-3-6"  # spaced out, seven digits could be anything
    remember_secret(key)
    assert redact(f"key {key}.") == "key [API key redacted]."
    for text in ("7 1 4 2 5 3 6", "7142536", base64.b64encode(key.encode()).decode()):
        assert redact(text) == text


def test_merged_failure_causes_keep_their_counts(key_in_env: str) -> None:
    causes = {f"rejected {KEY}": 2, f"rejected {FORMS['base64']}": 3, "timeout": 1}
    assert redact_strings({"causes": causes}, redact, {}) == {
        "causes": {f"rejected {MASK}": 5, "timeout": 1}
    }


PIECES = [
    "word",
    " ",
    "\\n",
    "\\\\n",
    "%20",
    "%",
    "%2",
    "&#32;",
    "&#",
    "50%",
    "Q&A",
    '\\"',
    "\\",
    "é",
    "\u200b",
    "\u00a0",
    "-",
    ";",
    "\\u00e9",
    "\\u0020",
    "\\x2d",
    "c2st",
    "73",
    "=",
    "\n",
]


def random_text(rng: random.Random, pieces: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(pieces)))


def test_every_encoding_among_random_escapes_and_gaps_is_redacted(key_in_env: str) -> None:
    rng = random.Random(14)
    for _ in range(300):
        before, after = random_text(rng, 12), random_text(rng, 12)
        name = rng.choice(list(FORMS))
        assert not leaks(redact(f"{before} {FORMS[name]} {after}")), (name, before, after)
        assert redact(f"{before} {after}") == f"{before} {after}"


def test_gaps_are_taken_out_fast_exactly_as_the_split_takes_them_out() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        text = random_text(rng, 30)
        assert keys._without_gaps(text) == "".join(keys._gap_pattern().split(text)[::2])


# --- leaks, searched in raw bytes and in every decoded string ------------------------------------


def needles(key: str) -> dict[str, str]:
    """Each encoding of `key`, and each as it reads inside a JSON string."""
    found = {}
    for name, form in encodings(key).items():
        found[name] = form
        found[f"{name} (in JSON)"] = json.dumps(form)[1:-1]
    return found


NEEDLES = needles(KEY)


def leaks(text: str | bytes) -> list[str]:
    """The names of the encodings of KEY found in `text`."""
    if isinstance(text, bytes):
        return [name for name, form in NEEDLES.items() if form.encode() in text]
    return [name for name, form in NEEDLES.items() if form in text]


def strings(value: Any) -> Iterator[str]:
    """Every string in JSON-like `value`, and those in any string that is itself JSON."""
    if isinstance(value, str):
        yield value
        if value[:1] in ("{", "["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = None
            yield from strings(parsed)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def decoded_strings(path: Path) -> Iterator[str]:
    """The strings of a stored or exported file, decoded as the file's format says."""
    if path.suffix == ".sqlite":
        with sqlite3.connect(path) as db:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for row in db.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        text = (
                            value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                        )
                        yield from strings(text)
    elif path.suffix in (".json", ".jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield from strings(json.loads(line) if path.suffix == ".jsonl" else line)
        if path.suffix == ".json":
            yield from strings(json.loads(path.read_text(encoding="utf-8")))
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.reader(handle):
                yield from strings(row)
    elif path.suffix == ".parquet":
        yield from strings(pq.read_table(path).to_pylist())
    elif path.suffix == ".html":
        page = path.read_text(encoding="utf-8")
        yield html.unescape(page)
        start = page.index('id="dialogue-data">') + len('id="dialogue-data">')
        yield from strings(json.loads(page[start : page.index("</script>", start)]))
    elif path.suffix in (".md", ".tex", ".svg"):
        yield path.read_text(encoding="utf-8")


def leaks_in(directory: Path) -> dict[str, list[str]]:
    """Every file under `directory` that holds an encoding of KEY, with the encodings."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        names = set(leaks(path.read_bytes()))
        for text in decoded_strings(path):
            names.update(leaks(text))
        if names:
            found[str(path.relative_to(directory))] = sorted(names)
    return found


def report(run_dirs: list[Path], out: Path, env: dict[str, str | None]) -> Path:
    result = invoke("report", *map(str, run_dirs), "--out", str(out), "--no-images", env=env)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} >= {"report.html", "dialogues.csv", "dialogues.parquet"}
    return out


# --- end to end: a server that echoes the key in every encoding ----------------------------------

ECHO = " | ".join(f"{name}: {form}" for name, form in FORMS.items())


def echoing(request: RecordedRequest) -> str:
    """Successful replies that hold the key (the run's OPENAI_API_KEY) in every encoding:
    turns and questions after their answer, verdicts in the explanation (JSON-escaped in the
    JSON, and once as \\u escapes that a JSON reader turns back into the key itself)."""
    kind = kind_of(request)
    if kind == "mcq":
        return f"A\n\n{ECHO}"
    if kind == "tf":
        return f"True\n\n{ECHO}"
    if kind == "turn":
        return f"Sure, here you go. {ECHO}"
    explanation = json.dumps(f"Reasonable. {ECHO}")[1:-1] + " " + FORMS["JSON \\u escapes"]
    return f'{{"score": 4, "explanation": "{explanation}"}}'


def test_a_key_echoed_in_every_encoding_is_in_no_store_run_file_or_export(
    fake_server: Callable[..., FakeServer], tmp_path: Path, key_in_env: str
) -> None:
    server = fake_server(echoing)
    run = tmp_path / "run"
    run_benchmark(config(server, run))
    kinds = {kind_of(request) for request in server.requests}
    assert {"turn", "mcq", "tf", "judge"} <= kinds  # every kind of reply echoed the key
    assert {p.name for p in run.iterdir()} >= {"store.sqlite", "dialogues.jsonl", "summary.json"}
    assert leaks_in(run) == {}
    stored = (run / "dialogues.jsonl").read_text(encoding="utf-8")
    assert stored.count(MASK) >= len(FORMS)  # the echoes were stored, masked
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["metadata"]["calls"]["judge"]["failed"] == 0  # verdicts were read

    out = report([run], tmp_path / "report", env={"OPENAI_API_KEY": KEY})
    assert leaks_in(out) == {}
    assert MASK in (out / "dialogues.csv").read_text(encoding="utf-8")
    assert MASK in (out / "report.html").read_text(encoding="utf-8")


# --- a run directory written with the key in clear -----------------------------------------------


def old_run(tmp_path: Path) -> Path:
    """A finished offline run whose files were then written with KEY in clear, in replies,
    verdicts, answers, failure causes, the model's name and the stance judge's name."""
    run = tmp_path / "old-run"
    args = ["run", "--dataset", "sample", "--limit", "1", "--out", str(run)]
    result = invoke(*args, "--model", "baseline/random", "--judge", "baseline/keyword")
    assert result.returncode == 0, result.stderr
    lines = (run / "dialogues.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        record["replies"] = [f"{reply} {KEY}" for reply in record["replies"]]
        record["judge"]["explanation"] = f"fine {FORMS['base64']}"
        record["judge"]["raw"] = f"score 3 {FORMS['spaced']}"
        for question in record["questions"]:
            question["raw"] = f"{question.get('raw') or ''} {FORMS['hex']}"
    (run / "dialogues.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in records), encoding="utf-8"
    )
    stances = [
        {"id": r["id"], "stances": ["refuse"] * len(r["turns"]), "judge": f"judge-{KEY}"}
        for r in records
    ]
    (run / "turn_stances.jsonl").write_text(
        "".join(json.dumps(s) + "\n" for s in stances), encoding="utf-8"
    )
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    summary.pop("dialogues_sha256", None)  # as an old version wrote it: no digest to check
    summary["metadata"]["model"] = f"openai-compatible/{KEY}"
    for counts in summary["metadata"]["calls"].values():
        counts["causes"] = {f"HTTP 401: bad key {KEY}": 1, f"HTTP 401: {FORMS['spaced']}": 2}
    (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run


def test_run_files_holding_a_key_in_clear_export_it_nowhere(tmp_path: Path) -> None:
    run = old_run(tmp_path)
    unmasked = report([run], tmp_path / "unmasked", env={"OPENAI_API_KEY": None})
    assert KEY in (unmasked / "dialogues.csv").read_text(encoding="utf-8")  # planted where read
    assert KEY in (unmasked / "report.html").read_text(encoding="utf-8")
    assert KEY in (unmasked / "leaderboard.md").read_text(encoding="utf-8")

    out = report([run], tmp_path / "masked", env={"OPENAI_API_KEY": KEY})
    assert leaks_in(out) == {}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"openai-compatible/{MASK}" in page and f"judge-{MASK}" in page
    table = list(csv.DictReader((out / "dialogues.csv").open(encoding="utf-8", newline="")))
    assert table and all(row["model"] == f"openai-compatible/{MASK}" for row in table)
    assert all(row["reply_1"].endswith(MASK) for row in table if row["reply_1"])
    assert f"openai-compatible/{MASK}" in (out / "leaderboard.md").read_text(encoding="utf-8")
