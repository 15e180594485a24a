"""The generated log density of every example equals one written by hand from the maths.

For each example the reference below restates the model with scipy.stats (or plain
numpy where scipy has no such parameterisation), constrains the unconstrained
coordinates itself and writes the log-Jacobian of each transform out by hand
(x = exp(u): log|dx/du| = u; x = sigmoid(u): log|dx/du| = log x + log(1 - x)). Nothing
from bgm is used by the references except the order of the latents in theta, which is
itself asserted. Compared at random points, one at a time and as a batch, in the three
modes of rule 23: posterior (priors and Jacobians), MAP (no Jacobian) and MLE (no priors).

The last test runs the generated modules in a fresh interpreter where `dsl`, `compiler`
and `lark` cannot be imported: a compiled model needs only torch and runtime.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit, gammaln

from compiler.api import compile_file, compile_string
from runtime.accumulate import Mode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TOLERANCE = 1e-10  # absolute, on log densities of order 10..1000, in float64


def load(name: str) -> dict:
    with open(EXAMPLES / name) as f:
        return json.load(f)


def softplus(u: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, u)


def positive(u: float) -> tuple[float, float]:
    """x = exp(u) on (0, inf) and log|dx/du| = u."""
    return float(np.exp(u)), float(u)


def unit(u: float) -> tuple[float, float]:
    """x = sigmoid(u) on (0, 1) and log|dx/du| = log x + log(1 - x)."""
    x = 1.0 / (1.0 + np.exp(-u))
    return float(x), float(-softplus(-u) - softplus(u))


@dataclass
class Terms:
    prior: float
    likelihood: float
    jacobian: float

    def total(self, mode: Mode) -> float:
        return (self.likelihood + (self.prior if mode.priors else 0.0)
                + (self.jacobian if mode.jacobian else 0.0))


# ---- the references, one per example: (data, unconstrained parts) -> Terms


def coin(d: dict, u: dict) -> Terms:
    theta, jac = unit(u["theta"])
    y = np.array(d["y"])
    return Terms(stats.beta.logpdf(theta, 2, 2),
                 stats.bernoulli.logpmf(y, theta).sum(), jac)


def linear_regression(d: dict, u: dict) -> Terms:
    X, y = np.array(d["X"]), np.array(d["y"])
    alpha, beta = u["alpha"], u["beta"]
    sigma, jac = positive(u["sigma"])
    prior = (stats.norm.logpdf(alpha, 0, 10) + stats.norm.logpdf(beta, 0, 10).sum()
             + stats.halfnorm.logpdf(sigma, scale=5))
    return Terms(prior, stats.norm.logpdf(y, X @ beta + alpha, sigma).sum(), jac)


def bernoulli_logit(y: np.ndarray, eta: np.ndarray) -> float:
    """log p(y | logits eta) = y * eta - log(1 + exp(eta))."""
    return float((y * eta - softplus(eta)).sum())


def logistic_regression(d: dict, u: dict) -> Terms:
    X, y = np.array(d["X"]), np.array(d["y"])
    alpha, w = u["alpha"], u["w"]
    prior = 0.0 + stats.norm.logpdf(w, 0, d["s"]).sum()  # alpha ~ Flat(): adds nothing
    return Terms(prior, bernoulli_logit(y, X @ w + alpha), 0.0)


def logistic_regression_l1(d: dict, u: dict) -> Terms:
    X, y = np.array(d["X"]), np.array(d["y"])
    alpha, w = u["alpha"], u["w"]
    prior = stats.laplace.logpdf(w, 0, d["b"]).sum()
    return Terms(prior, bernoulli_logit(y, X @ w + alpha), 0.0)


def poisson_regression(d: dict, u: dict) -> Terms:
    X, y, exposure = np.array(d["X"]), np.array(d["y"]), np.array(d["exposure"])
    alpha, beta = u["alpha"], u["beta"]
    log_rate = np.log(exposure) + alpha + X @ beta
    lik = (y * log_rate - np.exp(log_rate) - gammaln(y + 1)).sum()
    prior = stats.norm.logpdf(alpha, 0, 5) + stats.norm.logpdf(beta, 0, 1).sum()
    return Terms(prior, lik, 0.0)


def ar2(d: dict, u: dict) -> Terms:
    y = np.array(d["y"])
    alpha, beta = u["alpha"], u["beta"]
    sigma, jac = positive(u["sigma"])
    prior = (stats.norm.logpdf(alpha, 0, 10) + stats.norm.logpdf(beta, 0, 1).sum()
             + stats.halfnorm.logpdf(sigma, scale=1))
    lik = sum(stats.norm.logpdf(y[t], alpha + beta[0] * y[t - 1] + beta[1] * y[t - 2], sigma)
              for t in range(2, len(y)))  # t = 3..T, 1-based
    return Terms(prior, lik, jac)


def eight_schools_centered(d: dict, u: dict) -> Terms:
    y, sigma = np.array(d["y"]), np.array(d["sigma"])
    mu, theta = u["mu"], u["theta"]
    tau, jac = positive(u["tau"])
    prior = (stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5)
             + stats.norm.logpdf(theta, mu, tau).sum())
    return Terms(prior, stats.norm.logpdf(y, theta, sigma).sum(), jac)


def eight_schools_noncentered(d: dict, u: dict) -> Terms:
    y, sigma = np.array(d["y"]), np.array(d["sigma"])
    mu, eta = u["mu"], u["eta"]
    tau, jac = positive(u["tau"])
    prior = (stats.norm.logpdf(mu, 0, 5) + stats.halfcauchy.logpdf(tau, scale=5)
             + stats.norm.logpdf(eta, 0, 1).sum())
    return Terms(prior, stats.norm.logpdf(y, mu + tau * eta, sigma).sum(), jac)


def stick_breaking(u: np.ndarray) -> tuple[np.ndarray, float]:
    """torch's simplex bijection (biject_to(simplex)), written out: z_k = sigmoid(u_k -
    log(K - k)), x_k = z_k prod_{j<k} (1 - z_j), x_K the rest; log|det| summed."""
    k1 = len(u)
    shifted = u - np.log(k1 - np.arange(k1))
    z = expit(shifted)
    rest = np.concatenate([[1.0], np.cumprod(1 - z)])
    x = np.concatenate([z, [1.0]]) * rest
    log_sigmoid = -softplus(-shifted)
    return x, float((-shifted + log_sigmoid + np.log(x[:-1])).sum())


def change_point(d: dict, u: dict) -> Terms:
    """The switch point s summed out by hand: log sum_s p(s) prod_t p(y_t | s)."""
    y = np.array(d["y"])
    early, j1 = positive(u["early"])
    late, j2 = positive(u["late"])
    prior = stats.gamma.logpdf(early, 2, scale=1.0) + stats.gamma.logpdf(late, 2, scale=1.0)
    t = np.arange(1, len(y) + 1)
    per_s = [np.log(1 / len(y)) + stats.poisson.logpmf(y, np.where(t < s, early, late)).sum()
             for s in range(1, len(y) + 1)]
    return Terms(prior, float(np.logaddexp.reduce(per_s)), j1 + j2)


def naive_bayes(d: dict, u: dict) -> Terms:
    x, y = np.array(d["x"]), np.array(d["y"]) - 1
    pi, j1 = stick_breaking(u["prior"])
    q = expit(u["q"])
    j2 = float((-softplus(-u["q"]) - softplus(u["q"])).sum())
    prior = stats.dirichlet.logpdf(pi, np.ones(d["C"])) + stats.beta.logpdf(q, 2, 2).sum()
    lik = np.log(pi[y]).sum() + stats.bernoulli.logpmf(x, q[y]).sum()
    return Terms(prior, lik, j1 + j2)


def gaussian_mixture(d: dict, u: dict) -> Terms:
    """The component labels summed out by hand: sum_i log sum_k w_k N(x_i | mu_k, s_k)."""
    x = np.array(d["x"])
    w, j1 = stick_breaking(u["w"])
    mu, s = u["mu"], np.exp(u["s"])
    prior = (stats.dirichlet.logpdf(w, np.ones(d["K"])) + stats.norm.logpdf(mu, 0, 10).sum()
             + stats.halfnorm.logpdf(s, scale=5).sum())
    per_point = np.log(w) + stats.norm.logpdf(x[:, None], mu, s)
    return Terms(prior, float(np.logaddexp.reduce(per_point, axis=1).sum()),
                 j1 + float(u["s"].sum()))


def hidden_markov(d: dict, u: dict) -> Terms:
    """The chain summed out by hand with the sequential forward algorithm."""
    y, k = np.array(d["y"]), d["K"]
    rows = [stick_breaking(u["A"][j]) for j in range(k)]
    a = np.stack([r[0] for r in rows])
    mu, sigma = u["mu"], float(np.exp(u["sigma"]))
    prior = (sum(stats.dirichlet.logpdf(a[j], np.ones(k)) for j in range(k))
             + stats.norm.logpdf(mu, 0, 10).sum() + stats.halfnorm.logpdf(sigma, scale=5))
    emit = stats.norm.logpdf(y[:, None], mu, sigma)
    alpha = np.log(np.ones(k) / k) + emit[0]
    for t in range(1, len(y)):
        alpha = np.logaddexp.reduce(alpha[:, None] + np.log(a), axis=0) + emit[t]
    jac = sum(r[1] for r in rows) + float(u["sigma"])
    return Terms(prior, float(np.logaddexp.reduce(alpha)), jac)


@dataclass
class Case:
    model: str
    data: str
    layout: Callable[[dict], list[tuple[str, tuple[int, ...]]]]  # theta's blocks, in order
    reference: Callable[[dict, dict], Terms]


CASES = {
    "coin": Case("coin.bgm", "coin.json", lambda d: [("theta", ())], coin),
    "linear_regression": Case(
        "linear_regression.bgm", "linear_regression.json",
        lambda d: [("alpha", ()), ("beta", (d["D"],)), ("sigma", ())], linear_regression),
    "logistic_regression": Case(
        "logistic_regression.bgm", "logistic_regression.json",
        lambda d: [("alpha", ()), ("w", (d["D"],))], logistic_regression),
    "logistic_regression_l1": Case(
        "logistic_regression_l1.bgm", "logistic_regression_l1.json",
        lambda d: [("alpha", ()), ("w", (d["D"],))], logistic_regression_l1),
    "poisson_regression": Case(
        "poisson_regression.bgm", "poisson_regression.json",
        lambda d: [("alpha", ()), ("beta", (d["D"],))], poisson_regression),
    "ar2": Case("ar2.bgm", "ar2.json",
                lambda d: [("alpha", ()), ("beta", (2,)), ("sigma", ())], ar2),
    "eight_schools_centered": Case(
        "eight_schools_centered.bgm", "eight_schools.json",
        lambda d: [("mu", ()), ("tau", ()), ("theta", (d["J"],))], eight_schools_centered),
    "change_point": Case("change_point.bgm", "change_point.json",
                         lambda d: [("early", ()), ("late", ())], change_point),
    "gaussian_mixture": Case(
        "gaussian_mixture.bgm", "gaussian_mixture.json",
        lambda d: [("w", (d["K"] - 1,)), ("mu", (d["K"],)), ("s", (d["K"],))],
        gaussian_mixture),
    "hidden_markov": Case(
        "hidden_markov.bgm", "hidden_markov.json",
        lambda d: [("A", (d["K"], d["K"] - 1)), ("mu", (d["K"],)), ("sigma", ())],
        hidden_markov),
    "naive_bayes": Case("naive_bayes.bgm", "naive_bayes.json",
                        lambda d: [("prior", (d["C"] - 1,)), ("q", (d["C"], d["D"]))],
                        naive_bayes),
    "eight_schools_noncentered": Case(
        "eight_schools_noncentered.bgm", "eight_schools.json",
        lambda d: [("mu", ()), ("tau", ()), ("eta", (d["J"],))], eight_schools_noncentered),
}

MODES = {"posterior": Mode(jacobian=True, priors=True), "map": Mode.for_method("map"),
         "mle": Mode.for_method("mle")}


# Checked elsewhere: the VAE's 20 000 coordinates (two nets) make the finite-difference
# gradient check above impractical; tests/test_svi.py compares its log joint with the
# hand-written PyTorch VAE of bench/vae_reference.py at the same weights.
ELSEWHERE = {"vae.bgm", "charlm.bgm", "flow_moons.bgm", "flow_realnvp_moons.bgm",  # own tests
             "gan_ring.bgm", "diffusion_moons.bgm", "diffusion_digits.bgm",
             "hmm_sequences.bgm"}  # tests/test_sequences.py: hmmlearn, brute force


def test_every_example_has_a_reference() -> None:
    models = {p.name for p in EXAMPLES.glob("*.bgm")}
    assert models == {c.model for c in CASES.values()} | ELSEWHERE


def split(theta: np.ndarray, layout: list[tuple[str, tuple[int, ...]]]) -> dict:
    """theta [dim] -> named blocks (scalars as floats), in the asserted layout."""
    parts, start = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape, dtype=int))
        block = theta[start:start + size]
        parts[name] = float(block[0]) if shape == () else block.reshape(shape)
        start += size
    assert start == len(theta)
    return parts


@pytest.fixture(scope="module", params=sorted(CASES))
def bound(request: pytest.FixtureRequest) -> tuple[Case, dict, object]:
    case = CASES[request.param]
    data = load(case.data)
    model = compile_file(EXAMPLES / case.model).bind(str(EXAMPLES / case.data), device="cpu")
    return case, data, model


def points(dim: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(n, dim))


def test_latent_layout(bound: tuple) -> None:
    case, data, model = bound
    assert [(lat.name, lat.unconstrained_shape) for lat in model.latents] == case.layout(data)
    assert model.dim == sum(int(np.prod(s, dtype=int)) for _, s in case.layout(data))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_log_density_matches_reference(bound: tuple, mode: str) -> None:
    case, data, model = bound
    thetas = points(model.dim, 5, seed=11)
    for theta in thetas:
        got = float(model.log_prob(torch.tensor(theta), MODES[mode]))
        want = case.reference(data, split(theta, case.layout(data))).total(MODES[mode])
        assert abs(got - want) < TOLERANCE, (case.model, mode, theta, got, want)


@pytest.mark.parametrize("batch", [(6,), (2, 3)])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_batched_log_density(bound: tuple, mode: str, batch: tuple[int, ...]) -> None:
    """A leading batch of points (chains, particles) is evaluated in one call."""
    case, data, model = bound
    flat = points(model.dim, int(np.prod(batch)), seed=23)
    got = model.log_prob(torch.tensor(flat.reshape(*batch, model.dim)), MODES[mode])
    assert got.shape == batch
    want = np.array([case.reference(data, split(t, case.layout(data))).total(MODES[mode])
                     for t in flat]).reshape(batch)
    assert np.abs(got.numpy() - want).max() < TOLERANCE


def test_log_joint_is_the_posterior_log_density_with_jacobians(bound: tuple) -> None:
    case, data, model = bound
    theta = points(model.dim, 1, seed=7)[0]
    want = case.reference(data, split(theta, case.layout(data))).total(MODES["posterior"])
    assert abs(float(model.log_joint(torch.tensor(theta))) - want) < TOLERANCE


def test_modes_differ_by_the_right_terms(bound: tuple) -> None:
    """posterior - map is exactly the Jacobian; map - mle exactly the priors."""
    case, data, model = bound
    theta = points(model.dim, 1, seed=5)[0]
    terms = case.reference(data, split(theta, case.layout(data)))
    t = torch.tensor(theta)
    lp = {m: float(model.log_prob(t, MODES[m])) for m in MODES}
    assert abs((lp["posterior"] - lp["map"]) - terms.jacobian) < TOLERANCE
    assert abs((lp["map"] - lp["mle"]) - terms.prior) < TOLERANCE


def test_gradient_is_the_gradient_of_the_reference(bound: tuple) -> None:
    """Autograd through the generated code against central differences of the reference."""
    case, data, model = bound
    theta = points(model.dim, 1, seed=7)[0]
    t = torch.tensor(theta, requires_grad=True)
    (grad,) = torch.autograd.grad(model.log_prob(t), t)
    h = 1e-5
    for i in range(model.dim):
        e = np.zeros(model.dim)
        e[i] = h
        f = [case.reference(data, split(theta + s * e, case.layout(data))).total(MODES["posterior"])
             for s in (1, -1)]
        assert abs(float(grad[i]) - (f[0] - f[1]) / (2 * h)) < 1e-5 * max(1.0, abs(float(grad[i])))


# ---- the generated module runs without the compiler

_RUNNER = textwrap.dedent("""
    import importlib, json, sys
    BLOCKED = ("dsl", "compiler", "lark")
    for name in BLOCKED:
        sys.modules[name] = None  # any `import dsl...`, `import compiler...` now fails
    try:
        import compiler  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the import guard does not work")
    import torch
    import runtime as rt
    jobs = json.loads(sys.argv[1])
    out = {}
    for module_name, data_path, theta in jobs:
        module = importlib.import_module(module_name)
        (cls,) = [c for c in vars(module).values() if isinstance(c, type)
                  and issubclass(c, rt.CompiledModel) and c is not rt.CompiledModel]
        model = cls(data_path, device="cpu")
        out[module_name] = float(model.log_prob(torch.tensor(theta, dtype=torch.float64)))
    loaded = sorted(m for m in sys.modules if sys.modules[m] is not None
                    and m.split(".")[0] in BLOCKED)
    print(json.dumps({"log_prob": out, "loaded": loaded}))
