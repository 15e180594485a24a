"""`Program.fit` runs every method `bgmc fit` runs, through the same fit policy
(compiler/app/fitting.py): for each method, the fit from Python and the file the CLI
writes with the same seed and settings hold the same numbers, exactly."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.api import Fit, FitSettings, compile_file
from compiler.cli import main
from runtime.errors import ModelError
from runtime.output import read_netcdf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
COIN = EXAMPLES / "coin.bgm"
COIN_DATA = EXAMPLES / "coin.json"

# method -> (model, data, options as Program.fit names them, the same as CLI flags)
CASES: dict[str, tuple[Path, Path, dict[str, Any], list[str]]] = {
    "mle": (COIN, COIN_DATA, {}, []),
    "map": (COIN, COIN_DATA, {"optimizer": "adam", "max_iter": 300},
            ["--optimizer", "adam", "--iter", "300"]),
    "nuts": (COIN, COIN_DATA, {"chains": 2, "warmup": 60, "draws": 40},
             ["--chains", "2", "--warmup", "60", "--draws", "40"]),
    "advi": (COIN, COIN_DATA, {"draws": 50}, ["--draws", "50"]),
    "svi": (COIN, COIN_DATA, {"max_iter": 50, "draws": 30, "lr": 0.01},
            ["--iter", "50", "--draws", "30", "--lr", "0.01"]),
    "exact": (COIN, COIN_DATA, {"chains": 2, "draws": 25}, ["--chains", "2", "--draws", "25"]),
    "adversarial": (EXAMPLES / "gan_ring.bgm", EXAMPLES / "gan_ring.json",
                    {"critic": "D", "max_iter": 3, "batch": 16},
                    ["--critic", "D", "--iter", "3", "--batch", "16"]),
}


def _cli(method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    model, data, _, flags = CASES[method]
    suffix = ".json" if method in ("mle", "map") else ".nc"
    out = tmp_path / f"cli{suffix}"
    code = main(["fit", str(model), "--data", str(data), "--method", method, "--seed", "3",
                 "--no-progress", "-o", str(out), *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return out, captured.out


def _api(method: str, tmp_path: Path) -> Fit:
    model, data, options, _ = CASES[method]
    return compile_file(model).fit(str(data), method=method, seed=3,
                                   output=str(tmp_path / "api.nc"), **options)


@pytest.mark.parametrize("method", ["mle", "map"])
def test_point_estimates_from_python_equal_the_cli_file(method: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    out, printed = _cli(method, tmp_path, capsys)
    fit = _api(method, tmp_path)
    assert json.loads(out.read_text()) == fit.point_report()
    assert printed.splitlines() == list(fit.report)
    assert fit.converged and fit.values["theta"].shape == ()


@pytest.mark.parametrize("method", ["nuts", "advi", "svi", "exact", "adversarial"])
def test_draws_from_python_equal_the_cli_file(method: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out, printed = _cli(method, tmp_path, capsys)
    fit = _api(method, tmp_path)
    written = read_netcdf(out)
    group = "nets" if method == "adversarial" else "posterior"
    ours, theirs = getattr(fit.idata, group), getattr(written, group)
    assert sorted(ours.data_vars) == sorted(theirs.data_vars) and list(ours.data_vars)
    for name in ours.data_vars:
        np.testing.assert_array_equal(ours[name].values, theirs[name].values)
    for line in fit.report:  # the CLI printed the same report (a summary may follow)
        assert line in printed
    with pytest.raises(ModelError, match="not point estimates"):
        _ = fit.values


def test_unknown_and_out_of_range_options_are_refused_by_name() -> None:
    program = compile_file(COIN)
    with pytest.raises(ModelError, match="unknown fit option 'chian'"):
        program.fit(str(COIN_DATA), method="nuts", chian=2)
    with pytest.raises(ModelError, match="chains=0: expected an integer at least 1"):
        FitSettings(method="nuts", chains=0)
    with pytest.raises(ModelError, match="method='hmc': expected one of mle, map"):
        FitSettings(method="hmc")
    with pytest.raises(ModelError, match="adapt_delta=1.0"):
        FitSettings(adapt_delta=1.0)


def test_initial_values_from_python_are_checked_like_the_cli_file() -> None:
    program = compile_file(COIN)
    with pytest.raises(ModelError, match="theta"):
        program.fit(str(COIN_DATA), method="map", init={"theta": 1.5})
    fit = program.fit(str(COIN_DATA), method="map", init={"theta": 0.3})
    assert 0 < float(fit.values["theta"]) < 1
