"""Small models beyond examples/, each exercising one path of the code generator, checked
against log densities and recursions written by hand (numpy / scipy.stats, Jacobians by
hand as in test_log_density.py).

Each model once compiled to wrong code; the comment above it says how:
* operator precedence: `a * (b + c[i])` lost its parentheses;
* `y[t - k]` for a generator k: size-1 dims were put on the wrong side, and sampling
  could not read earlier steps at a generator-dependent lag;
* statement order inside a step-by-step loop followed the source, not the reads;
* elements defined before a step-by-step loop (`y[1] ~ ...`) were drawn after it;
* scalar data (`Normal(0, s)`, `Binomial(n, p)`) were indexed like tensors, and a
  literal stored into a variable built step by step (`m[1] = 0.1`) became a float32;
* the predictive sampler re-drew latent chains instead of using the given draws;
* `ordered` latents were drawn from the unordered prior.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from compiler.api import compile_string
from runtime.accumulate import Mode

TOLERANCE = 1e-10
POSTERIOR = Mode(jacobian=True, priors=True)


def softplus(u: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, u)


def positive(u: float) -> tuple[float, float]:
    return float(np.exp(u)), float(u)  # x = e^u, log|dx/du| = u


def unit(u: float) -> tuple[float, float]:
    return float(expit(u)), float(-softplus(-u) - softplus(u))  # log x + log(1 - x)


def model(text: str, data: dict):  # noqa: ANN201
    return compile_string(text.strip() + "\n", "probe.bgm").bind(data, device="cpu")


def blocks(theta: np.ndarray, sizes: list[tuple[str, int]]) -> dict:
    out, start = {}, 0
    for name, size in sizes:
        out[name] = theta[start:start + size]
        start += size
    assert start == len(theta)
    return out


def check(m, sizes: list[tuple[str, int]], reference, seed: int = 0) -> None:  # noqa: ANN001
    """log_prob at random points, one by one and as a batch, equals the reference."""
    assert [(lat.name, lat.size) for lat in m.latents] == sizes
    thetas = np.random.default_rng(seed).normal(0.0, 1.0, size=(4, m.dim))
    want = np.array([reference(blocks(t, sizes)) for t in thetas])
    for t, w in zip(thetas, want, strict=True):
        assert abs(float(m.log_prob(torch.tensor(t), POSTERIOR)) - w) < TOLERANCE
    assert np.abs(m.log_prob(torch.tensor(thetas), POSTERIOR).numpy() - want).max() < TOLERANCE


RNG = np.random.default_rng(2024)
T = 15
Y = RNG.normal(size=T).round(3)


# ---- precedence: the grouping of the source survives into Python


def test_operator_grouping() -> None:
    c = np.array([0.5, -1.5, 2.0])
    m = model("""
data N: int
data c: real[N]
a ~ Normal(0, 1)
b ~ Normal(0, 1)
for i in 1..N:
    d1[i] = a - (b - c[i])
    d2[i] = a * (b + c[i])
    d3[i] = c[i] / (a * b)
    d4[i] = (a + c[i]) * (b - c[i])
    d5[i] = c[i] - (a + b) + -c[i] ^ 2
e1 = (a ^ 2) ^ 3 - a ^ 2 ^ 3
e2 = (-a) ^ 2 + -a ^ 2
e3 = a * 0 + (2 - (3 - 4)) + (-2) ^ 2 + 2 ^ 3 ^ 2
""", {"N": 3, "c": c.tolist()})
    a, b = 1.3, -0.7
    v = {k: x.numpy() for k, x in m.constrain(torch.tensor([a, b], dtype=torch.float64)).items()}
    assert np.allclose(v["d1"], a - (b - c), rtol=1e-14)
    assert np.allclose(v["d2"], a * (b + c), rtol=1e-14)
    assert np.allclose(v["d3"], c / (a * b), rtol=1e-14)
    assert np.allclose(v["d4"], (a + c) * (b - c), rtol=1e-14)
    assert np.allclose(v["d5"], c - (a + b) - c ** 2, rtol=1e-14)
    assert np.isclose(v["e1"], (a ** 2) ** 3 - a ** 8, rtol=1e-14)
    assert np.isclose(v["e2"], a ** 2 - a ** 2, atol=1e-14)
    assert np.isclose(v["e3"], 3 + 4 + 2 ** 9, rtol=1e-14)


# ---- AR(K) with a generator sum, and transformed data


ARK = """
const K = 3
data T: int
data y: real[T]
data y0: real[T]
beta: real[K] ~ Normal(0, 1)
sigma ~ HalfNormal(1)
ybar = mean(y0)
for t in K+1..T:
    y[t] ~ Normal(ybar + sum(beta[k] * (y[t-k] - ybar) for k in 1..K), sigma)
