"""The import walls, checked by reading every import of every module through `ast`, at
module level and inside functions alike:

- dsl/ is syntax only: the standard library and lark (and only its parser imports lark);
- compiler/ outside compiler/app/ turns text into Python source and never imports torch
  or the runtime, at any level;
- compiler/app/ is the one place that joins the compiler and the runtime; at module level
  it imports only the runtime's light modules (errors, files), so `bgmc check` starts
  without torch;
- runtime/ never imports dsl or compiler, and takes no compiler object: models reach it as
  generated classes, so no runtime module names a Program or calls `.bind` or
  `.compiled` (the duck typing an import check cannot see).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIGHT_RUNTIME = {"runtime.errors", "runtime.files"}


def _typing_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (imports for annotations only)."""
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and
            isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            for n in ast.walk(node)}


def _imported(path: Path, top_level_only: bool, typing: bool = True) -> set[str]:
    """Full dotted names of the absolute imports of a module (`from a.b import c` gives
    a.b and a.b.c); typing=False leaves out the imports made for annotations only."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    skip = set() if typing else _typing_only(tree)
    found: set[str] = set()
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _roots(path: Path, top_level_only: bool = False) -> set[str]:
    return {name.split(".")[0] for name in _imported(path, top_level_only)}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _outside_app() -> list[Path]:
    return [p for p in _modules("compiler") if "app" not in p.relative_to(ROOT).parts]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", _modules("dsl"), ids=_name)
def test_dsl_imports_only_stdlib_and_lark(path: Path) -> None:
    bad = _roots(path) & {"compiler", "runtime", "torch", "networkx", "sympy", "numpy"}
    assert not bad, f"{_name(path)} imports {bad}"


def test_only_the_parser_imports_lark() -> None:
    users = [_name(p) for p in _modules("dsl") + _modules("compiler") if "lark" in _roots(p)]
    assert users == ["dsl/parser.py"]


@pytest.mark.parametrize("path", _outside_app(), ids=_name)
def test_the_compiler_outside_app_never_imports_torch_or_runtime(path: Path) -> None:
    bad = _roots(path) & {"torch", "runtime", "numpy", "arviz"}
    assert not bad, f"{_name(path)} imports {bad}"


@pytest.mark.parametrize("path", _modules("compiler/app"), ids=_name)
def test_the_application_layer_imports_only_light_runtime_modules_at_module_level(
        path: Path) -> None:
    top = _imported(path, top_level_only=True)
    heavy = {m for m in top if m.split(".")[0] == "runtime" and m != "runtime"
             and not any(m == light or m.startswith(light + ".") for light in LIGHT_RUNTIME)}
    assert "torch" not in {m.split(".")[0] for m in top}, f"{_name(path)} imports torch"
    assert not heavy, f"{_name(path)} imports {heavy} at module level"


@pytest.mark.parametrize("path", _modules("runtime"), ids=_name)
def test_runtime_never_imports_dsl_or_compiler(path: Path) -> None:
    bad = _roots(path) & {"dsl", "compiler", "lark"}
    assert not bad, f"{_name(path)} imports {bad}"


@pytest.mark.parametrize("path", _modules("runtime"), ids=_name)
def test_runtime_takes_no_compiler_object(path: Path) -> None:
    tree = ast.parse(path.read_text())
    seen = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} | \
        {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    bad = seen & {"bind", "compiled", "Program", "Compiled", "GraphicalModel"}
    assert not bad, f"{_name(path)} uses {bad}: a compiler object reached the runtime"


def test_the_checker_catches_a_lazy_import(tmp_path: Path) -> None:
    """The rule reads imports inside functions too (the old check read module level only)."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    import torch\n    from runtime.nuts import sample\n")
    assert {"torch", "runtime"} <= _roots(module)
    assert not _roots(module, top_level_only=True)


def test_bgmc_check_does_not_import_torch() -> None:
    model = ROOT / "examples" / "eight_schools_noncentered.bgm"
    code = (f"import sys; from compiler.cli import main; rc = main(['check', {str(model)!r}]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip().endswith("NO-TORCH 0")


def test_output_writes_only() -> None:
    """runtime/output.py builds InferenceData from arrays and writes it: it never runs the
    model (runtime/evaluate.py does), so it imports neither torch nor the evaluation (the
    evaluation's result types only for type checking)."""
    modules = _imported(ROOT / "runtime" / "output.py", top_level_only=False, typing=False)
    assert not {m for m in modules if m.split(".")[0] == "torch" or
                m in ("runtime.evaluate", "runtime.accumulate", "runtime.model")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_compiler_has_no_import_cycle() -> None:
    """The modules of dsl/ and compiler/ (outside the application layer) import each other
    without a cycle, counting imports inside functions too: a cycle broken by a lazy import
    is still a cycle."""
    import networkx as nx  # noqa: PLC0415
    paths = _modules("dsl") + _outside_app()
    names = {_module_name(p) for p in paths}
    graph = nx.DiGraph()
    for path in paths:
        source = _module_name(path)
        graph.add_node(source)
        for imported in _imported(path, top_level_only=False, typing=False):
            target = imported if imported in names else imported.rpartition(".")[0]
            if target in names and target != source:
                graph.add_edge(source, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles[:3]}"
