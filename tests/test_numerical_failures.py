"""A numerical failure inside the log density is a rejected point, never an abort.

A Cholesky factorisation of a matrix that is not positive definite at some point of a
trajectory, the log of a negative number, a distribution argument outside its support:
Stan rejects such a point (-inf log density) and carries on. So must bgm, in every
engine: NUTS counts a divergence and the other chains are untouched (the log density is
evaluated for all chains in one batched call, and torch raises for the whole batch when
one chain's matrix fails); L-BFGS backtracks from the point and Adam rejects the step;
ADVI drops the particle or stops with a located message; and when the start point itself
fails, the message says where in the model.

The models put the posterior against the boundary of the region where the density is
defined, so that trajectories and line searches cross it.
"""
from __future__ import annotations

import json
import math
import types
from typing import Any

import numpy as np
import pytest
import torch

import runtime as rt
from compiler.api import compile_string
from runtime import advi, nuts, posterior
from runtime import distributions as dist
from runtime.accumulate import Mode
from runtime.errors import ModelError
from runtime.model import numerical_failure
from runtime.nuts import NutsSettings
from runtime.optimize import bad_terms, find_start, optimize


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread (torch's pool is slow on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# cholesky([[1, a], [a, 1]]) fails for |a| >= 1; its [2, 1] entry is a. The data put a
# near 0.95, with posterior sd ~0.02: trajectories and line searches reach a > 1.
CHOLESKY = """
data N: int
data y: real[N]
a ~ Normal(0, 1)
L = cholesky([[1, a], [a, 1]])
for n in 1..N:
    y[n] ~ Normal(L[2, 1], 0.1)
"""

# log(1 - a) is NaN for a > 1; the data put a near 0.95.
LOG_OF_NEGATIVE = """
data N: int
data y: real[N]
a ~ Normal(0, 1)
for n in 1..N:
    y[n] ~ Normal(log(1 - a), 0.1)
"""

# Gamma's shape 2 - a is negative for a > 2, where torch's formula stays finite.
SHAPE_OUT_OF_SUPPORT = """
data N: int
data y: real[N]
a ~ Normal(0, 3)
for n in 1..N:
    y[n] ~ Gamma(2 - a, 1)
"""

_RNG = np.random.default_rng(1)
NOISE = 0.1 * _RNG.standard_normal(20)


def _cholesky_model() -> Any:
    return compile_string(CHOLESKY, "chol.bgm").bind(
        {"N": 20, "y": (0.95 + NOISE).tolist()}, device="cpu")


def _log_model() -> Any:
    return compile_string(LOG_OF_NEGATIVE, "logneg.bgm").bind(
        {"N": 20, "y": (math.log(1 - 0.95) + NOISE).tolist()}, device="cpu")


def _theta(*rows: float) -> torch.Tensor:
    return torch.tensor([[r] for r in rows], dtype=torch.float64)


def _value_and_grad(log_prob: Any, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = theta.clone().requires_grad_(True)
    lp = log_prob(x)
    (g,) = torch.autograd.grad(lp[torch.isfinite(lp)].sum(), x)
    return lp.detach(), g


# ---- the runtime helper generated code can call: rt.cholesky ----------------------------


def test_rt_cholesky_is_nan_only_where_the_matrix_is_not_positive_definite() -> None:
    a = torch.tensor([0.5, 1.5, -0.3], dtype=torch.float64, requires_grad=True)
    one = torch.ones_like(a)
    m = torch.stack([torch.stack([one, a], -1), torch.stack([a, one], -1)], -2)
    L = rt.cholesky(m)
    assert torch.isnan(L[1]).all()
    for i in (0, 2):
        assert torch.allclose(L[i], torch.linalg.cholesky(m[i].detach()))
    (g,) = torch.autograd.grad(L[[0, 2], 1, 0].sum() + L[[0, 2], 1, 1].sum(), a)
    assert torch.isfinite(g).all() and g[1] == 0
    assert torch.allclose(g[0], torch.tensor(1.0 - 0.5 / math.sqrt(1 - 0.25), dtype=g.dtype))


def test_rt_cholesky_of_a_positive_definite_batch_is_torchs() -> None:
    x = torch.randn(4, 3, 3, dtype=torch.float64)
    spd = x @ x.transpose(-1, -2) + torch.eye(3, dtype=torch.float64)
    assert torch.equal(rt.cholesky(spd), torch.linalg.cholesky(spd))
    assert rt.cholesky(torch.empty(2, 3, 3, device="meta")).shape == (2, 3, 3)


# ---- the model's batched log density -----------------------------------------------------


def test_a_failing_chain_is_rejected_and_the_others_keep_value_and_gradient() -> None:
    model = _cholesky_model()
    lp, g = _value_and_grad(model.log_prob, _theta(0.5, 1.5, -0.3))
    assert lp[1] == -math.inf and g[1, 0] == 0
    for i, a in ((0, 0.5), (2, -0.3)):
        lp_i, g_i = _value_and_grad(model.log_prob, _theta(a))
        assert torch.allclose(lp[i], lp_i[0]) and torch.allclose(g[i], g_i[0])
    assert model.log_prob(torch.tensor([1.5], dtype=torch.float64)) == -math.inf
    assert "chol.bgm:5" in bad_terms(model, _theta(1.5), Mode.for_method("nuts"))


def test_generated_code_calling_rt_cholesky_rejects_the_point_in_the_batched_call() -> None:
    """What `cholesky(A)` compiles to once generated code calls rt.cholesky (until then,
    the torch call is swapped here): NaN, so no exception and no chain-by-chain retry."""
    program = compile_string(CHOLESKY, "chol.bgm")
    code = program.python.replace("torch.linalg.cholesky(", "rt.cholesky(")
    assert "rt.cholesky(" in code
    module = types.ModuleType("chol_with_rt_cholesky")
    exec(compile(code, "<bgmc:chol.bgm>", "exec"), module.__dict__)
    model = module.Chol({"N": 20, "y": (0.95 + NOISE).tolist()}, device="cpu")
    lp, g = _value_and_grad(model.log_prob, _theta(0.5, 1.5))
    assert model.last_failure is None  # nothing was raised
    assert lp[1] == -math.inf and torch.isfinite(lp[0]) and torch.isfinite(g[0]).all()
    assert "chol.bgm:5" in bad_terms(model, _theta(1.5), Mode.for_method("map"))
    fit = optimize(model, method="map", seed=1)
    assert fit.converged and abs(float(fit.values["a"]) - 0.95) < 0.05


def test_an_error_that_is_not_numerical_still_raises() -> None:
    assert not numerical_failure(RuntimeError("The size of tensor a (3) must match ..."))
    assert numerical_failure(torch.linalg.LinAlgError("linalg.cholesky: not positive-definite"))

    def buggy(theta: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("The size of tensor a (3) must match the size of tensor b (2)")
    with pytest.raises(RuntimeError, match="size of tensor"):
        nuts._potential_of(buggy)(torch.zeros(2, 1, dtype=torch.float64))


# ---- NUTS -----------------------------------------------------------------------------------


def _raising_density(theta: torch.Tensor) -> torch.Tensor:
    """N(0.9, 0.05) on x and N(0, 1) on y, x read from the Cholesky factor of [[1, x],
    [x, 1]] computed for all chains at once with torch.linalg.cholesky, which raises when
    one chain has |x| >= 1."""
    x = theta[..., 0]
    one = torch.ones_like(x)
    L = torch.linalg.cholesky(torch.stack([torch.stack([one, x], -1),
                                           torch.stack([x, one], -1)], -2))
    return -0.5 * ((L[..., 1, 0] - 0.9) / 0.05) ** 2 - 0.5 * theta[..., 1] ** 2


def test_nuts_potential_rejects_only_the_chain_that_raises() -> None:
    potential = nuts._potential_of(_raising_density)
    q = torch.tensor([[0.8, 0.0], [1.2, 0.0], [0.95, 0.0]], dtype=torch.float64)
    lp, g = potential(q)
    assert lp[1] == -math.inf and torch.equal(g[1], torch.zeros(2, dtype=torch.float64))
    for i in (0, 2):
        lp_i, g_i = potential(q[i:i + 1])
        assert torch.allclose(lp[i], lp_i[0]) and torch.allclose(g[i], g_i[0])


def test_nuts_finishes_and_counts_divergences_when_a_chains_cholesky_fails() -> None:
    init = torch.tensor([[0.5, 0.0], [0.8, 0.3], [0.9, -0.2]], dtype=torch.float64)
    settings = NutsSettings(chains=3, warmup=60, draws=60, seed=3)
    result = nuts.sample(_raising_density, init, settings)
    assert result.draws.shape == (3, 60, 2)
    assert int(result.stats["diverging"].sum()) > 0
    assert bool((result.draws[..., 0].abs() < 1).all())
    assert bool(torch.isfinite(result.log_density).all())


def test_nuts_on_a_compiled_model_whose_cholesky_fails() -> None:
    settings = NutsSettings(chains=2, warmup=60, draws=60, seed=2)
    idata = posterior.run_nuts(_cholesky_model(), settings)
    a = np.asarray(idata.posterior["a"])
    assert a.shape == (2, 60) and np.all(np.abs(a) < 1)
    assert abs(a.mean() - 0.95) < 0.05


def test_nuts_rejects_a_nan_log_density() -> None:
    settings = NutsSettings(chains=2, warmup=100, draws=100, seed=1)
    idata = posterior.run_nuts(_log_model(), settings)
    a = np.asarray(idata.posterior["a"])
    assert np.all(a < 1) and np.isfinite(np.asarray(idata.sample_stats["lp"])).all()
    assert abs(a.mean() - 0.95) < 0.02


def test_nuts_refuses_an_initial_point_with_no_density() -> None:
    init = torch.tensor([[0.5, 0.0], [1.5, 0.0]], dtype=torch.float64)
    with pytest.raises(ModelError, match="initial point of chain 2"):
        nuts.sample(_raising_density, init, NutsSettings(chains=2, warmup=1, draws=1))


# ---- MAP / MLE ------------------------------------------------------------------------------


def test_map_backtracks_from_points_where_cholesky_fails() -> None:
    model = _cholesky_model()
    for seed in (1, 2, 3):
        fit = optimize(model, method="map", seed=seed)
        assert fit.converged and abs(float(fit.values["a"]) - 0.95) < 0.05
    fit = optimize(model, method="mle", init=_theta(0.2)[0])
    assert fit.converged and abs(float(fit.values["a"]) - (0.95 + NOISE.mean())) < 1e-6


def test_map_from_a_start_where_cholesky_fails_says_where() -> None:
    model = _cholesky_model()
    with pytest.raises(ModelError, match=r"initial values.*chol\.bgm:5"):
        optimize(model, method="map", init=torch.tensor([1.5], dtype=torch.float64))


def test_the_cli_says_where_a_given_start_fails(tmp_path: Any, capsys: Any) -> None:
    from compiler.cli import main  # noqa: PLC0415
    (tmp_path / "chol.bgm").write_text(CHOLESKY)
    (tmp_path / "d.json").write_text(json.dumps({"N": 20, "y": (0.95 + NOISE).tolist()}))
    (tmp_path / "init.json").write_text(json.dumps({"a": 1.5}))
    code = main(["fit", str(tmp_path / "chol.bgm"), "--data", str(tmp_path / "d.json"),
                 "--method", "map", "--init", str(tmp_path / "init.json")])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" not in err
    assert "chol.bgm:5" in err, err


def test_random_starts_skip_points_where_cholesky_fails() -> None:
    model = _cholesky_model()
    generator = torch.Generator().manual_seed(0)
    starts = [find_start(model, Mode.for_method("map"), generator, 2.0, None)
              for _ in range(10)]
    assert all(abs(float(s[0])) < 1 for s in starts)


def test_map_steps_back_from_a_nan_density() -> None:
    """An L-BFGS line search that ends where the density is NaN steps back to the last
    finite point; the fit ends at the mode, never at a NaN."""
    model = _log_model()
    for seed in (1, 2, 3):
        fit = optimize(model, method="map", seed=seed)
        assert math.isfinite(fit.objective)
        assert abs(float(fit.values["a"]) - 0.95) < 0.01


def test_adam_rejects_steps_onto_infeasible_points() -> None:
    fit = optimize(_log_model(), method="map", optimizer="adam", lr=0.5, max_iter=300,
                   init=torch.tensor([0.0], dtype=torch.float64))
    assert abs(float(fit.values["a"]) - 0.95) < 0.01


# ---- ADVI -----------------------------------------------------------------------------------


def test_advi_drops_particles_where_the_density_is_nan() -> None:
    """log(a + 1.5): the first, wide Gaussians put particles below -1.5."""
    program = compile_string(LOG_OF_NEGATIVE.replace("log(1 - a)", "log(a + 1.5)"), "l.bgm")
    model = program.bind({"N": 20, "y": (math.log(2.0) + NOISE).tolist()}, device="cpu")
    r = advi.fit(model.log_prob, torch.tensor([-1.2], dtype=torch.float64),
                 advi.AdviSettings(draws=500, seed=1))
    assert r.converged and abs(float(r.mean[0]) - 0.5) < 0.05
    assert bool((r.draws > -1.5).all())


def test_advi_against_a_cholesky_boundary_stops_with_a_located_message() -> None:
    """The posterior sits against the boundary: a Gaussian keeps putting mass beyond it.
    ADVI must end (a fit with feasible draws, or a message saying where), not raise
    torch's LinAlgError."""
    settings = advi.AdviSettings(draws=100, seed=1, particles=8, eval_every=50,
                                 max_iter=300)
    try:
        r = advi.fit(_cholesky_model().log_prob, torch.tensor([0.2], dtype=torch.float64),
                     settings)
    except ModelError as exc:
        assert "chol.bgm:5" in str(exc)
    else:
        assert bool((r.draws.abs() < 1).all())


# ---- distribution arguments outside their support ------------------------------------------


def _t(v: Any) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


OUT_OF_SUPPORT = {
    "Gamma shape": lambda: (dist.Gamma(_t([-0.5, 2.0]), _t(1.0)), _t(1.0)),
    "InverseGamma shape": lambda: (dist.InverseGamma(_t([-0.5, 2.0]), _t(1.0)), _t(1.0)),
    "Beta": lambda: (dist.Beta(_t([-0.5, 2.0]), _t(1.5)), _t(0.3)),
    "Logistic scale": lambda: (dist.Logistic(_t(0.0), _t([-1.0, 1.0])), _t(0.3)),
    "Weibull": lambda: (dist.Weibull(_t([-1.0, 1.0]), _t(1.0)), _t(0.3)),
    "ChiSquare": lambda: (dist.ChiSquare(_t([-1.0, 1.0])), _t(0.3)),
    "Bernoulli": lambda: (dist.Bernoulli(_t([-0.2, 0.3])), _t(0.0)),
    "Binomial": lambda: (dist.Binomial(5, _t([1.2, 0.3])), _t(5.0)),
    "Poisson": lambda: (dist.Poisson(_t([-1.0, 1.0])), _t(0.0)),
    "Categorical": lambda: (dist.Categorical(_t([[-0.2, 0.7, 0.5], [0.2, 0.3, 0.5]])),
                            _t(2.0)),
    "Dirichlet": lambda: (dist.Dirichlet(_t([[-0.2, 0.7, 0.5], [1.0, 1.0, 1.0]])),
                          _t([0.2, 0.3, 0.5])),
    "LKJCholesky": lambda: (dist.LKJCholesky(_t([-0.5, 2.0]), 2),
                            torch.linalg.cholesky(_t([[1.0, 0.3], [0.3, 1.0]]))),
    "MultivariateNormal Sigma": lambda: (dist.MultivariateNormal(
        _t([0.0, 0.0]), Sigma=_t([[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.5], [0.5, 1.0]]])),
        _t([0.0, 0.0])),
    "MultivariateNormal precision": lambda: (dist.MultivariateNormal(
        _t([0.0, 0.0]), precision=_t([[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.5], [0.5, 1.0]]])),
        _t([0.0, 0.0])),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_SUPPORT))
