"""Generated code is read by students: calls name their flags (`ndims=1`, not a bare 1),
the Jacobian of a constrained latent is said where it is added, a latent's comment keeps
its declared shape, and comments and docstrings fit in 100 columns."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from compiler.api import compile_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "examples").glob("*.bgm"))


@pytest.fixture(scope="module")
def modules() -> dict[str, str]:
    return {path.stem: compile_file(path).python for path in MODELS}


def _calls(code: str) -> list[tuple[str, ast.Call]]:
    """(dotted name, call) for every call in a generated module."""
    out = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            out.append((f"{node.func.value.id}.{node.func.attr}", node))
    return out


def test_accumulator_and_indexing_calls_name_their_flags(modules: dict[str, str]) -> None:
    accumulators = {f"acc__.{m}" for m in ("prior", "likelihood", "enum_term", "factor",
                                             "chain_term")}
    checked = 0
    for name, code in modules.items():
        for called, call in _calls(code):
            keywords = {k.arg for k in call.keywords}
            if called in accumulators:
                last = call.args[-1]
                assert not (isinstance(last, ast.Constant) and isinstance(last.value, int)), \
                    (name, ast.unparse(call))
                checked += 1
            if called in ("rt.take", "rt.take_batched"):
                assert {"rank", "gathered"} <= keywords, (name, ast.unparse(call))
            if called == "acc__.chain_term":
                assert {"start", "timed"} <= keywords, (name, ast.unparse(call))
    assert checked >= 20


def test_the_jacobian_is_said_where_it_is_added(modules: dict[str, str]) -> None:
    seen = 0
    for name, code in modules.items():
        lines = code.splitlines()
        for i, line in enumerate(lines):
            if "acc__.constrain(" in line and "jacobian=False" not in line:
                assert "log-Jacobian" in lines[i - 1], (name, line)
                seen += 1
    assert seen >= 5


def test_every_line_fits_in_100_columns(modules: dict[str, str]) -> None:
    """Comments and docstrings wrap; long statements break inside their brackets."""
    for name, code in modules.items():
        for line in code.splitlines():
            assert len(line) <= 100, (name, line)


def test_a_latent_comment_keeps_its_declared_shape(modules: dict[str, str]) -> None:
    assert "# eight_schools_noncentered.bgm:12  eta[J]: real" in \
        modules["eight_schools_noncentered"]
    assert "# ar2.bgm:11  beta[2]: real" in modules["ar2"]
