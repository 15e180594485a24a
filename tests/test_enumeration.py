"""Discrete latents summed out (issue 4): the enumerated log density equals the brute-force
sum over every joint assignment, and the exact posterior of a discrete latent equals
its closed form.

The brute force never touches the enumeration code: the same model is compiled a second
time with the discrete latents declared as data, its log density is evaluated once per
joint assignment, and the terms are summed with logsumexp in float64.
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import gammaln, logsumexp

from compiler.api import compile_file, compile_string
from runtime import ModelError, posterior
from runtime.accumulate import Mode
from runtime.nuts import NutsSettings

ROOT = Path(__file__).resolve().parents[1]

# Each template: the body of a model with the discrete latents' declarations marked
# `{decl}` (empty for the latent version, `data ...` for the brute force), the latents,
# and a data maker.
MIXTURE = """
model M
data N: int
data K: int
data x: real[N]
{decl}
w ~ Dirichlet(ones(K))
for k in 1..K:
    mu[k] ~ Normal(0, 3)
    s[k] ~ HalfNormal(2)
for i in 1..N:
    z[i] ~ Categorical(w)
    x[i] ~ Normal(mu[z[i]], s[z[i]])
"""

NAIVE_BAYES = """
model NB
data N: int
data D: int
data x: int<lower=0, upper=1>[N, D]
{decl}
pi ~ Beta(2, 2)
for c in 1..2:
    for d in 1..D:
        q[c, d] ~ Beta(1, 1)
for i in 1..N:
    y[i] ~ Bernoulli(pi)
    for d in 1..D:
        x[i, d] ~ Bernoulli(q[2 - y[i], d])
"""

CHANGE_POINT_AND_LABELS = """
model CP
data T: int
data c: int<lower=0>[T]
{decl}
early ~ Gamma(2, 1)
late ~ Gamma(2, 1)
s ~ DiscreteUniform(1, T)
for t in 1..T:
    c[t] ~ Poisson(early * (t < s) + late * (t >= s))
p ~ Beta(1, 1)
for t in 1..T:
    b[t] ~ Bernoulli(p)
    factor -0.5 * square(late - 2 * b[t])
"""

BOUNDED_COUNT = """
model BC
data N: int
data y: real[N]
{decl}
lam ~ Gamma(2, 1)
for i in 1..N:
    n[i]: int<lower=0, upper=4> ~ Poisson(lam)
    y[i] ~ Normal(n[i], 0.7)
