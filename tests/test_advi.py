"""ADVI: the fitted Gaussian against posteriors known in closed form, the stopping rule,
the output format, seeding and constrained variables.

The main target is a linear regression with known noise and a Normal prior, whose
posterior is exactly Gaussian: precision P = X'X / s^2 + I / 10^2, covariance P^-1, mean
P^-1 X'y / s^2 (computed here with numpy). Full-rank ADVI must recover that covariance;
mean-field ADVI must recover the mean but, as it minimises KL(q || p), report the
conditional variances 1 / P_ii, smaller than the marginal ones.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from compiler.api import compile_string
from runtime import advi, posterior
from runtime.advi import AdviSettings
from runtime.nuts import NutsSettings


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tensors are tiny, and on a busy two-core machine torch's
    thread pool makes single small ops take ~10 ms each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


REGRESSION = """
data N: int
data X: real[N, 2]
data y: real[N]
beta: real[2] ~ Normal(0, 10)
y ~ Normal(X @ beta, 1.0)
"""
X = np.array([[1.0, 0.5], [0.8, 1.1], [-0.3, -0.6], [1.5, 1.2], [-1.0, -0.4], [0.2, 0.9],
              [-0.7, -1.2], [0.4, 0.1], [1.1, 1.6], [-1.3, -0.8]])
Y = X @ np.array([1.0, -0.5]) + np.array([0.3, -0.2, 0.1, 0.5, -0.4, 0.0, 0.2, -0.1, 0.3,
                                          -0.3])
PRECISION = X.T @ X / 1.0 ** 2 + np.eye(2) / 10 ** 2
COVARIANCE = np.linalg.inv(PRECISION)
MEAN = COVARIANCE @ X.T @ Y / 1.0 ** 2
SD = np.sqrt(np.diag(COVARIANCE))
CORR = COVARIANCE[0, 1] / (SD[0] * SD[1])


def _regression() -> Any:
    return compile_string(REGRESSION).bind({"N": len(Y), "X": X.tolist(), "y": Y.tolist()},
                                           device="cpu")


def _fit(model: Any, **options: Any) -> advi.AdviResult:
    """advi.fit exactly as runtime.posterior.run_advi calls it, returning the Gaussian."""
    settings = AdviSettings(**options)
    start = posterior.starts(model, 1, settings.seed, 2.0, None)[0]
    return advi.fit(model.log_prob, start, settings)


def test_the_target_posterior_is_strongly_correlated():
    assert CORR < -0.85  # else mean-field and full-rank would not be told apart


@pytest.mark.parametrize("seed", [1, 2])
def test_fullrank_recovers_the_gaussian_posterior(seed):
    r = _fit(_regression(), family="fullrank", seed=seed)
    assert r.converged
    scale = r.scale_tril.numpy()
    cov = scale @ scale.T
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(r.mean.numpy() - MEAN) < 0.05 * SD), (r.mean, MEAN)
    assert np.all(np.abs(sd / SD - 1) < 0.05), sd / SD
    assert abs(cov[0, 1] / (sd[0] * sd[1]) - CORR) < 0.05


def test_fullrank_draws_have_the_posterior_correlation():
    idata = posterior.run_advi(_regression(), AdviSettings(family="fullrank", seed=3,
                                                           draws=4000))
    beta = idata.posterior["beta"].values.reshape(-1, 2)
    assert abs(np.corrcoef(beta.T)[0, 1] - CORR) < 0.05
    assert np.all(np.abs(beta.mean(0) - MEAN) < 0.1 * SD)
    assert np.all(np.abs(beta.std(0) / SD - 1) < 0.1)
    assert idata.attrs["method"] == "advi-fullrank"


@pytest.mark.parametrize("seed", [1, 2])
def test_meanfield_recovers_the_mean_but_underestimates_the_variance(seed):
    """KL(q || p) over independent Gaussians gives each coordinate the conditional
    variance 1 / P_ii, not the marginal variance (P^-1)_ii."""
    r = _fit(_regression(), family="meanfield", seed=seed)
    assert r.converged
    scale = r.scale_tril.numpy()
    assert scale[0, 1] == 0 and scale[1, 0] == 0
    sd = np.diag(scale)
    assert np.all(np.abs(r.mean.numpy() - MEAN) < 0.05 * SD), (r.mean, MEAN)
    conditional = 1 / np.sqrt(np.diag(PRECISION))
    assert np.all(np.abs(sd / conditional - 1) < 0.05), sd / conditional
    assert np.all(sd < 0.6 * SD)  # sqrt(1 - corr^2) = 0.49 of the marginal sd


NORMAL_MEAN = """
data N: int
data y: real[N]
mu ~ Normal(1, 2)
for i in 1..N:
    y[i] ~ Normal(mu, 0.5)
