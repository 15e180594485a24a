"""MLE and MAP (rule 23) of the examples against independent solvers and closed forms.

* MLE of a linear regression is least squares (numpy.linalg.lstsq), with the ML noise
  scale sqrt(RSS / N); MLE of the AR(2) is least squares on the lagged design.
* MAP with a Normal(0, s) prior on the weights is L2-regularised logistic regression:
  the negative log posterior is sum(logloss) + |w|^2 / (2 s^2) + const, and scikit-learn
  minimises C * sum(logloss) + |w|^2 / 2, so C = s^2. The intercept has a flat prior, and
  scikit-learn's lbfgs / newton-cholesky solvers do not penalise the intercept.
* MAP with a Laplace(0, b) prior is L1-regularised: sum(logloss) + |w|_1 / b, i.e.
  C = b; L1 minimisers need not be unique, so the objectives are compared, each solution
  evaluated under the same hand-written objective (saga does not penalise the intercept;
  liblinear would).
* MLE of a Poisson regression with an offset against Newton's method written out here;
  the coin's MLE and MAP are the closed forms h / N and (h + 1) / (N + 2).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from compiler.api import compile_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> dict:
    with open(EXAMPLES / name) as f:
        return json.load(f)


def fit(model: str, data: dict, method: str, smooth: bool = True):  # noqa: ANN201
    result = compile_file(EXAMPLES / model).fit(data, method=method, seed=3, device="cpu")
    # at an L1 optimum with zero weights the gradient does not vanish (|w| has a kink),
    # so the optimiser's gradient-norm test cannot report convergence there
    assert result.converged or not smooth, (model, method, result.grad_norm)
    return result


def values(result) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {k: v.numpy() for k, v in result.values.items()}


def logloss(X: np.ndarray, y: np.ndarray, w: np.ndarray, a: float) -> float:
    """sum_i -log p(y_i | x_i) for logistic regression: log(1 + e^eta) - y eta."""
    eta = X @ w + a
    return float((np.logaddexp(0.0, eta) - y * eta).sum())


# ---- least squares


def test_linear_regression_mle_is_least_squares() -> None:
    d = load("linear_regression.json")
    X, y = np.array(d["X"]), np.array(d["y"])
    design = np.column_stack([np.ones(len(y)), X])
    coef, rss, *_ = np.linalg.lstsq(design, y, rcond=None)
    got = values(fit("linear_regression.bgm", d, "mle"))
    assert abs(got["alpha"] - coef[0]) < 1e-6
    assert np.abs(got["beta"] - coef[1:]).max() < 1e-6
    assert abs(got["sigma"] - math.sqrt(rss[0] / len(y))) < 1e-6


def test_ar2_mle_is_least_squares_on_lags() -> None:
    d = load("ar2.json")
    y = np.array(d["y"])
    design = np.column_stack([np.ones(len(y) - 2), y[1:-1], y[:-2]])
    coef, rss, *_ = np.linalg.lstsq(design, y[2:], rcond=None)
    got = values(fit("ar2.bgm", d, "mle"))
    assert abs(got["alpha"] - coef[0]) < 1e-6
    assert np.abs(got["beta"] - coef[1:]).max() < 1e-6
    assert abs(got["sigma"] - math.sqrt(rss[0] / (len(y) - 2))) < 1e-6


# ---- closed forms


def test_coin_mle_and_map_are_closed_forms() -> None:
    d = load("coin.json")
    heads, n = sum(d["y"]), d["N"]
    assert abs(values(fit("coin.bgm", d, "mle"))["theta"] - heads / n) < 1e-6
    # the mode of the Beta(2 + h, 2 + n - h) posterior, on the constrained space (no Jacobian)
    assert abs(values(fit("coin.bgm", d, "map"))["theta"] - (heads + 1) / (n + 2)) < 1e-6


def test_poisson_regression_mle_matches_newton() -> None:
    d = load("poisson_regression.json")
    X, y = np.array(d["X"]), np.array(d["y"])
    offset = np.log(np.array(d["exposure"]))
    design = np.column_stack([np.ones(len(y)), X])
    coef = np.zeros(design.shape[1])
    for _ in range(50):  # Newton on the concave log likelihood sum(y eta - e^eta)
        mu = np.exp(offset + design @ coef)
        step = np.linalg.solve(design.T @ (mu[:, None] * design), design.T @ (y - mu))
        coef += step
        if np.abs(step).max() < 1e-13:
            break
    got = values(fit("poisson_regression.bgm", d, "mle"))
    assert abs(got["alpha"] - coef[0]) < 1e-6
    assert np.abs(got["beta"] - coef[1:]).max() < 1e-6


# ---- logistic regression against scikit-learn


@pytest.mark.parametrize("s", [1.5, 0.2])
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cholesky"])
def test_map_l2_is_sklearn_ridge_logistic(s: float, solver: str) -> None:
    d = {**load("logistic_regression.json"), "s": s}
    X, y = np.array(d["X"]), np.array(d["y"])
    ref = LogisticRegression(C=s ** 2, l1_ratio=0.0, fit_intercept=True, solver=solver,
                             tol=1e-12, max_iter=100_000).fit(X, y)
    got = values(fit("logistic_regression.bgm", d, "map"))
    assert np.abs(got["w"] - ref.coef_[0]).max() < 1e-4
    assert abs(got["alpha"] - ref.intercept_[0]) < 1e-4


def test_mle_logistic_is_unpenalised_sklearn() -> None:
    d = load("logistic_regression.json")
    X, y = np.array(d["X"]), np.array(d["y"])
    ref = LogisticRegression(C=math.inf, fit_intercept=True, solver="newton-cholesky",
                             tol=1e-12, max_iter=100_000).fit(X, y)
    got = values(fit("logistic_regression.bgm", d, "mle"))
    assert np.abs(got["w"] - ref.coef_[0]).max() < 1e-4
    assert abs(got["alpha"] - ref.intercept_[0]) < 1e-4


@pytest.mark.parametrize("b", [0.5, 0.1])
def test_map_l1_matches_sklearn_lasso_logistic_objective(b: float) -> None:
    """At b = 0.5 every weight is non-zero; at b = 0.1 two are exactly zero, where the
    objective has a kink (the case plain L-BFGS stalls on)."""
    d = {**load("logistic_regression_l1.json"), "b": b}
    X, y = np.array(d["X"]), np.array(d["y"])
    ref = LogisticRegression(C=b, l1_ratio=1.0, fit_intercept=True, solver="saga",
                             tol=1e-12, max_iter=1_000_000, random_state=0).fit(X, y)
    zero = np.abs(ref.coef_[0]) < 1e-12
    assert zero.any() == (b == 0.1)

    def objective(w: np.ndarray, a: float) -> float:
        return logloss(X, y, w, a) + np.abs(w).sum() / b

    result = fit("logistic_regression_l1.bgm", d, "map", smooth=not zero.any())
    got = values(result)
    ours, theirs = objective(got["w"], float(got["alpha"])), objective(ref.coef_[0],
                                                                      ref.intercept_[0])
    assert abs(ours - theirs) < 1e-4 * abs(theirs)
    # the reported objective is the log joint density: -objective - D log(2b), flat alpha
    assert abs(result.objective - (-ours - d["D"] * math.log(2 * b))) < 1e-8 * abs(ours)
    assert np.abs(got["w"][zero]).max(initial=0.0) < 1e-4
    assert np.abs(got["w"] - ref.coef_[0]).max() < 1e-3
