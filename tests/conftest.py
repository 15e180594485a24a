"""Shared test options: `pytest --update-goldens` rewrites golden files instead of
comparing against them, so a reviewer reads the change as a diff.

Tests that keep golden files take the `update_goldens` fixture (a bool), or the
`golden` fixture: `golden(path, actual)` compares, or rewrites when updating.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` (both of CI's steps) runs two workers on two cores: one torch thread each,
    # and in the processes tests start, since a second thread waiting for a core the other
    # worker holds stalls every operation (compiler/app/defaults.py measured 60 times).
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite golden files (expected outputs) from the current output")


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files rather than compare."""
    return bool(request.config.getoption("--update-goldens"))


def check_golden(path: Path, actual: str, update: bool) -> None:
    """Compare `actual` with the golden file at `path`, or rewrite it when updating."""
    if update:
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; run 'pytest --update-goldens' and review it")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (
        f"output differs from {path} (if the change is intended, run "
        "'pytest --update-goldens' and review the diff)")


@pytest.fixture
def golden(update_goldens: bool) -> Callable[[Path, str], None]:
    """`golden(path, actual)`: check `actual` against a golden file (or rewrite it)."""
    return lambda path, actual: check_golden(path, actual, update_goldens)