"""


def test_ar_k_generator_log_density() -> None:
    y0 = Y[::-1].copy()
    m = model(ARK, {"T": T, "y": Y.tolist(), "y0": y0.tolist()})
    ybar = y0.mean()

    def reference(u: dict) -> float:
        beta = u["beta"]
        sigma, jac = positive(u["sigma"][0])
        mean = [ybar + sum(beta[k - 1] * (Y[t - k] - ybar) for k in (1, 2, 3))
                for t in range(3, T)]
        return (stats.norm.logpdf(Y[3:], mean, sigma).sum() + stats.norm.logpdf(beta).sum()
                + stats.halfnorm.logpdf(sigma) + jac)
    check(m, [("beta", 3), ("sigma", 1)], reference)


def test_ar_k_generator_sampling() -> None:
    y0 = Y[::-1].copy()
    m = model(ARK, {"T": T, "y": Y.tolist(), "y0": y0.tolist()})
    d = {k: v.numpy() for k, v in m.draws(200, seed=3).items()}
    y, beta, ybar = d["y"], d["beta"], y0.mean()
    assert (y[:, :3] == Y[:3]).all()  # not generated: taken from the data (rule 24)
    mean = ybar + sum(beta[:, k - 1:k] * (y[:, 3 - k:T - k] - ybar) for k in (1, 2, 3))
    z = (y[:, 3:] - mean) / d["sigma"][:, None]
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)


# ---- a deterministic recursion, statements written in the "wrong" order


ORDER = """
data T: int
data y: real[T]
a ~ Normal(0, 1)
s ~ HalfNormal(1)
m[1] = 0.1
for t in 2..T:
    y[t] ~ Normal(m[t], s)
    m[t] = a * m[t-1] + y[t-1]
"""


def recursion_m(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """m[1] = 0.1, m[t] = a m[t-1] + y[t-1] (rows: draws)."""
    m = np.full_like(y, 0.1)
    for t in range(1, y.shape[-1]):
        m[..., t] = a * m[..., t - 1] + y[..., t - 1]
    return m


def test_statement_order_inside_a_recursion() -> None:
    m = model(ORDER, {"T": T, "y": Y.tolist()})

    def reference(u: dict) -> float:
        a = u["a"][0]
        s, jac = positive(u["s"][0])
        mean = recursion_m(np.array(a), Y)
        return (stats.norm.logpdf(Y[1:], mean[1:], s).sum() + stats.norm.logpdf(a)
                + stats.halfnorm.logpdf(s) + jac)
    check(m, [("a", 1), ("s", 1)], reference)
    d = {k: v.numpy() for k, v in m.draws(50, seed=1).items()}
    assert np.allclose(d["m"], recursion_m(d["a"], d["y"]), rtol=1e-12, atol=1e-12)
    assert (d["y"][:, 0] == Y[0]).all()


# ---- GARCH(1,1): latent-dependent bounds, and a chain whose first element is outside


GARCH = """
data T: int
data y: real[T]
data sigma1: real<lower=0>
mu ~ Normal(0, 10)
alpha0 ~ HalfNormal(1)
alpha1: real<lower=0, upper=1> ~ Uniform(0, 1)
beta1: real<lower=0, upper=1 - alpha1> ~ Uniform(0, 1 - alpha1)
sigma[1] = sigma1
y[1] ~ Normal(mu, sigma[1])
for t in 2..T:
    sigma[t] = sqrt(alpha0 + alpha1 * (y[t-1] - mu)^2 + beta1 * sigma[t-1]^2)
    y[t] ~ Normal(mu, sigma[t])
