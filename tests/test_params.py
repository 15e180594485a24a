"""Point parameters (`param NAME: TYPE`, LANGUAGE.md): unknowns with no prior that MLE and
MAP optimise, on the support of their declared type, without a Jacobian (rule 23).

* y_i ~ Normal(mu, s) with `param s: positive`: the MLE is mu = mean(y) and s = the
  population sd sqrt(mean((y - mean(y))^2)). With mu ~ Normal(0, 10), MAP solves the
  stationarity equations mu = sum(y) / (N + s^2 / 100), s^2 = mean((y - mu)^2)
  (no prior and no Jacobian on s), solved here by scipy.
* `param w: real[D]` regression weights: MLE = numpy.linalg.lstsq; a matrix
  `param W: real[K, D]` read row by row inside nested plates: lstsq per column of Y.
* Bounds are kept; a bound may read data; a simplex param is a simplex.
* The CLI: fit -> JSON has the params -> `bgmc sample --fit` uses them; prior draws, NUTS
  and ADVI are refused with one message naming the param, exit 1, no traceback.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import optimize as sopt

from compiler.api import compile_string
from runtime.accumulate import Mode
from runtime.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]

NORMAL_SCALE = """\
data N: int
data y: real[N]
param s: positive
mu ~ Normal(0, 10)
for i in 1..N:
    y[i] ~ Normal(mu, s)
"""
Y = [1.0, 2.0, 0.5, 3.2, -0.4, 1.7]


def fit(src: str, data: dict, method: str, **options):  # noqa: ANN003, ANN201
    result = compile_string(src, "m.bgm").fit(data, method=method, seed=2, device="cpu",
                                              **options)
    assert result.converged, (method, result.grad_norm, result.message)
    return result, {k: v.numpy() for k, v in result.values.items()}


def normal_loglik(y: np.ndarray, mu: float, s: float) -> float:
    return float((-0.5 * ((y - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum())


# ---- MLE and MAP against closed forms


def test_mle_of_a_scale_param_is_the_population_sd() -> None:
    y = np.array(Y)
    result, v = fit(NORMAL_SCALE, {"N": len(Y), "y": Y}, "mle")
    assert set(v) == {"mu", "s"}
    assert v["mu"].shape == () and v["s"].shape == ()
    assert v["mu"] == pytest.approx(y.mean(), abs=1e-6)
    assert v["s"] == pytest.approx(np.sqrt(((y - y.mean()) ** 2).mean()), rel=1e-6)
    # the objective is the log likelihood itself: no Jacobian term for s
    assert result.objective == pytest.approx(normal_loglik(y, y.mean(), y.std()), abs=1e-8)


def test_map_with_a_param_solves_the_stationarity_equations() -> None:
    y = np.array(Y)
    n = len(y)

    def stationarity(x: np.ndarray) -> list[float]:
        mu, s = x
        return [(y - mu).sum() / s ** 2 - mu / 100.0,  # d/dmu: likelihood + Normal(0, 10)
                -n / s + ((y - mu) ** 2).sum() / s ** 3]  # d/ds: likelihood only
    mu_hat, s_hat = sopt.fsolve(stationarity, [y.mean(), y.std()], xtol=1e-13)
    assert np.allclose(stationarity(np.array([mu_hat, s_hat])), 0, atol=1e-10)
    result, v = fit(NORMAL_SCALE, {"N": n, "y": Y}, "map")
    assert v["mu"] == pytest.approx(mu_hat, abs=1e-6)
    assert v["s"] == pytest.approx(s_hat, rel=1e-6)
    assert abs(v["mu"] - y.mean()) > 1e-3  # the prior on mu matters at this N
    prior = -0.5 * (mu_hat / 10) ** 2 - math.log(10) - 0.5 * math.log(2 * math.pi)
    assert result.objective == pytest.approx(normal_loglik(y, mu_hat, s_hat) + prior, abs=1e-8)


def test_a_param_never_gets_a_jacobian_but_a_latent_does() -> None:
    model = compile_string(NORMAL_SCALE.replace("mu ~ Normal(0, 10)",
                                                "mu ~ HalfNormal(10)"), "m.bgm") \
        .bind({"N": len(Y), "y": Y}, device="cpu")
    assert model.param_names == ("s",) and model.dim == 2
    theta = torch.tensor([[0.3, -0.7], [1.1, 0.2]], dtype=torch.float64)
    posterior = model.log_prob(theta, Mode(jacobian=True, priors=True))
    mode = model.log_prob(theta, Mode(jacobian=False, priors=True))
    u_mu = theta[:, model.packer.slices["mu"]].squeeze(-1)
    assert torch.allclose(posterior - mode, u_mu)  # log|d exp(u)/du| of mu alone


def test_vector_param_mle_is_least_squares() -> None:
    rng = np.random.default_rng(4)
    n, d = 40, 3
    X = rng.normal(size=(n, d))
    y = X @ np.array([1.5, -2.0, 0.25]) + 0.7 + rng.normal(scale=0.4, size=n)
    src = """\
