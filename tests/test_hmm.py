"""Chains of discrete latents (issue 4): the hidden Markov model's log-likelihood, Viterbi
path and marginals equal hmmlearn's on the same parameters, and forward-filtering
backward-sampling draws have the forward-backward marginals."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hmmlearn.hmm import GaussianHMM

from compiler.api import compile_file, compile_string
from runtime import hmm
from runtime.accumulate import Mode

ROOT = Path(__file__).resolve().parents[1]

HMM = (ROOT / "examples" / "hidden_markov.bgm")


def _brute(phi: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    t, k = phi.shape[-3], phi.shape[-1]
    paths = list(itertools.product(range(k), repeat=t))
    scores = torch.stack([phi[..., 0, 0, p[0]] + sum((phi[..., s, p[s - 1], p[s]]
                                                      for s in range(1, t)), torch.tensor(0.0))
                          for p in paths], -1)
    return scores, paths


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 6])
def test_chain_algorithms_equal_brute_force(steps: int) -> None:
    phi = torch.randn(2, steps, 3, 3, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(steps))
    scores, paths = _brute(phi)
    torch.testing.assert_close(hmm.log_likelihood(phi), scores.logsumexp(-1), rtol=0,
                               atol=1e-12)
    best = [list(paths[i]) for i in scores.argmax(-1)]
    assert hmm.viterbi(phi).tolist() == best
    probs = torch.softmax(scores, -1)
    expected = torch.zeros(2, steps, 3, dtype=torch.float64)
    for i, p in enumerate(paths):
        for s in range(steps):
            expected[:, s, p[s]] += probs[:, i]
    torch.testing.assert_close(hmm.marginals(phi), expected, rtol=0, atol=1e-12)


def _parameters(k: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(k) * 2, size=k) + np.eye(k) * 2
    a /= a.sum(1, keepdims=True)
    return {"A": a, "mu": np.array([-2.0, 0.5, 3.0])[:k], "sigma": np.array(0.9)}


def _hmmlearn(p: dict[str, np.ndarray]) -> GaussianHMM:
    k = len(p["mu"])
    g = GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
    g.startprob_ = np.ones(k) / k
    g.transmat_ = p["A"]
    g.means_ = p["mu"][:, None]
    g.covars_ = np.full((k, 1), float(p["sigma"]) ** 2)
    return g


@pytest.fixture(scope="module")
def long_chain() -> tuple:
    p = _parameters()
    g = _hmmlearn(p)
    x, _ = g.sample(1000, random_state=np.random.RandomState(1))
    data = {"T": 1000, "K": 3, "y": x[:, 0].tolist()}
    model = compile_file(HMM).bind(data, device="cpu")
    theta = model.unconstrain({k: torch.as_tensor(v) for k, v in p.items()})[None]
    acc = model.accumulate(theta, Mode.for_method("mle"), record=True)
    return g, x, model, theta, acc


def test_log_likelihood_equals_hmmlearn(long_chain: tuple) -> None:
    g, x, model, theta, acc = long_chain
    got = float(model.log_prob(theta, Mode.for_method("mle"))[0])
    assert got == pytest.approx(g.score(x), rel=1e-8)
    assert float(acc.total[0]) == pytest.approx(got, rel=1e-12)


def test_viterbi_and_marginals_equal_hmmlearn(long_chain: tuple) -> None:
    g, x, model, theta, acc = long_chain
    phi = acc.chains["z"]
    _, path = g.decode(x, algorithm="viterbi")
    assert np.array_equal(hmm.viterbi(phi)[0].numpy(), path)
    np.testing.assert_allclose(hmm.marginals(phi)[0].numpy(), g.predict_proba(x), atol=1e-8)


def test_ffbs_draws_have_the_forward_backward_marginals(long_chain: tuple) -> None:
    *_, acc = long_chain
    phi = acc.chains["z"][..., :50, :, :].expand(4000, 50, 3, 3)
    draws = hmm.sample_paths(phi, torch.Generator().manual_seed(0))
    frequency = torch.nn.functional.one_hot(draws, 3).double().mean(0)
    exact = hmm.marginals(phi[:1])[0]
    se = (exact * (1 - exact) / 4000).sqrt()
    assert ((frequency - exact).abs() <= 4.5 * se + 1e-12).all()


def test_chain_read_two_steps_back_is_refused() -> None:
    src = """
data T: int
data y: real[T]
z[1] ~ Bernoulli(0.5)
for t in 2..T:
    z[t] ~ Bernoulli(0.5)
for t in 3..T:
    y[t] ~ Normal(z[t - 2], 1)
"""
    from dsl.diagnostics import BgmError
    with pytest.raises(BgmError, match="previous one"):
        compile_string(src)