"""


def garch_sigma(y: np.ndarray, mu, alpha0, alpha1, beta1, sigma1: float) -> np.ndarray:  # noqa: ANN001
    sigma = np.zeros_like(y)
    sigma[..., 0] = sigma1
    for t in range(1, y.shape[-1]):
        sigma[..., t] = np.sqrt(alpha0 + alpha1 * (y[..., t - 1] - mu) ** 2
                                + beta1 * sigma[..., t - 1] ** 2)
    return sigma


def test_garch_log_density() -> None:
    m = model(GARCH, {"T": T, "y": Y.tolist(), "sigma1": 0.8})

    def reference(u: dict) -> float:
        mu = u["mu"][0]
        alpha0, j0 = positive(u["alpha0"][0])
        alpha1, j1 = unit(u["alpha1"][0])
        r, j2 = unit(u["beta1"][0])
        beta1 = (1 - alpha1) * r  # interval(0, 1 - alpha1): |d beta1 / du| = (1 - alpha1) r (1 - r)
        j2 += np.log(1 - alpha1)
        sigma = garch_sigma(Y, mu, alpha0, alpha1, beta1, 0.8)
        prior = (stats.norm.logpdf(mu, 0, 10) + stats.halfnorm.logpdf(alpha0)
                 + 0.0 - np.log(1 - alpha1))  # Uniform(0, 1) and Uniform(0, 1 - alpha1)
        return stats.norm.logpdf(Y, mu, sigma).sum() + prior + j0 + j1 + j2
    check(m, [("mu", 1), ("alpha0", 1), ("alpha1", 1), ("beta1", 1)], reference)


def test_garch_draws_its_first_value_before_the_recursion() -> None:
    """y[1] is drawn before the loop reads it, not taken from the data file."""
    m = model(GARCH, {"T": T, "y": Y.tolist(), "sigma1": 0.8})
    d = {k: v.numpy() for k, v in m.draws(4000, seed=2).items()}
    assert ((d["beta1"] > 0) & (d["beta1"] < 1 - d["alpha1"])).all()
    sigma = garch_sigma(d["y"], d["mu"], d["alpha0"], d["alpha1"], d["beta1"], 0.8)
    assert np.allclose(d["sigma"], sigma, rtol=1e-12)
    z = (d["y"][:, 0] - d["mu"]) / 0.8
    assert not (d["y"][:, 0] == Y[0]).any()
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)


# ---- a latent random walk defined in two parts


RW = """
data T: int
data y: real[T]
s ~ HalfNormal(1)
z[1] ~ Normal(0, 1)
for t in 2..T:
    z[t] ~ Normal(z[t-1], s)
for t in 1..T:
    y[t] ~ Normal(z[t], 0.5)
"""


def test_latent_chain_log_density_and_predictive() -> None:
    m = model(RW, {"T": T, "y": Y.tolist()})

    def reference(u: dict) -> float:
        s, jac = positive(u["s"][0])
        z = u["z"]
        return (stats.halfnorm.logpdf(s) + jac + stats.norm.logpdf(z[0])
                + stats.norm.logpdf(z[1:], z[:-1], s).sum()
                + stats.norm.logpdf(Y, z, 0.5).sum())
    check(m, [("s", 1), ("z", T)], reference)
    z = np.linspace(-1, 1, T)
    n = 4000
    given = {"s": torch.full((n,), 0.3, dtype=torch.float64),
             "z": torch.tensor(np.tile(z, (n, 1)))}
    d = m.predictive(given, seed=4)
    assert set(d) == {"y"}  # the given chain is used, not re-drawn
    resid = (d["y"].numpy() - z) / 0.5
    assert np.abs(resid.mean(0)).max() < 5 / np.sqrt(n)


# ---- two crossed plates, and a gather


def test_crossed_plates() -> None:
    y = RNG.normal(size=(4, 3)).round(3)
    m = model("""
data N: int
data M: int
data y: real[N, M]
for i in 1..N:
    mu[i] ~ Normal(0, 1)
for j in 1..M:
    nu[j] ~ Normal(0, 2)
s ~ HalfNormal(1)
for i in 1..N:
    for j in 1..M:
        y[i, j] ~ Normal(mu[i] - nu[j], s)
""", {"N": 4, "M": 3, "y": y.tolist()})

    def reference(u: dict) -> float:
        s, jac = positive(u["s"][0])
        mean = u["mu"][:, None] - u["nu"][None, :]
        return (stats.norm.logpdf(u["mu"]).sum() + stats.norm.logpdf(u["nu"], 0, 2).sum()
                + stats.halfnorm.logpdf(s) + jac + stats.norm.logpdf(y, mean, s).sum())
    check(m, [("mu", 4), ("nu", 3), ("s", 1)], reference)


def test_hierarchical_gather() -> None:
    n, j = 12, 4
    county = RNG.integers(1, j + 1, n)
    x, y = RNG.normal(size=n).round(3), RNG.normal(size=n).round(3)
    m = model("""
data N: int
data J: int
data county: int<lower=1, upper=J>[N]
data x: real[N]
data y: real[N]
mu_a ~ Normal(0, 10)
sigma_a ~ HalfNormal(5)
for j in 1..J:
    a[j] ~ Normal(mu_a, sigma_a)
b ~ Normal(0, 10)
sigma ~ HalfNormal(5)
for n in 1..N:
    y[n] ~ Normal(a[county[n]] + b * x[n], sigma)