""")


def test_generated_modules_run_without_the_compiler(tmp_path: Path) -> None:
    jobs, expected = [], {}
    for key, case in sorted(CASES.items()):
        program = compile_file(EXAMPLES / case.model)
        module_name = f"bgm_{key}"
        (tmp_path / f"{module_name}.py").write_text(program.python)
        data = load(case.data)
        theta = points(sum(int(np.prod(s, dtype=int)) for _, s in case.layout(data)), 1, 3)[0]
        jobs.append([module_name, str(EXAMPLES / case.data), theta.tolist()])
        expected[module_name] = case.reference(data, split(theta, case.layout(data))) \
            .total(MODES["posterior"])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(jobs)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    for name, want in expected.items():
        assert abs(result["log_prob"][name] - want) < TOLERANCE, name


# ---- the distribution table against scipy.stats

_DIST_CASES = [
    # (factory, args, keyword args, values, scipy log density)
    ("Normal", (0.3, 1.7), {}, [-1.0, 0.2, 2.5], lambda x: stats.norm.logpdf(x, 0.3, 1.7)),
    ("HalfNormal", (2.0,), {}, [0.1, 1.0, 4.0], lambda x: stats.halfnorm.logpdf(x, scale=2.0)),
    ("Cauchy", (-1.0, 0.5), {}, [-3.0, 0.0, 2.0], lambda x: stats.cauchy.logpdf(x, -1.0, 0.5)),
    ("HalfCauchy", (5.0,), {}, [0.1, 3.0, 40.0],
     lambda x: stats.halfcauchy.logpdf(x, scale=5.0)),
    ("StudentT", (3.0, 1.0, 2.0), {}, [-4.0, 1.0, 6.0], lambda x: stats.t.logpdf(x, 3.0, 1.0, 2.0)),
    ("Laplace", (0.5, 0.7), {}, [-1.0, 0.5, 2.0], lambda x: stats.laplace.logpdf(x, 0.5, 0.7)),
    ("Gumbel", (1.0, 2.0), {}, [-2.0, 1.0, 7.0], lambda x: stats.gumbel_r.logpdf(x, 1.0, 2.0)),
    ("Logistic", (1.0, 0.5), {}, [-2.0, 1.0, 3.0], lambda x: stats.logistic.logpdf(x, 1.0, 0.5)),
    ("Exponential", (1.5,), {}, [0.1, 1.0, 5.0], lambda x: stats.expon.logpdf(x, scale=1 / 1.5)),
    ("Gamma", (2.5, 3.0), {}, [0.1, 1.0, 5.0], lambda x: stats.gamma.logpdf(x, 2.5, scale=1 / 3)),
    ("InverseGamma", (2.5, 3.0), {}, [0.1, 1.0, 5.0],
     lambda x: stats.invgamma.logpdf(x, 2.5, scale=3.0)),
    ("Beta", (2.0, 5.0), {}, [0.05, 0.3, 0.9], lambda x: stats.beta.logpdf(x, 2.0, 5.0)),
    ("Uniform", (-1.0, 3.0), {}, [-0.5, 0.0, 2.9], lambda x: stats.uniform.logpdf(x, -1.0, 4.0)),
    ("LogNormal", (0.5, 0.8), {}, [0.1, 1.0, 6.0],
     lambda x: stats.lognorm.logpdf(x, 0.8, scale=np.exp(0.5))),
    ("Weibull", (1.5, 2.0), {}, [0.1, 1.0, 5.0],
     lambda x: stats.weibull_min.logpdf(x, 1.5, scale=2.0)),
    ("ChiSquare", (3.0,), {}, [0.1, 1.0, 5.0], lambda x: stats.chi2.logpdf(x, 3.0)),
    ("Pareto", (1.5, 2.5), {}, [1.6, 3.0, 10.0],
     lambda x: stats.pareto.logpdf(x, 2.5, scale=1.5)),
    ("Bernoulli", (0.3,), {}, [0.0, 1.0], lambda x: stats.bernoulli.logpmf(x, 0.3)),
    ("Bernoulli", (), {"logits": -0.4}, [0.0, 1.0],
     lambda x: stats.bernoulli.logpmf(x, expit(-0.4))),
    ("Binomial", (10.0, 0.3), {}, [0.0, 3.0, 10.0], lambda x: stats.binom.logpmf(x, 10, 0.3)),
    ("Binomial", (10.0,), {"logits": 0.7}, [0.0, 3.0, 10.0],
     lambda x: stats.binom.logpmf(x, 10, expit(0.7))),
    ("Poisson", (3.5,), {}, [0.0, 2.0, 9.0], lambda x: stats.poisson.logpmf(x, 3.5)),
    ("Poisson", (), {"log_rate": 1.2}, [0.0, 2.0, 9.0],
     lambda x: stats.poisson.logpmf(x, np.exp(1.2))),
    ("NegativeBinomial", (4.0, 2.5), {}, [0.0, 3.0, 20.0],
     lambda x: stats.nbinom.logpmf(x, 2.5, 2.5 / (2.5 + 4.0))),
    ("NegativeBinomial", (), {"log_mu": np.log(4.0), "phi": 2.5}, [0.0, 3.0, 20.0],
     lambda x: stats.nbinom.logpmf(x, 2.5, 2.5 / (2.5 + 4.0))),
    ("DiscreteUniform", (2.0, 6.0), {}, [2.0, 4.0, 6.0], lambda x: stats.randint.logpmf(x, 2, 7)),
]


def _tensor(value: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=float))


@pytest.mark.parametrize("case", _DIST_CASES, ids=[f"{c[0]}-{i}" for i, c in
                                                    enumerate(_DIST_CASES)])
def test_distribution_table_against_scipy(case: tuple) -> None:
    from runtime import distributions as dist  # noqa: PLC0415
    name, args, kwargs, values, reference = case
    d = getattr(dist, name)(*(_tensor(a) for a in args), **{k: _tensor(v) for k, v in
                                                             kwargs.items()})
    got = d.log_prob(_tensor(values))
    assert got.dtype == torch.float64
    assert np.abs(got.numpy() - reference(np.array(values))).max() < TOLERANCE


def test_vector_distributions_against_scipy() -> None:
    from runtime import distributions as dist  # noqa: PLC0415
    p = np.array([0.2, 0.5, 0.3])
    cat = dist.Categorical(_tensor(p)).log_prob(torch.tensor([1, 2, 3]))  # 1-based labels
    assert np.abs(cat.numpy() - np.log(p)).max() < TOLERANCE
    logits = np.array([0.1, -1.0, 2.0])
    cat = dist.Categorical(logits=_tensor(logits)).log_prob(torch.tensor([3]))
    assert abs(float(cat[0]) - (logits[2] - np.log(np.exp(logits).sum()))) < TOLERANCE
    alpha, w = np.array([1.5, 2.0, 0.7]), np.array([0.2, 0.5, 0.3])
    got = float(dist.Dirichlet(_tensor(alpha)).log_prob(_tensor(w)))
    assert abs(got - stats.dirichlet.logpdf(w, alpha)) < TOLERANCE
    mu, x = np.array([0.5, -1.0]), np.array([1.0, 0.3])
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    want = stats.multivariate_normal.logpdf(x, mu, cov)
    for kw in ({"Sigma": cov}, {"L": np.linalg.cholesky(cov)}, {"precision": np.linalg.inv(cov)}):
        d = dist.MultivariateNormal(_tensor(mu), **{k: _tensor(v) for k, v in kw.items()})
        assert abs(float(d.log_prob(_tensor(x))) - want) < TOLERANCE
    for flat in (dist.Flat(), dist.HalfFlat()):
        assert float(flat.log_prob(_tensor(2.0))) == 0.0


def test_a_factor_of_literal_arithmetic_is_its_value() -> None:
    """`factor (0 ^ 0) * 1.0` is a constant term; its code used to be parsed as a float
    by the compiler (an internal error)."""
    program = compile_string("x ~ Normal(0, 1)\nfactor (0 ^ 0) * 1.0\nfactor 2 ^ 3\n", "c.bgm")
    model = program.bind({}, device="cpu")
    lp = float(model.log_prob(model.packer.pack({"x": torch.tensor([0.5],
                                                                   dtype=torch.float64)}, 1))[0])
    assert lp == pytest.approx(-0.125 - 0.5 * math.log(2 * math.pi) + 1.0 + 8.0, rel=1e-12)
