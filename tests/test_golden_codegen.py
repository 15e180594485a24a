"""Golden files for generated code: every example's compiled module, byte for byte.

A change to code generation shows up here as a diff a reviewer reads (run
`pytest --update-goldens` and inspect `git diff tests/goldens`), rather than as a silent
change in what users see when they open the module their model compiled to. The
posteriordb models are included because they cover loops, gathers, transforms and
recursions that the teaching examples do not.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from compiler.api import compile_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GOLDENS = Path(__file__).resolve().parent / "goldens" / "codegen"
MODELS = sorted([*EXAMPLES.glob("*.bgm"), *EXAMPLES.glob("posteriordb/*/model.bgm")])


def golden_name(model: Path) -> str:
    """examples/coin.bgm -> coin.py; posteriordb/arma-arma11/model.bgm -> arma-arma11.py."""
    stem = model.parent.name if model.name == "model.bgm" else model.stem
    return f"{stem}.py"


def test_at_least_five_models_are_covered() -> None:
    assert len(MODELS) >= 5


@pytest.mark.parametrize("model", MODELS, ids=golden_name)
def test_generated_module_matches_golden(model: Path, golden: Callable[[Path, str], None]) -> None:
    golden(GOLDENS / golden_name(model), compile_file(model).python)


def test_no_stale_goldens() -> None:
    """A golden file without a model is a model that was renamed or removed."""
    expected = {golden_name(m) for m in MODELS}
    assert {p.name for p in GOLDENS.glob("*.py")} == expected