"""
NORMAL_DATA = {"N": 4, "y": [0.3, 1.2, -0.5, 0.8]}


def _relative_changes(elbo: list[float]) -> list[float]:
    return [abs((b - a) / b) for a, b in zip(elbo, elbo[1:], strict=False)]


def _rule(rel: list[float], tol: float) -> bool:
    recent = rel[-10:]
    return bool(recent) and (float(np.mean(recent)) < tol or
                             sorted(recent)[len(recent) // 2] < tol)


def test_stops_when_the_relative_elbo_change_is_small():
    settings = dict(seed=1, max_iter=10000, eval_every=100, tol_rel_obj=0.01)
    r = _fit(compile_string(NORMAL_MEAN).bind(NORMAL_DATA, device="cpu"), **settings)
    assert r.converged
    assert r.iterations < 10000 and r.iterations % 100 == 0
    assert len(r.elbo) == r.iterations // 100  # one ELBO per evaluation
    rel = _relative_changes(r.elbo)
    assert _rule(rel, 0.01)  # the rule holds where it stopped ...
    assert not any(_rule(rel[:k], 0.01) for k in range(len(rel)))  # ... and not before
    # the one-dimensional Gaussian family is exact here: the fit is the posterior
    precision = 1 / 4 + 4 / 0.25
    mean = (1 / 4 + sum(NORMAL_DATA["y"]) / 0.25) / precision
    assert abs(float(r.mean) - mean) < 0.05 * precision ** -0.5
    assert abs(float(r.scale_tril) * precision ** 0.5 - 1) < 0.05


def test_runs_to_max_iter_when_the_tolerance_is_never_met():
    r = _fit(compile_string(NORMAL_MEAN).bind(NORMAL_DATA, device="cpu"), seed=1,
             max_iter=250, eval_every=50, tol_rel_obj=0.0)
    assert not r.converged
    assert r.iterations == 250 and len(r.elbo) == 5


SCALE_MODEL = """
data N: int
data X: real[N, 2]
data y: real[N]
beta: real[2] ~ Normal(0, 10)
sigma ~ HalfNormal(1)
s2 = sigma ^ 2
y ~ Normal(X @ beta, sigma)
"""


def _scale_model() -> Any:
    return compile_string(SCALE_MODEL).bind({"N": len(Y), "X": X.tolist(),
                                             "y": Y.tolist()}, device="cpu")


def test_draws_have_the_layout_of_nuts_output():
    model = _scale_model()
    a = posterior.run_advi(model, AdviSettings(seed=1, draws=300))
    n = posterior.run_nuts(model, NutsSettings(chains=2, warmup=30, draws=20, seed=1))
    assert set(a.groups()) == set(n.groups())
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= \
        set(a.groups())
    assert set(a.posterior.data_vars) == set(n.posterior.data_vars) == {"beta", "sigma",
                                                                        "s2"}
    want = {"beta": (2,), "sigma": (), "s2": ()}
    for name, shape in want.items():
        va, vn = a.posterior[name], n.posterior[name]
        assert va.dims == vn.dims and va.dims[:2] == ("chain", "draw")
        assert va.shape == (1, 300) + shape and vn.shape == (2, 20) + shape
    assert a.posterior["beta_dim_0"].values.tolist() == [1, 2]  # 1-based, as the model
    assert set(a.log_likelihood.data_vars) == set(n.log_likelihood.data_vars) == {"y"}
    assert a.log_likelihood["y"].shape == (1, 300, len(Y))
    assert "lp" in a.sample_stats
    np.testing.assert_allclose(a.posterior["s2"].values, a.posterior["sigma"].values ** 2)


def test_same_seed_same_draws_different_seed_different_draws():
    model = _scale_model()
    first = posterior.run_advi(model, AdviSettings(seed=7, draws=50, max_iter=300))
    again = posterior.run_advi(model, AdviSettings(seed=7, draws=50, max_iter=300))
    other = posterior.run_advi(model, AdviSettings(seed=8, draws=50, max_iter=300))
    for name in ("beta", "sigma"):
        assert np.array_equal(first.posterior[name].values, again.posterior[name].values)
        assert not np.allclose(first.posterior[name].values, other.posterior[name].values)


def test_a_positive_variable_gets_positive_draws_from_the_optimal_gaussian():
    """sigma with a flat prior on (0, inf), y ~ Normal(0, sigma): in u = log sigma the
    posterior is exp(-(N - 1) u - S / 2 e^(-2u)), S = sum y^2. Setting the gradient of the
    ELBO in q's mean to zero gives E_q[1 / sigma^2] = (N - 1) / S exactly (the exact
    posterior has the same value). sigma is small, so an untransformed Gaussian would put
    much of its mass below zero."""
    y = 0.05 * np.array([0.3, -1.2, 0.8, 1.9, -0.4, 0.1, -0.9, 1.1, -1.6, 0.5, 0.7, -0.2,
                         1.4, -0.6, 0.05, -1.1, 0.9, -0.3, 0.2, -1.5])
    model = compile_string("""
data N: int
data y: real[N]
sigma ~ HalfFlat()
y ~ Normal(0, sigma)
""").bind({"N": len(y), "y": y.tolist()}, device="cpu")
    idata = posterior.run_advi(model, AdviSettings(seed=1, draws=20000))
    sigma = idata.posterior["sigma"].values.ravel()
    assert sigma.min() > 0
    s = float((y ** 2).sum())
    assert np.mean(sigma ** -2.0) == pytest.approx((len(y) - 1) / s, rel=0.03)
