"""Chains inside plates (issue 19): many sequences of one hidden Markov model, many series
of one AR model. Each sequence is its own chain, summed out by the forward algorithm
batched over the plate; the results equal hmmlearn's with `lengths` and closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from test_hmm import _hmmlearn, _parameters

from compiler.api import compile_string
from runtime import hmm
from runtime.accumulate import Mode

MULTI_HMM = """
model MultiHMM
data N: int
data T: int
data K: int
data y: real[N, T]
for k in 1..K:
    A[k] ~ Dirichlet(ones(K))
    mu[k] ~ Normal(0, 10)
sigma ~ HalfNormal(5)
for n in 1..N:
    z[n, 1] ~ Categorical(ones(K) / K)
    for t in 2..T:
        z[n, t] ~ Categorical(A[z[n, t-1]])
    for t in 1..T:
        y[n, t] ~ Normal(mu[z[n, t]], sigma)
"""

MULTI_AR = """
model MultiAR
data N: int
data T: int
data y: real[N, T]
alpha ~ Normal(0, 10)
beta ~ Normal(0, 1)
sigma ~ HalfNormal(1)
for n in 1..N:
    for t in 2..T:
        y[n, t] ~ Normal(alpha + beta * y[n, t-1], sigma)
"""


def _theta(model, values):
    return model.unconstrain({k: torch.as_tensor(v, dtype=torch.float64)
                              for k, v in values.items()})[None]


@pytest.fixture(scope="module")
def sequences() -> tuple:
    p = _parameters()
    g = _hmmlearn(p)
    n, t = 5, 40
    y = np.stack([g.sample(t, random_state=np.random.RandomState(i))[0][:, 0]
                  for i in range(n)])
    model = compile_string(MULTI_HMM).bind({"N": n, "T": t, "K": 3, "y": y.tolist()},
                                           device="cpu")
    theta = _theta(model, p)
    acc = model.accumulate(theta, Mode.for_method("mle"), record=True)
    return g, y, model, theta, acc


def test_many_sequences_log_likelihood_equals_hmmlearn(sequences: tuple) -> None:
    g, y, model, theta, acc = sequences
    got = float(model.log_prob(theta, Mode.for_method("mle"))[0])
    lengths = [y.shape[1]] * y.shape[0]
    assert got == pytest.approx(g.score(y.reshape(-1, 1), lengths=lengths), rel=1e-10)


def test_many_sequences_viterbi_and_marginals_equal_hmmlearn(sequences: tuple) -> None:
    g, y, model, theta, acc = sequences
    phi = acc.chains["z"]
    assert phi.shape == (1, 5, 40, 3, 3)  # [draws, sequences, steps, K, K]
    lengths = [y.shape[1]] * y.shape[0]
    _, path = g.decode(y.reshape(-1, 1), lengths=lengths, algorithm="viterbi")
    assert np.array_equal(hmm.viterbi(phi)[0].numpy().reshape(-1), path)
    np.testing.assert_allclose(hmm.marginals(phi)[0].numpy().reshape(-1, 3),
                               g.predict_proba(y.reshape(-1, 1), lengths=lengths), atol=1e-8)


def test_each_sequence_is_its_own_chain(sequences: tuple) -> None:
    """The joint log-likelihood is the sum of each sequence's alone (no step links the
    last element of one sequence to the first of the next)."""
    g, y, model, theta, acc = sequences
    total = float(model.log_prob(theta, Mode.for_method("mle"))[0])
    alone = sum(g.score(row[:, None]) for row in y)
    assert total == pytest.approx(alone, rel=1e-10)


def test_prior_draws_of_many_sequences_have_one_path_each() -> None:
    model = compile_string(MULTI_HMM).bind({"N": 3, "T": 7, "K": 2}, device="cpu",
                                           simulate=True)
    draws = model.draws(200, seed=3)
    assert tuple(draws["z"].shape) == (200, 3, 7)
    assert tuple(draws["y"].shape) == (200, 3, 7)
    z = draws["z"]
    assert set(torch.unique(z).tolist()) <= {1, 2}
    # sequences are drawn independently: their first states agree about half the time
    same = (z[:, 0, 0] == z[:, 1, 0]).double().mean()
    assert 0.35 < float(same) < 0.65


def test_many_series_ar_density_is_the_sum_of_normal_densities() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 12)).cumsum(1)
    model = compile_string(MULTI_AR).bind({"N": 4, "T": 12, "y": y.tolist()}, device="cpu")
    a, b, s = 0.3, 0.8, 1.7
    got = float(model.log_prob(_theta(model, {"alpha": a, "beta": b, "sigma": s}),
                               Mode.for_method("mle"))[0])
    want = stats.norm.logpdf(y[:, 1:], a + b * y[:, :-1], s).sum()
    assert got == pytest.approx(want, rel=1e-12)


def test_many_series_ar_draws_follow_each_series_recursion() -> None:
    model = compile_string(MULTI_AR).bind({"N": 3, "T": 6, "y": np.zeros((3, 6)).tolist()},
                                          device="cpu", simulate=True)
    draws = model.draws(4, seed=1)
    y = draws["y"]
    assert tuple(y.shape) == (4, 3, 6)
    # the first element of every series is the data's (no statement generates it)
    assert torch.equal(y[:, :, 0], torch.zeros(4, 3, dtype=y.dtype))
    assert not torch.equal(y[:, 0, 1:], y[:, 1, 1:])  # each series its own draws
