"""Notebook use: the `%%bgm` magic and a Program's rich display (SVG diagram, LaTeX joint)."""
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.formatters import DisplayFormatter
from IPython.testing.globalipapp import start_ipython

from compiler.api import compile_string

COIN = ("data N: int\ndata y: int<lower=0, upper=1>[N]\ntheta ~ Beta(2, 2)\n"
        "for i in 1..N:\n    y[i] ~ Bernoulli(theta)\n")


@pytest.fixture(scope="module")
def ip() -> Iterator[Any]:
    shell = start_ipython()
    shell.run_line_magic("load_ext", "compiler.notebook")  # the name notebooks use
    yield shell


def test_the_magic_compiles_the_cell_and_binds_it(ip: Any) -> None:
    program = ip.run_cell_magic("bgm", "coin", COIN)
    assert ip.user_ns["coin"] is program and program.name == "Coin"
    fit = program.fit({"N": 4, "y": [1, 0, 1, 1]}, method="map", device="cpu")
    assert fit.values["theta"] == pytest.approx((3 + 1) / (4 + 2), rel=1e-5)  # mode


def test_without_a_name_the_model_s_own_name_is_used(ip: Any) -> None:
    program = ip.run_cell_magic("bgm", "", "model CoinFlip\n" + COIN)
    assert ip.user_ns["coin_flip"] is program


def test_a_mistake_prints_the_message_with_a_caret_and_no_traceback(
        ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert ip.run_cell_magic("bgm", "bad", "theta ~ Betta(2, 2)\n") is None
    err = capsys.readouterr().err
    assert "bad.bgm:1:9: error: unknown distribution 'Betta'" in err and "^^^^^" in err
    assert "Traceback" not in err and "bad" not in ip.user_ns
    assert ip.run_cell_magic("bgm", "not a name", COIN) is None
    assert "%%bgm takes a Python name" in capsys.readouterr().err


def test_a_program_displays_as_its_diagram_and_its_joint() -> None:
    from matplotlib import mathtext
    program = compile_string(COIN, "coin.bgm")
    shown, _ = DisplayFormatter().format(program)
    assert {"image/svg+xml", "text/latex", "text/plain"} <= set(shown)
    svg = shown["image/svg+xml"]
    assert 'class="node observed" data-name="y"' in svg and 'data-label="i = 1..N"' in svg
    latex = shown["text/latex"]
    assert latex.startswith("$$") and r"\prod_{i=1}^{N}" in latex
    mathtext.math_to_image("$" + latex.strip("$") + "$", io.BytesIO(), format="png")
