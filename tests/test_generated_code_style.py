"""Generated code is read by students: calls name their flags (`ndims=1`, not a bare 1),
the Jacobian of a constrained latent is said where it is added, a latent's comment keeps
its declared shape, and comments and docstrings fit in 100 columns."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from compiler.api import compile_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "examples").glob("*.bgm"))


@pytest.fixture(scope="module")
def modules() -> dict[str, str]:
    return {path.stem: compile_file(path).python for path in MODELS}


def test_accumulator_and_indexing_calls_name_their_flags(modules: dict[str, str]) -> None:
    bare = re.compile(r"acc__\.(prior|likelihood|enum_term|factor|chain_term)\(.*, -?\d+\)$")
    for name, code in modules.items():
        for line in code.splitlines():
            assert not bare.search(line.strip()), (name, line)
            if "rt.take(" in line or "rt.take_batched(" in line:
                assert "rank=" in line and "gathered=" in line, (name, line)
            if "acc__.chain_term(" in line:
                assert "start=" in line and "timed=" in line, (name, line)


def test_the_jacobian_is_said_where_it_is_added(modules: dict[str, str]) -> None:
    seen = 0
    for name, code in modules.items():
        lines = code.splitlines()
        for i, line in enumerate(lines):
            if "acc__.constrain(" in line and "jacobian=False" not in line:
                assert "log-Jacobian" in lines[i - 1], (name, line)
                seen += 1
    assert seen >= 5


def test_comments_and_docstrings_fit_in_100_columns(modules: dict[str, str]) -> None:
    for name, code in modules.items():
        for line in code.splitlines():
            if line.lstrip().startswith(("#", '"""')):
                assert len(line) <= 100, (name, line)


def test_a_latent_comment_keeps_its_declared_shape(modules: dict[str, str]) -> None:
    assert "# eight_schools_noncentered.bgm:12  eta[J]: real" in \
        modules["eight_schools_noncentered"]
    assert "# ar2.bgm:11  beta[2]: real" in modules["ar2"]
