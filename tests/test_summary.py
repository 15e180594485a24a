"""What `bgmc summary` and `bgmc fit` print about draws: rows in the model's order,
ESS as whole numbers, `--var-names` and `--hdi-prob` as ArviZ users expect, constant
nodes on one line instead of rows with sd 0 and R-hat NaN, and nothing from the
libraries underneath (ArviZ's shape warnings, numpy's runtime warnings)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from compiler.api import compile_string
from compiler.cli import main

MODEL = """model Ordered
data N: int
data y: real[N]
tau ~ HalfNormal(1)
mu ~ Normal(0, 5)
zero = mu - mu
shift = mu + tau
for i in 1..N:
    y[i] ~ Normal(mu, tau)
"""
DATA = {"N": 4, "y": [0.1, -0.3, 0.8, 0.2]}


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("summary") / "fit.nc"
    fit = compile_string(MODEL, "ordered.bgm").fit(DATA, method="nuts", chains=2,
                                                    warmup=100, draws=100, seed=2)
    fit.save(str(path))
    return path


def _rows(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines()[1:] if line and
            not line.startswith("constant")]


def test_rows_follow_the_model_and_constants_are_one_line(
        fit_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(fit_file)]) == 0
    out, err = capsys.readouterr()
    assert _rows(out) == ["tau", "mu", "shift"]
    assert "constant in every draw: zero = 0" in out
    header = out.splitlines()[0].split()
    assert header[-1] == "r_hat" and "hdi_3%" in header
    ess = out.splitlines()[1].split()[header.index("ess_bulk") + 1]
    assert re.fullmatch(r"\d+", ess), ess  # whole draws, not 4 decimals
    assert "Shape validation" not in err and "RuntimeWarning" not in err
    # 2 x 100 draws: the low-ESS warning of a NUTS fit (it read the method from the wrong
    # place and never fired)
    assert "low effective sample size (< 200) for tau" in err


def test_var_names_and_hdi_prob(fit_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(fit_file), "--var-names", "mu", "--hdi-prob", "0.9"]) == 0
    out = capsys.readouterr().out
    assert _rows(out) == ["mu"] and "hdi_5%" in out and "hdi_95%" in out
    assert main(["summary", str(fit_file), "--var-names", "mu,sigma"]) == 1
    err = capsys.readouterr().err
    assert "'sigma' is not a variable of the fit" in err and "tau, mu" in err
    with pytest.raises(SystemExit):
        main(["summary", str(fit_file), "--hdi-prob", "1.5"])


def test_one_chain_has_no_r_hat_column_and_no_library_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.json"
    data.write_text('{"N": 4, "y": [0.1, -0.3, 0.8, 0.2]}')
    model = tmp_path / "m.bgm"
    model.write_text(MODEL)
    assert main(["fit", str(model), "--data", str(data), "--method", "advi"]) == 0
    out, err = capsys.readouterr()
    assert "r_hat" not in out and _rows(out) == ["tau", "mu", "shift"]
    assert "Shape validation" not in err and "Warning" not in err, err