""", {"N": n, "J": j, "county": county.tolist(), "x": x.tolist(), "y": y.tolist()})

    def reference(u: dict) -> float:
        sa, j1 = positive(u["sigma_a"][0])
        sigma, j2 = positive(u["sigma"][0])
        a, b = u["a"], u["b"][0]
        return (stats.norm.logpdf(u["mu_a"][0], 0, 10) + stats.halfnorm.logpdf(sa, scale=5)
                + stats.norm.logpdf(a, u["mu_a"][0], sa).sum() + stats.norm.logpdf(b, 0, 10)
                + stats.halfnorm.logpdf(sigma, scale=5) + j1 + j2
                + stats.norm.logpdf(y, a[county - 1] + b * x, sigma).sum())
    check(m, [("mu_a", 1), ("sigma_a", 1), ("a", j), ("b", 1), ("sigma", 1)], reference)


# ---- simplex, truncation, scalar int data, a factor and a vector literal


def test_simplex_truncation_scalar_data_factor() -> None:
    c = np.array([3, 0, 7, 5, 2])
    m = model("""
data N: int
data K: int
data n: int
data c: int<lower=0>[N]
data s: real<lower=0>
w ~ Dirichlet(ones(K))
p: real<lower=0, upper=1> ~ Uniform(0, 1)
x: real<lower=1> ~ Normal(0, s)
for i in 1..N:
    c[i] ~ Binomial(n, p)
m ~ Normal(K, 1)
pair = [m, x]
factor -square(pair[1] - pair[2]) / 2
""", {"N": 5, "K": 3, "n": 7, "c": c.tolist(), "s": 2.0})

    def reference(u: dict) -> float:
        # stick breaking: z_i = sigmoid(u_i - log(K - 1 - i)), w_i = z_i prod_{j<i} (1 - z_j);
        # the map is triangular with d w_i / d u_i = w_i (1 - z_i)
        zs = expit(u["w"] - np.log([2.0, 1.0]))
        w = np.array([zs[0], (1 - zs[0]) * zs[1], (1 - zs[0]) * (1 - zs[1])])
        jw = (np.log(w[:2]) + np.log(1 - zs)).sum()
        p, jp = unit(u["p"][0])
        x, jx = positive(u["x"][0])
        x += 1.0  # lower bound 1: x = 1 + e^u, a truncation without renormalisation (rule 7)
        mm = u["m"][0]
        return (stats.dirichlet.logpdf(w, np.ones(3)) + jw + 0.0 + jp
                + stats.norm.logpdf(x, 0, 2) + jx + stats.binom.logpmf(c, 7, p).sum()
                + stats.norm.logpdf(mm, 3, 1) - (mm - x) ** 2 / 2)
    check(m, [("w", 2), ("p", 1), ("x", 1), ("m", 1)], reference)
    d = m.draws(2000, seed=5)
    assert (d["x"] >= 1).all() and torch.allclose(d["w"].sum(-1), torch.ones(2000,
                                                                           dtype=torch.float64))


# ---- ordered latents


def test_ordered_latent() -> None:
    y = np.array([-2.0, 0.1, 0.4, 3.0])
    m = model("""
data N: int
data K: int
data y: real[N]
mu: ordered[K] ~ Normal(0, 10)
for i in 1..N:
    y[i] ~ Normal(mu[1] + mu[K], 1)
""", {"N": 4, "K": 3, "y": y.tolist()})

    def reference(u: dict) -> float:
        v = u["mu"]
        mu = v[0] + np.concatenate([[0.0], np.cumsum(np.exp(v[1:]))])  # increments e^u
        return (stats.norm.logpdf(mu, 0, 10).sum() + v[1:].sum()
                + stats.norm.logpdf(y, mu[0] + mu[2], 1).sum())
    check(m, [("mu", 3)], reference)
    n = 4000
    mu = m.draws(n, seed=6)["mu"].numpy()
    assert (np.diff(mu, axis=1) > 0).all()
    # sorting iid Normal(0, 10) draws keeps their pooled mean and variance
    pooled = mu.reshape(-1)
    assert abs(pooled.mean()) < 5 * 10 / np.sqrt(pooled.size)
    assert abs(pooled.var() - 100) < 5 * 100 * np.sqrt(2 / n)


@pytest.mark.parametrize("text", [ARK, ORDER, GARCH, RW])
def test_probe_generation_is_deterministic(text: str) -> None:
    src = text.strip() + "\n"
    assert compile_string(src, "probe.bgm").python == compile_string(src, "probe.bgm").python
