"""Review decisions that outlive a rebuild: read from sheets, kept in their own file, merged.

Decisions live in `OUT/review/decisions.jsonl`, one JSON object a line (`key`, `digest`,
`decision`, `fix`, `sheet`), a later line winning. `digest` is the sha256 of the scenario
as built, its key left out (`scenario_digest`), and a decision applies to the scenario with
that digest: exactly the one reviewed, whatever its image file is called now. When a
rebuild changes a scenario, its decision is stale and the scenario goes back to review.
Nothing in the file names a folder, so moving OUT or the source images changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mtmcs.build.schemas import Scenario
from mtmcs.errors import ConfigError

DECISIONS_FILE = "review/decisions.jsonl"
DECISIONS = ("keep", "drop", "fix")


def scenario_digest(scenario: Scenario) -> str:
    """The sha256 of a scenario's content: its image by content id, not its key."""
    content = scenario.model_dump(mode="json", exclude={"key"})
    data = json.dumps(content, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision on one scenario as it was when reviewed."""

    key: str
    digest: str
    decision: str
    fix: dict[str, Any] | None = None
    sheet: str = ""  # the file name of the sheet it came from

    def label(self) -> str:
        """The decision with its fix, for comparing two reviewers."""
        return self.decision + (json.dumps(self.fix, sort_keys=True) if self.fix else "")


def read_sheet(path: Path, scenarios: Sequence[Scenario]) -> list[Decision]:
    """The decisions of a filled-in `review.csv`; unknown keys, decisions or bad fixes are
    errors naming the file and line. A row whose `digest` differs from the scenario's now
    keeps its digest (the decision is then stale)."""
    by_key = {scenario.key: scenario for scenario in scenarios}
    found: list[Decision] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                key = (row.get("key") or "").strip()
                decision = (row.get("decision") or "").strip().lower() or "keep"
                where = f"{path}:{number}"
                if key not in by_key:
                    raise ConfigError(f"{where}: unknown scenario key {key!r}")
                if decision not in DECISIONS:
                    raise ConfigError(
                        f"{where}: decision {decision!r} is not one of {', '.join(DECISIONS)}"
                    )
                scenario = by_key[key]
                text = row.get("fix_json") or ""
                fix = _fix(where, scenario, text) if decision == "fix" else None
                digest = (row.get("digest") or "").strip() or scenario_digest(scenario)
                found.append(Decision(key, digest, decision, fix, path.name))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text: {error}") from error
    return found


def _fix(where: str, scenario: Scenario, text: str) -> dict[str, Any]:
    try:
        fix = json.loads(text)
        fixed(scenario, fix)
    except (ValueError, ValidationError, TypeError) as error:
        raise ConfigError(f"{where}: fix_json of {scenario.key}: {error}") from error
    if not isinstance(fix, dict):
        raise ConfigError(f"{where}: fix_json of {scenario.key} is not a JSON object")
    return {name: value for name, value in fix.items() if name not in ("key", "image")}


def fixed(scenario: Scenario, fix: Mapping[str, Any]) -> Scenario:
    """The scenario as a reviewer fixed it (its key and image stay)."""
    return Scenario.model_validate({**fix, "key": scenario.key, "image": scenario.image})


def load_decisions(out: Path) -> list[Decision]:
    """The recorded decisions, in the order recorded."""
    path = out / DECISIONS_FILE
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [Decision(**json.loads(line)) for line in lines if line.strip()]
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(f"cannot read the review decisions {path}: {error}") from error


def by_digest(decisions: Sequence[Decision]) -> dict[str, Decision]:
    """The decision in force for each scenario digest (the last recorded)."""
    return {decision.digest: decision for decision in decisions}


def record_decisions(out: Path, decisions: Sequence[Decision]) -> None:
    """Append decisions to `OUT/review/decisions.jsonl`."""
    path = out / DECISIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for decision in decisions:
            handle.write(json.dumps(asdict(decision), ensure_ascii=False) + "\n")


@dataclass
class Applied:
    """Scenarios after the recorded decisions: kept (fixes applied), drops, stale keys."""

    kept: list[Scenario]
    drops: list[dict[str, str]]
    fixed: int
    stale: list[str]


def apply_decisions(scenarios: Sequence[Scenario], decisions: Sequence[Decision]) -> Applied:
    """Apply to each scenario the decision on its digest; a scenario with decisions on its
    key but none on its content now is stale (kept, back to review)."""
    applied = Applied([], [], 0, [])
    current = by_digest(decisions)
    keys = {decision.key for decision in decisions}
    for scenario in scenarios:
        decision = current.get(scenario_digest(scenario))
        if decision is None and scenario.key in keys:
            applied.stale.append(scenario.key)
        if decision is not None and decision.decision == "drop":
            reason = f"dropped in review ({decision.sheet})"
            applied.drops.append({"stage": "review", "item": scenario.key, "reason": reason})
        elif decision is not None and decision.fix is not None:
            applied.kept.append(fixed(scenario, decision.fix))
            applied.fixed += 1
        else:
            applied.kept.append(scenario)
    return applied


@dataclass
class Agreement:
    """Two reviewers compared on the scenarios both decided."""

    both: int
    agreed: list[Decision]
    conflicts: list[tuple[Decision, Decision]]
    kappa: float | None  # undefined when both always gave one and the same label

    @property
    def percent(self) -> float:
        return 100.0 * len(self.agreed) / self.both if self.both else 0.0


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (`None` when undefined)."""
    total = len(first)
    if not total:
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / total
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[label] * counts_b[label] for label in counts_a) / total**2
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def merge(first: Sequence[Decision], second: Sequence[Decision]) -> Agreement:
    """Compare two reviewers' sheets: kappa on the decisions, conflicts where the decision
    or the fix differs; a scenario only one sheet decided is left out."""
    a = {d.key: d for d in first}
    b = {d.key: d for d in second}
    keys = [key for key in a if key in b]
    kappa = cohen_kappa([a[k].decision for k in keys], [b[k].decision for k in keys])
    agreed = [a[k] for k in keys if a[k].label() == b[k].label() and a[k].digest == b[k].digest]
    agreed_keys = {d.key for d in agreed}
    conflicts = [(a[k], b[k]) for k in keys if k not in agreed_keys]
    return Agreement(len(keys), agreed, conflicts, kappa)