"""


def _latent_and_brute(template: str, decls: str) -> tuple:
    latent = compile_string(template.format(decl=""))
    brute = compile_string(template.format(decl=decls).replace(
        "n[i]: int<lower=0, upper=4> ~", "n[i] ~"))
    return latent, brute


def _check(template: str, decls: str, data: dict, supports: dict[str, list[int]],
           shapes: dict[str, tuple[int, ...]], seed: int) -> None:
    latent_prog, brute_prog = _latent_and_brute(template, decls)
    model = latent_prog.bind(data, device="cpu")
    theta = torch.randn(2, model.dim, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))
    got = model.log_prob(theta).numpy()
    names = list(supports)
    cells = [(name, idx) for name in names for idx in np.ndindex(*shapes[name])]
    terms = []
    for assignment in itertools.product(*(supports[name] for name, _ in cells)):
        values = {name: np.zeros(shapes[name], dtype=int) for name in names}
        for (name, idx), v in zip(cells, assignment, strict=True):
            values[name][idx] = v
        full = {**data, **{k: (v.tolist() if v.ndim else int(v)) for k, v in values.items()}}
        terms.append(brute_prog.bind(full, device="cpu").log_prob(theta).numpy())
    expected = logsumexp(np.stack(terms), axis=0)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


FAST = settings(max_examples=8, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(n=st.integers(1, 3), k=st.integers(1, 3), seed=st.integers(0, 2**16),
       x=st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_mixture_equals_brute_force(n: int, k: int, seed: int, x: list[float]) -> None:
    _check(MIXTURE, "data z: int[N]", {"N": n, "K": k, "x": x[:n]},
           {"z": list(range(1, k + 1))}, {"z": (n,)}, seed)


@FAST
@given(n=st.integers(1, 3), d=st.integers(1, 3), seed=st.integers(0, 2**16),
       bits=st.lists(st.integers(0, 1), min_size=9, max_size=9))
def test_naive_bayes_with_inner_plate_equals_brute_force(n: int, d: int, seed: int,
                                                         bits: list[int]) -> None:
    x = np.array(bits[:n * d]).reshape(n, d).tolist()
    _check(NAIVE_BAYES, "data y: int[N]", {"N": n, "D": d, "x": x},
           {"y": [0, 1]}, {"y": (n,)}, seed)


@FAST
@given(t=st.integers(1, 3), seed=st.integers(0, 2**16),
       counts=st.lists(st.integers(0, 6), min_size=3, max_size=3))
def test_two_independent_discrete_latents_equal_brute_force(t: int, seed: int,
                                                            counts: list[int]) -> None:
    """A scalar switch point and a plate of labels, summed out side by side."""
    _check(CHANGE_POINT_AND_LABELS, "data s: int\ndata b: int[T]",
           {"T": t, "c": counts[:t]}, {"s": list(range(1, t + 1)), "b": [0, 1]},
           {"s": (), "b": (t,)}, seed)


@FAST
@given(n=st.integers(1, 3), seed=st.integers(0, 2**16),
       y=st.lists(st.floats(-1, 6), min_size=3, max_size=3))
def test_declared_bound_makes_a_count_latent_finite(n: int, seed: int, y: list[float]) -> None:
    """`int<lower=0, upper=4> ~ Poisson`: a truncation without renormalisation (rule 7)."""
    _check(BOUNDED_COUNT, "data n: int[N]", {"N": n, "y": y[:n]},
           {"n": list(range(5))}, {"n": (n,)}, seed)


# ---- exact posteriors of a discrete latent


def _segment_log_marginal(y: np.ndarray, a: float = 2.0, b: float = 1.0) -> float:
    """log ∫ Gamma(r | a, b) prod_t Poisson(y_t | r) dr."""
    n, total = len(y), float(np.sum(y))
    return (a * math.log(b) - gammaln(a) + gammaln(a + total) - (a + total) * math.log(b + n)
            - float(np.sum(gammaln(y + 1))))


def change_point_posterior(y: np.ndarray) -> np.ndarray:
    """p(s | y) by direct summation over s with the Gamma rates integrated out."""
    t = len(y)
    logs = np.array([_segment_log_marginal(y[:s - 1]) + _segment_log_marginal(y[s - 1:])
                     for s in range(1, t + 1)])
    return np.exp(logs - logsumexp(logs))


def test_conditional_of_switch_point_is_exact() -> None:
    """Given the rates, p(s | early, late, y) recorded by the enumeration equals Bayes'
    rule computed directly."""
    data = json.loads((ROOT / "examples" / "change_point.json").read_text())
    model = compile_file(ROOT / "examples" / "change_point.bgm").bind(data, device="cpu")
    values = {"early": torch.tensor([2.5, 0.7], dtype=torch.float64),
              "late": torch.tensor([1.2, 3.0], dtype=torch.float64)}
    assert [lat.name for lat in model.latents] == ["early", "late"]
    theta = torch.stack([values["early"], values["late"]], -1).log()  # (0, inf)
    acc = model.accumulate(theta, Mode(jacobian=False, priors=True), record=True)
    got = acc.conditionals["s"].exp().numpy()  # [T, 2]
    y = np.array(data["y"])
    for b in range(2):
        e, lt = float(values["early"][b]), float(values["late"][b])
        logs = np.array([np.sum(y[:s - 1] * math.log(e) - e) + np.sum(y[s - 1:] *
                         math.log(lt) - lt) for s in range(1, len(y) + 1)])
        np.testing.assert_allclose(got[:, b], np.exp(logs - logsumexp(logs)), atol=1e-12)


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_switch_point_posterior_matches_closed_form() -> None:
    """NUTS on the rates, s summed out: the Rao-Blackwellised marginal of s equals the
    closed form (rates integrated analytically) within Monte-Carlo error."""
    data = json.loads((ROOT / "examples" / "change_point.json").read_text())
    model = compile_file(ROOT / "examples" / "change_point.bgm").bind(data, device="cpu")
    idata = posterior.run_nuts(model, NutsSettings(chains=4, warmup=300, draws=500, seed=3))
    got = np.asarray(idata.discrete_posterior["s_marginal"])
    exact = change_point_posterior(np.array(data["y"]))
    assert got.shape == exact.shape
    assert np.abs(got - exact).max() < 0.02, (np.abs(got - exact).max(), exact.max())
    assert int(idata.discrete_posterior["s_mode"]) == int(np.argmax(exact)) + 1
    draws = np.asarray(idata.discrete_posterior["s"])
    assert draws.shape == (4, 500)
    frequency = np.bincount(draws.ravel(), minlength=len(exact) + 1)[1:] / draws.size
    assert np.abs(frequency - exact).max() < 0.06  # draws of s are posterior draws too


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_mixture_labels_posterior_in_output() -> None:
    data = {"N": 6, "K": 2, "x": [-2.1, -1.9, -2.3, 2.0, 2.2, 1.8]}
    model = compile_string(MIXTURE.format(decl="")).bind(data, device="cpu")
    idata = posterior.run_nuts(model, NutsSettings(chains=2, warmup=100, draws=100, seed=1))
    marginal = np.asarray(idata.discrete_posterior["z_marginal"])
    assert marginal.shape == (6, 2)
    np.testing.assert_allclose(marginal.sum(-1), 1.0, atol=1e-12)
    # points on the same side share a component with high probability, whatever the label
    agree = (marginal[:3] @ marginal[:3].T)
    assert agree.min() > 0.4
    assert set(np.unique(idata.discrete_posterior["z"])) <= {1, 2}
    assert "x" in idata.log_likelihood  # the marginal pointwise likelihood, for LOO


def test_enumeration_too_large_is_refused() -> None:
    src = """
data y: real
n ~ DiscreteUniform(1, 1000000)
y ~ Normal(n, 1)
"""
    model = compile_string(src).bind({"y": 1.0}, device="cpu")
    with pytest.raises(ModelError, match="enumerating 1000000 values"):
        model.log_prob(torch.zeros(1, 0, dtype=torch.float64))


def test_mixture_mle_equals_scikit_learn_em() -> None:
    """Issue 4: the mixture's maximum log-likelihood per point, best of 5 starts, within
    1e-3 of scikit-learn's GaussianMixture (best of 5) on the same data and K."""
    from sklearn.mixture import GaussianMixture

    data = json.loads((ROOT / "examples" / "gaussian_mixture.json").read_text())
    program = compile_file(ROOT / "examples" / "gaussian_mixture.bgm")
    result = program.fit(data, method="mle", restarts=5, seed=2)
    x = np.array(data["x"])[:, None]
    em = GaussianMixture(data["K"], n_init=5, tol=1e-10, max_iter=5000, reg_covar=0.0,
                         random_state=0).fit(x)
    ours = result.objective / data["N"]
    assert abs(ours - em.score(x)) < 1e-3, (ours, em.score(x))
    order = np.argsort(np.asarray(result.values["mu"]))
    np.testing.assert_allclose(np.asarray(result.values["mu"])[order],
                               np.sort(em.means_[:, 0]), atol=1e-2)
