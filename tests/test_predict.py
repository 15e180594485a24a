"""`bgmc predict --query`: Bayes' rule on new data (issue 4). A naive Bayes classifier fitted
by MAP with Beta(2, 2) priors is Laplace smoothing, so its predictions must be exactly
scikit-learn's BernoulliNB(alpha=1) and its probabilities equal predict_proba."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.naive_bayes import BernoulliNB

from compiler.api import compile_file
from compiler.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def naive_bayes_fit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    program = compile_file(EXAMPLES / "naive_bayes.bgm")
    result = program.fit(str(EXAMPLES / "naive_bayes.json"), method="map")
    path = tmp_path_factory.mktemp("nb") / "fit.json"
    path.write_text(json.dumps(result.point_report()))
    return path


def test_naive_bayes_predicts_as_bernoulli_nb(naive_bayes_fit: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred.json"
    code = main(["predict", str(EXAMPLES / "naive_bayes.bgm"), "--fit", str(naive_bayes_fit),
                 "--data", str(EXAMPLES / "naive_bayes_new.json"), "--query", "y",
                 "-o", str(out)])
    assert code == 0
    assert "y[1] = " in capsys.readouterr().out
    got = json.loads(out.read_text())
    train = json.loads((EXAMPLES / "naive_bayes.json").read_text())
    new = json.loads((EXAMPLES / "naive_bayes_new.json").read_text())
    nb = BernoulliNB(alpha=1.0, binarize=None).fit(np.array(train["x"]), np.array(train["y"]))
    x_new = np.array(new["x"])
    assert got["values"] == list(range(1, 11))
    np.testing.assert_array_equal(got["prediction"], nb.predict(x_new))
    np.testing.assert_allclose(got["probabilities"], nb.predict_proba(x_new), atol=1e-6)


def test_predicting_a_continuous_variable_draws_it(tmp_path: Path) -> None:
    """A real-valued query is predicted by posterior predictive draws."""
    program = compile_file(EXAMPLES / "linear_regression.bgm")
    data = json.loads((EXAMPLES / "linear_regression.json").read_text())
    result = program.fit(data, method="map")
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps(result.point_report()))
    keys = [k for k in data if k != "y"]
    new = {k: data[k] for k in keys}
    (tmp_path / "new.json").write_text(json.dumps(new))
    out = tmp_path / "pred.json"
    assert main(["predict", str(EXAMPLES / "linear_regression.bgm"), "--fit", str(fit),
                 "--data", str(tmp_path / "new.json"), "--query", "y", "-n", "4000",
                 "-o", str(out)]) == 0
    got = json.loads(out.read_text())
    assert len(got["mean"]) == len(data["y"])
    # at a point estimate the predictive mean is the regression line: residual sd apart
    values = {k: np.asarray(v.cpu()) for k, v in result.values.items()}
    line = np.array(data["X"]) @ values["beta"] + values["alpha"]
    sigma = float(values["sigma"])
    assert np.abs(np.array(got["mean"]) - line).max() < 4.5 * sigma / np.sqrt(4000)
    np.testing.assert_allclose(np.array(got["sd"]), sigma, rtol=0.08)


def test_query_must_be_observed(naive_bayes_fit: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", str(EXAMPLES / "naive_bayes.bgm"), "--fit", str(naive_bayes_fit),
                 "--data", str(EXAMPLES / "naive_bayes_new.json"), "--query", "N"])
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot query 'N'" in err and "Traceback" not in err
