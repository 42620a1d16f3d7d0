"""Two scripted models on the bundled sample that answer the same items alike, one better:
a test double for paired comparisons, and the worked example of docs/statistics.md.

Each intent question has a difficulty u in [0, 1) (a hash of its text and options); model
`skill-50` answers it right when u < 0.5, `skill-70` when u < 0.7, so `skill-70` is right
wherever `skill-50` is, and on about 20% more. Their turn replies name the model; the judge
scores a dialogue 2–4 from a hash of its user turns, one point more (at most 5) for
`skill-70` on every other dialogue. Everything is decided by hashes: reruns agree.

    python tests/scripted_pair.py OUT_DIR [--limit N]

starts the fake server (127.0.0.1), runs `mtmcs run` for both models on the sample into
OUT_DIR/skill-50 and OUT_DIR/skill-70, and stops it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

from fakeserver import FakeServer, RecordedRequest
from mtmcs.data.loaders import load_benchmark

WEAK, STRONG = "skill-50", "skill-70"
SKILL = {WEAK: 0.5, STRONG: 0.7}
LETTERS = "ABCDEF"


def _unit(text: str) -> float:
    """A stable number in [0, 1) from `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


@cache
def answer_key() -> dict[str, str | bool]:
    """Each sample question's ground truth, by its text (and its options, for an MCQ)."""
    key: dict[str, str | bool] = {}
    for row in load_benchmark("sample").rows:
        for modality in ("multimodal", "unimodal"):
            content = row.content(modality)
            for mcq in content.mcq:
                key[mcq.question + "\n" + "\n".join(mcq.options)] = mcq.ground_truth
            for tf in content.tf:
                key[tf.question] = tf.ground_truth
    return key


def _text(message: dict[str, object]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    assert isinstance(content, list)
    return "".join(part["text"] for part in content if part["type"] == "text")


def _question(prompt: str) -> tuple[str, list[str]]:
    """The question and the option texts of a question prompt."""
    question = prompt.split("Question:\n", 1)[1].split("\n\n", 1)[0]
    block = prompt.split("Options:\n", 1)[1].split("\n\n", 1)[0] if "Options:\n" in prompt else ""
    options = [re.sub(r"^[A-F]\. ", "", line) for line in block.splitlines()]
    return question, options


def reply(request: RecordedRequest) -> str:
    """The scripted models' and the judge's replies (routed on the call kind)."""
    model = str(request.body.get("model", ""))
    kind = request.call_kind
    prompt = _text(request.body["messages"][-1])
    if kind == "judge":
        key = prompt.replace(STRONG, WEAK)
        score = 2 + int(_unit("judge" + key) * 3)
        if STRONG in prompt and _unit("bonus" + key) < 0.5:
            score = min(5, score + 1)
        return f'{{"score": {score}, "explanation": "Scripted."}}'
    if kind == "turn":
        turn = sum(message["role"] == "user" for message in request.body["messages"])
        return f"{model} replies to turn {turn}."
    question, options = _question(prompt)
    name = question + "\n" + "\n".join(options) if kind == "mcq" else question
    truth = answer_key()[name]
    right = _unit(name) < SKILL[model]
    if kind == "tf":
        return str(truth if right else not truth)
    assert isinstance(truth, str)
    return truth if right else next(letter for letter in LETTERS if letter != truth)


def run_pair(server: FakeServer, out: Path, limit: int | None = None) -> dict[str, Path]:
    """Both scripted models on the sample through `mtmcs run`; their run directories."""
    runs = {}
    for model in (WEAK, STRONG):
        runs[model] = out / model
        command = [
            sys.executable, "-m", "mtmcs", "run",
            "--model", f"openai-compatible/{model}",
            "--base-url", server.base_url,
            "--judge", "openai-compatible/judge",
            "--judge-base-url", server.base_url,
            "--dataset", "sample",
            "--out", str(runs[model]),
        ] + (["--limit", str(limit)] if limit else [])  # fmt: skip
        environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
        subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    with FakeServer(reply) as server:
        for model, path in run_pair(server, arguments.out, arguments.limit).items():
            print(f"{model}: {path}")


if __name__ == "__main__":
    main()
