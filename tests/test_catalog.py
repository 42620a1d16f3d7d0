"""`mtmcs list …` names everything its registries hold; `mtmcs --version` the package's."""

from __future__ import annotations

from importlib.metadata import version

from command import invoke
from mtmcs.cli.catalog import GUARD_DESCRIPTIONS, PROVIDER_NAMING
from mtmcs.guardrails.defences import DEFENCE_CLASSES
from mtmcs.guardrails.guards import GUARD_KINDS
from mtmcs.models.model_cards import MODEL_CARDS
from mtmcs.models.registry import PROVIDERS


def _listed(what: str) -> str:
    result = invoke("list", what, env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_models_names_every_provider_and_model_card() -> None:
    assert set(PROVIDER_NAMING) == set(PROVIDERS)
    shown = _listed("models")
    assert all(f"│ {provider} " in shown for provider in PROVIDERS)
    assert all(card.checkpoint in shown and card.paper_name in shown for card in MODEL_CARDS)


def test_list_defences_names_every_registered_defence_and_whether_it_asks_the_judge() -> None:
    shown = _listed("defences")
    rows = {line.split("│")[1].strip(): line for line in shown.splitlines() if "│" in line}
    assert set(DEFENCE_CLASSES) <= set(rows)
    for name, cls in DEFENCE_CLASSES.items():
        assert (
            rows[name]
            .rstrip(" │")
            .endswith("yes" if cls.needs_judge(False) else ("optional", "no"))
        )


def test_list_guards_and_datasets() -> None:
    assert set(GUARD_DESCRIPTIONS) == set(GUARD_KINDS)
    guards = _listed("guards")
    assert all(f"│ {kind} " in guards for kind in GUARD_KINDS)
    datasets = _listed("datasets")
    assert all(name in datasets for name in ("official", "sample", "ND-25/MCS-bench"))


def test_list_without_a_subject_shows_its_usage() -> None:
    result = invoke("list")
    assert "models" in result.stdout + result.stderr and "defences" in result.stdout + result.stderr


def test_version_is_the_installed_package_version() -> None:
    result = invoke("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mtmcs-bench {version('mtmcs-bench')}"