def test_an_argument_outside_its_support_gives_no_density_for_its_element_only(
        case: str) -> None:
    """Element 0 has an argument outside its support: its log density is -inf or NaN
    (a rejected point), not a finite number from a formula used outside its domain, nor
    an exception; element 1 is valid and keeps torch's value."""
    d, x = OUT_OF_SUPPORT[case]()
    lp = d.log_prob(x)
    assert not bool(torch.isfinite(lp[0])), lp
    assert bool(torch.isfinite(lp[1])), lp


def test_multivariate_normal_precision_matches_torch() -> None:
    p = _t([[2.0, 0.6], [0.6, 1.0]])
    mine = dist.MultivariateNormal(_t([0.5, -1.0]), precision=p).log_prob(_t([1.0, 0.3]))
    torch_ = torch.distributions.MultivariateNormal(_t([0.5, -1.0]), precision_matrix=p)
    assert torch.allclose(mine, torch_.log_prob(_t([1.0, 0.3])))


def test_a_constant_scale_outside_its_support_is_nan_not_a_python_error() -> None:
    assert math.isnan(float(dist.Normal(_t(0.0), -1.0).log_prob(_t(0.3))))
    assert float(dist.Gamma(-1.0, 1.0).log_prob(_t(1.0))) == -math.inf


def test_a_shape_that_turns_negative_is_rejected_by_the_model() -> None:
    model = compile_string(SHAPE_OUT_OF_SUPPORT, "shape.bgm").bind(
        {"N": 3, "y": [1.0, 2.0, 0.5]}, device="cpu")
    lp = model.log_prob(_theta(1.0, 2.5))
    assert bool(torch.isfinite(lp[0])) and lp[1] == -math.inf