data N: int
data D: int
data X: real[N, D]
data y: real[N]
param w: real[D]
param a: real
param sigma: positive
y ~ Normal(X @ w + a, sigma)
"""
    _, v = fit(src, {"N": n, "D": d, "X": X.tolist(), "y": y.tolist()}, "mle")
    design = np.column_stack([X, np.ones(n)])
    coef, rss, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert v["w"].shape == (d,)
    np.testing.assert_allclose(v["w"], coef[:d], atol=1e-6)
    assert v["a"] == pytest.approx(coef[d], abs=1e-6)
    assert v["sigma"] == pytest.approx(math.sqrt(rss[0] / n), rel=1e-6)


def test_matrix_param_inside_nested_plates_is_least_squares_per_output() -> None:
    rng = np.random.default_rng(5)
    n, d, k = 30, 2, 3
    X = rng.normal(size=(n, d))
    Yk = X @ rng.normal(size=(d, k)) + rng.normal(scale=0.5, size=(n, k))
    src = """\
data N: int
data D: int
data K: int
data X: real[N, D]
data Y: real[N, K]
param W: real[K, D]
param b: real[K]
for n in 1..N:
    for k in 1..K:
        m[n, k] = dot(W[k], X[n]) + b[k]
        Y[n, k] ~ Normal(m[n, k], 1)
"""
    _, v = fit(src, {"N": n, "D": d, "K": k, "X": X.tolist(), "Y": Yk.tolist()}, "mle")
    coef, *_ = np.linalg.lstsq(np.column_stack([X, np.ones(n)]), Yk, rcond=None)
    assert v["W"].shape == (k, d) and v["b"].shape == (k,) and v["m"].shape == (n, k)
    np.testing.assert_allclose(v["W"], coef[:d].T, atol=1e-6)
    np.testing.assert_allclose(v["b"], coef[d], atol=1e-6)
    np.testing.assert_allclose(v["m"], X @ v["W"].T + v["b"], atol=1e-10)


# ---- supports


BOUNDED = """\
data N: int
data y: real[N]
data hi: real
param b: real<lower=2, upper=hi>
for i in 1..N:
    y[i] ~ Normal(b, 1)
"""


def test_a_bounded_param_stays_within_its_bounds() -> None:
    inside = [2.8, 3.1, 3.6]
    _, v = fit(BOUNDED, {"N": 3, "y": inside, "hi": 5.0}, "mle")
    assert v["b"] == pytest.approx(np.mean(inside), abs=1e-6)  # an interior optimum
    above = [7.0, 8.0, 9.0]  # the unconstrained optimum, 8, lies above the bound
    result = compile_string(BOUNDED, "m.bgm").fit({"N": 3, "y": above, "hi": 5.0},
                                                  method="mle", seed=2, device="cpu")
    b = float(result.values["b"])
    assert 2.0 < b <= 5.0 and b == pytest.approx(5.0, abs=1e-3)
    below = [-3.0, -1.0]
    result = compile_string(BOUNDED, "m.bgm").fit({"N": 2, "y": below, "hi": 5.0},
                                                  method="map", seed=2, device="cpu")
    b = float(result.values["b"])
    assert 2.0 <= b < 5.0 and b == pytest.approx(2.0, abs=1e-3)


def test_simplex_and_vector_bound_params() -> None:
    src = """\
data N: int
data K: int
data c: int[N]
data low: real[K]
param p: simplex[K]
param v: real<lower=low>[K]
for n in 1..N:
    c[n] ~ Categorical(p)
factor -sum((v - 1.0) ^ 2)
"""
    c = [1, 2, 2, 3, 3, 3, 3, 1]
    _, v = fit(src, {"N": len(c), "K": 3, "c": c, "low": [0.0, 2.0, -1.0]}, "mle")
    np.testing.assert_allclose(v["p"], np.bincount(c, minlength=4)[1:] / len(c), atol=1e-6)
    assert v["p"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(v["v"], [1.0, 2.0, 1.0], atol=1e-3)
    assert v["v"][1] >= 2.0


# ---- what is refused, and where


def test_an_integer_param_is_a_compile_error() -> None:
    from dsl.diagnostics import BgmError  # noqa: PLC0415
    with pytest.raises(BgmError, match="'k' is an integer point parameter"):
        compile_string("data y: real\nparam k: int\ny ~ Normal(k, 1)\n", "m.bgm")


def test_mle_refuses_a_param_that_only_a_prior_reads() -> None:
    src = """\
