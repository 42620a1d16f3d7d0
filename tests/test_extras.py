"""Install hints name the checkout when mtmcs runs from one, the PyPI name otherwise."""

from __future__ import annotations

import shlex
from pathlib import Path

import mtmcs
from command import invoke
from mtmcs.extras import checkout_root, install_hint

ROOT = Path(__file__).resolve().parents[1]


def _layout(root: Path, name: str) -> Path:
    """`root/src/mtmcs` beside a `root/pyproject.toml` naming the project `name`."""
    package = root / "src" / "mtmcs"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n', encoding="utf-8")
    return package


def test_this_checkout_gets_an_editable_install_of_itself() -> None:
    assert Path(mtmcs.__file__).resolve().parent == ROOT / "src" / "mtmcs"  # pip install -e .
    assert checkout_root() == ROOT
    assert install_hint("hf") == f"pip install -e {shlex.quote(f'{ROOT}[hf]')}"


def test_an_installed_copy_gets_the_pypi_name(tmp_path: Path) -> None:
    package = tmp_path / "lib" / "python3.11" / "site-packages" / "mtmcs"
    package.mkdir(parents=True)
    assert checkout_root(package) is None
    assert install_hint("ray", package) == "pip install 'mtmcs-bench[ray]'"


def test_a_checkout_path_with_spaces_stays_one_shell_word(tmp_path: Path) -> None:
    root = tmp_path / "my projects" / "mtmcs-bench"
    package = _layout(root, "mtmcs-bench")
    assert shlex.split(install_hint("report", package)) == [
        "pip",
        "install",
        "-e",
        f"{root}[report]",
    ]


def test_a_src_layout_of_another_project_is_not_a_checkout(tmp_path: Path) -> None:
    package = _layout(tmp_path / "other", "someone-elses-project")
    assert install_hint("vllm", package) == "pip install 'mtmcs-bench[vllm]'"
    broken = _layout(tmp_path / "broken", "x")
    (tmp_path / "broken" / "pyproject.toml").write_text("[project\n", encoding="utf-8")
    assert install_hint("vllm", broken) == "pip install 'mtmcs-bench[vllm]'"


def test_serve_without_vllm_says_how_to_install_it_from_here(tmp_path: Path) -> None:
    result = invoke("serve", "Qwen/Qwen3-VL-8B-Instruct", env={"PATH": str(tmp_path)})
    assert result.returncode != 0
    assert f"vllm is not installed here: {install_hint('vllm')}" in result.stderr
    assert "pip install -e " in result.stderr and "mtmcs-bench[vllm]" not in result.stderr
