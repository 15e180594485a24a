"""The import direction STYLE.md sets, checked by scanning every module's imports:
dsl (stdlib + lark) <- compiler (dsl + networkx + sympy; torch/runtime only lazily in
the commands that fit and sample); runtime (torch; never dsl or compiler). And `bgmc
check` must start without importing torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("dsl"), ids=lambda p: p.name)
def test_dsl_imports_only_stdlib_and_lark(path: Path) -> None:
    bad = _imports(path, top_level_only=False) & {"compiler", "runtime", "torch", "networkx",
                                                  "sympy", "numpy"}
    assert not bad, f"{path.name} imports {bad}"


def test_only_the_parser_imports_lark() -> None:
    users = [p.name for p in _modules("dsl") + _modules("compiler")
             if "lark" in _imports(p, top_level_only=False)]
    assert users == ["parser.py"]


@pytest.mark.parametrize("path", _modules("compiler"), ids=lambda p: p.name)
def test_compiler_never_imports_torch_or_runtime_at_module_level(path: Path) -> None:
    bad = _imports(path, top_level_only=True) & {"torch", "runtime"}
    assert not bad, f"{path.name} imports {bad} at module level"


@pytest.mark.parametrize("path", _modules("runtime"), ids=lambda p: p.name)
def test_runtime_never_imports_dsl_or_compiler(path: Path) -> None:
    bad = _imports(path, top_level_only=False) & {"dsl", "compiler", "lark"}
    assert not bad, f"{path.name} imports {bad}"


def test_bgmc_check_does_not_import_torch() -> None:
    model = ROOT / "examples" / "eight_schools_noncentered.bgm"
    code = (f"import sys; from compiler.cli import main; rc = main(['check', {str(model)!r}]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip().endswith("NO-TORCH 0")