data J: int
data y: real[J]
param tau: positive
for j in 1..J:
    theta[j] ~ Normal(0, tau)
    y[j] ~ Normal(theta[j], 1)
"""
    with pytest.raises(ModelError, match="not identified by the likelihood: tau"):
        compile_string(src, "m.bgm").fit({"J": 2, "y": [0.1, 0.2]}, method="mle")


def test_prior_draws_of_a_model_with_params_name_the_param() -> None:
    program = compile_string(NORMAL_SCALE, "m.bgm")
    with pytest.raises(ModelError, match="m.bgm:3: cannot draw from the prior: s is a point "
                                         "parameter"):
        program.sample({"N": 3}, n=5)


def test_the_predictive_needs_the_param_values() -> None:
    program = compile_string(NORMAL_SCALE, "m.bgm")
    with pytest.raises(ModelError, match="no value of the point parameter 's'"):
        program.sample({"N": 3}, n=5, given={"mu": np.zeros(5)})
    draws = program.sample({"N": 3}, n=4000, seed=3,
                           given={"mu": np.full(4000, 2.0), "s": np.full(4000, 0.25)})
    assert draws["y"].shape == (4000, 3)
    assert draws["y"].mean() == pytest.approx(2.0, abs=0.02)
    assert draws["y"].std() == pytest.approx(0.25, rel=0.05)


# ---- the command line


def bgmc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "p.bgm"
    model.write_text(NORMAL_SCALE, encoding="utf-8")
    data = tmp_path / "p.json"
    data.write_text(json.dumps({"N": len(Y), "y": Y}), encoding="utf-8")
    return model, data


def test_cli_fit_writes_the_param_and_sample_uses_it(files: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    model, data = files
    out = tmp_path / "fit.json"
    done = bgmc("fit", str(model), "--data", str(data), "--method", "mle", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "s = " in done.stdout
    estimates = json.loads(out.read_text())["estimates"]
    y = np.array(Y)
    assert estimates["s"] == pytest.approx(y.std(), rel=1e-6)
    assert estimates["mu"] == pytest.approx(y.mean(), abs=1e-6)
    draws = tmp_path / "ppc.npz"
    done = bgmc("sample", str(model), "--data", str(data), "--fit", str(out), "-n", "4000",
                "-o", str(draws))
    assert done.returncode == 0, done.stderr
    ppc = np.load(draws)["y"]
    assert ppc.shape == (4000, len(Y))
    assert ppc.std() == pytest.approx(y.std(), rel=0.05)
    # the predictive reads s from the fit: change it there and the draws follow
    report = json.loads(out.read_text())
    report["estimates"].update(mu=-3.0, s=1e-3)
    out.write_text(json.dumps(report), encoding="utf-8")
    done = bgmc("sample", str(model), "--data", str(data), "--fit", str(out), "-n", "50",
                "-o", str(draws))
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(draws)["y"], -3.0, atol=0.01)


@pytest.mark.parametrize("args, fragment", [
    (("sample", "-n", "5"), "cannot draw from the prior: s is a point parameter"),
    (("fit", "--method", "nuts", "--warmup", "10", "--draws", "10"),
     "NUTS needs a prior on every unknown; s is a point parameter"),
], ids=["prior", "nuts"])
def test_cli_refusals_are_one_message(files: tuple[Path, Path], args: tuple[str, ...],
                                      fragment: str) -> None:
    model, data = files
    done = bgmc(args[0], str(model), "--data", str(data), *args[1:])
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_advi_fits_a_param_as_a_point_mass_and_integrates_the_latents() -> None:
    """Rule 23: ADVI integrates mu and fits s by the same ELBO (variational EM). With a
    flat-ish prior, q(mu) ~ N(mean, s^2 / N), and the ELBO's optimum in s is
    s^2 = sum (y - mean)^2 / N + s^2 / N, the N - 1 sample variance."""
    from runtime import posterior
    from runtime.advi import AdviSettings
    y = np.array(Y * 20)
    model = compile_string(NORMAL_SCALE).bind({"N": len(y), "y": y.tolist()}, device="cpu")
    idata = posterior.run_advi(model, AdviSettings(seed=2, draws=2000, tol_rel_obj=0.001))
    s_draws = np.asarray(idata.posterior["s"]).ravel()
    assert np.ptp(s_draws) == 0.0  # a point mass
    assert s_draws[0] == pytest.approx(y.std(ddof=1), rel=0.03)
    mu = np.asarray(idata.posterior["mu"]).ravel()
    assert mu.mean() == pytest.approx(y.mean(), abs=0.05)
    assert mu.std() == pytest.approx(y.std(ddof=1) / np.sqrt(len(y)), rel=0.15)
