"""What `-o` writes is what its extension says: a fit's draws as NetCDF (.nc) or as a
CmdStan-style table (.csv); an extension bgm does not write is refused before the work.
`bgmc predict` prints sd and a 5-95% interval, and says when it is at a point estimate."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from compiler.cli import main
from runtime.output import read_netcdf

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCHOOLS = [str(EXAMPLES / "eight_schools_noncentered.bgm"), "--data",
           str(EXAMPLES / "eight_schools.json")]
NUTS = ["--method", "nuts", "--chains", "2", "--warmup", "60", "--draws", "20",
        "--no-progress", "--seed", "5"]


def test_csv_draws_are_the_netcdf_draws_one_row_per_draw(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert main(["fit", *SCHOOLS, *NUTS, "-o", str(tmp_path / "fit.csv")]) == 0
    assert main(["fit", *SCHOOLS, *NUTS, "-o", str(tmp_path / "fit.nc")]) == 0
    capsys.readouterr()
    with open(tmp_path / "fit.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 20
    assert list(rows[0])[:5] == ["chain", "draw", "lp__", "mu", "tau"]
    assert "eta[8]" in rows[0] and "theta[1]" in rows[0]
    post = read_netcdf(tmp_path / "fit.nc").posterior
    assert [r["chain"] for r in rows[::20]] == ["1", "2"] and rows[21]["draw"] == "2"
    np.testing.assert_array_equal([float(r["eta[3]"]) for r in rows],
                                  post["eta"].values[:, :, 2].reshape(-1))


@pytest.mark.parametrize("command, name", [
    (["fit", *SCHOOLS, "--method", "nuts"], "fit.txt"),
    (["fit", *SCHOOLS, "--method", "map"], "fit.csv"),
    (["sample", *SCHOOLS], "draws.csv"),
    (["fit", str(EXAMPLES / "gan_ring.bgm"), "--data", str(EXAMPLES / "gan_ring.json"),
      "--method", "adversarial", "--critic", "D"], "nets.csv"),
])
def test_an_extension_bgm_does_not_write_is_refused(command: list[str], name: str,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "-o", str(tmp_path / name)]) == 1
    assert f"-o '{tmp_path / name}'" in capsys.readouterr().err
    assert not (tmp_path / name).exists()


def test_predict_prints_sd_and_interval_at_a_point_estimate(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    model = str(EXAMPLES / "linear_regression.bgm")
    data = json.loads((EXAMPLES / "linear_regression.json").read_text())
    fit = tmp_path / "fit.json"
    assert main(["fit", model, "--data", str(EXAMPLES / "linear_regression.json"),
                 "--method", "map", "-o", str(fit)]) == 0
    data.pop("y")
    new = tmp_path / "new.json"
    new.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["predict", model, "--data", str(new), "--fit", str(fit), "--query", "y",
                 "-n", "200"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "at the point estimate" in out[0] and "uncertainty is not included" in out[0]
    assert out[1].split() == ["mean", "sd", "5%", "95%"]
    label, mean, sd, low, high = out[2].split()
    assert label == "y[1]" and float(sd) > 0 and float(low) < float(mean) < float(high)


def test_a_size_the_data_leaves_out_is_said(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "y.csv"
    data.write_text("y\n1\n0\n1\n")
    assert main(["fit", str(EXAMPLES / "coin.bgm"), "--data", str(data)]) == 0
    err = capsys.readouterr().err
    assert "note: 'N' is not in the data: N = 3, from the length of 'y' along dim 1" in err
    assert main(["fit", str(EXAMPLES / "coin.bgm"), "--data",
                 str(EXAMPLES / "coin.json")]) == 0
    assert "note:" not in capsys.readouterr().err
