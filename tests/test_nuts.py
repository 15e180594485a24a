"""NUTS: correct draws on targets with known moments, adaptation, batching, seeding."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runtime.arrays import ArrayOps
from runtime.nuts import Metric, NutsSettings, sample, windows
from runtime.nuts_tree import Trajectories
from runtime.streams import ChainStreams

torch.set_default_dtype(torch.float64)


def _gaussian(scales: torch.Tensor, rho: float = 0.0):
    d = scales.shape[0]
    cov = torch.full((d, d), rho) + (1 - rho) * torch.eye(d)
    cov = cov * scales[:, None] * scales[None, :]
    precision = torch.linalg.inv(cov)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x @ precision) * x).sum(-1)
    return log_prob, cov


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_standard_gaussian_moments_within_monte_carlo_error():
    scales = torch.tensor([0.1, 1.0, 10.0])
    log_prob, cov = _gaussian(scales)
    r = sample(log_prob, torch.zeros(4, 3), NutsSettings(warmup=400, draws=500, seed=2))
    x = r.draws.reshape(-1, 3)
    n_eff = x.shape[0] / 3  # conservative: NUTS on this target has ESS near n
    assert (x.mean(0).abs() / scales < 5 / math.sqrt(n_eff)).all()
    sd_ratio = x.std(0) / scales
    assert ((sd_ratio - 1).abs() < 0.1).all(), sd_ratio
    assert r.stats["diverging"].sum() == 0


def test_step_size_adaptation_reaches_target_acceptance():
    log_prob, _ = _gaussian(torch.ones(5))
    r = sample(log_prob, torch.zeros(2, 5), NutsSettings(chains=2, warmup=500, draws=300,
                                                         adapt_delta=0.9, seed=3))
    accept = r.stats["accept_stat"].mean()
    assert 0.85 < accept < 0.97, accept


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_diagonal_metric_learns_the_variances():
    scales = torch.tensor([0.05, 1.0, 20.0])
    log_prob, _ = _gaussian(scales)
    r = sample(log_prob, torch.zeros(4, 3), NutsSettings(warmup=600, draws=100, seed=4))
    ratio = r.metric / scales ** 2
    assert ((ratio > 0.6) & (ratio < 1.6)).all(), ratio


def test_dense_metric_handles_strong_correlation():
    log_prob, cov = _gaussian(torch.ones(2), rho=0.999)
    r = sample(log_prob, torch.zeros(4, 2), NutsSettings(warmup=500, draws=400, seed=5,
                                                         metric="dense"))
    x = r.draws.reshape(-1, 2)
    emp = torch.cov(x.T)
    assert torch.allclose(emp, cov, atol=0.15)
    assert r.stats["tree_depth"].float().mean() < 4


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_dense_metric_regularisation_is_invariant_to_units():
    """The same correlated Gaussian in small units (sd 0.005, as a slope on uncentred
    years): the dense metric must learn the correlation, not be swamped by a fixed 1e-3."""
    log_prob, cov = _gaussian(torch.tensor([0.005, 0.005]), rho=0.9999)
    r = sample(log_prob, torch.zeros(4, 2), NutsSettings(warmup=500, draws=200, seed=5,
                                                         metric="dense"))
    learnt = r.metric[0]
    corr = learnt[0, 1] / (learnt[0, 0] * learnt[1, 1]).sqrt()
    assert corr > 0.99, corr
    assert r.stats["tree_depth"].float().mean() < 4


def test_all_chains_share_each_gradient_call():
    calls = []
    log_prob, _ = _gaussian(torch.ones(3))

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return log_prob(x)
    sample(counted, torch.zeros(6, 3), NutsSettings(chains=6, warmup=30, draws=20, seed=1))
    assert calls and all(shape == (6, 3) for shape in calls)


def test_same_seed_same_draws_different_seed_different_draws():
    log_prob, _ = _gaussian(torch.ones(2))
    settings = NutsSettings(chains=2, warmup=50, draws=30, seed=11)
    a = sample(log_prob, torch.zeros(2, 2), settings).draws
    b = sample(log_prob, torch.zeros(2, 2), settings).draws
    c = sample(log_prob, torch.zeros(2, 2), NutsSettings(chains=2, warmup=50, draws=30,
                                                         seed=12)).draws
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_divergences_are_detected_in_a_funnel():
    def funnel(x: torch.Tensor) -> torch.Tensor:
        v, z = x[..., 0], x[..., 1:]
        return -0.5 * v ** 2 / 9 - 0.5 * (z ** 2).sum(-1) * torch.exp(-v) - 0.5 * z.shape[-1] * v
    r = sample(funnel, torch.zeros(4, 5), NutsSettings(chains=4, warmup=200, draws=300, seed=1))
    assert r.stats["diverging"].sum() > 0


def _trajectories(inverse: torch.Tensor, dense: bool = False) -> Trajectories:
    ops = ArrayOps(torch.float64)
    q = np.zeros((1, 2))
    return Trajectories(ops, lambda x: (np.zeros(1), np.zeros((1, 2))), Metric(inverse, dense),
                        np.ones(1), q, np.zeros(1), q, ChainStreams(1, [0], torch.float64), 3)


def test_u_turn_criterion():
    """Both end momenta's velocities must point along the momentum sum; several checks
    are one batched product, each taking its pair of dots."""
    t = _trajectories(torch.ones(1, 2))
    p = np.array([1.0, 0.0])
    ends_at = np.stack([p, p, -p])[None]  # [1, 3 ends, 2]
    spans = np.stack([2 * p, np.array([-0.5, 0.0])])[None]  # [1, 2 sums, 2]
    check = {(0, 1): np.array([0, 2]), (0, 2): np.array([1, 5])}  # flat (end, sum)
    assert t._apart(ends_at, spans, check[0, 1])[0]  # p, p along 2p: no U-turn
    assert not t._apart(ends_at, spans, check[0, 2])[0]  # p, -p: turned back
    # with the metric: velocities M^{-1} p, not p, are compared with the sum
    skew = _trajectories(torch.tensor([[[1.0, 0.0], [0.0, 100.0]]]), dense=True)
    ends_at = np.array([[[1.0, -0.02], [1.0, 0.0]]])
    spans = np.array([[[0.0, 1.0]]])
    assert not skew._apart(ends_at, spans, np.array([0, 1]))[0]  # velocity (1, -2)
    assert t._apart(ends_at, np.array([[[1.0, 1.0]]]), np.array([0, 1]))[0]


def test_no_chain_waits_for_another():
    """The run makes as many density calls as its busiest chain has leapfrog steps (plus
    the start's), not the sum over iterations of the deepest tree, which is what chains
    waiting for each other would cost."""
    calls = []
    log_prob, _ = _gaussian(torch.tensor([0.3, 1.0, 3.0]))

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return log_prob(x)
    r = sample(counted, torch.zeros(8, 3), NutsSettings(chains=8, warmup=0, draws=200,
                                                         seed=2, init_step_size=0.3))
    steps = r.stats["n_leapfrog"]
    busiest = int(steps.sum(1).max())
    lock_step = int(steps.max(0).values.sum())
    assert busiest < len(calls) <= busiest + 52  # the initial density and step-size search
    assert lock_step > 1.3 * len(calls)


@pytest.mark.parametrize("metric", ["diag", "dense"])
def test_bookkeeping_in_numpy_and_in_torch_gives_the_same_draws(metric):
    """The per-step bookkeeping runs in numpy on a CPU and in torch elsewhere (a GPU):
    the same chains, to rounding, whichever library does it."""
    log_prob, _ = _gaussian(torch.tensor([0.5, 1.0, 2.0]), rho=0.5)
    settings = NutsSettings(chains=3, warmup=120, draws=60, seed=4, metric=metric,
                            save_warmup=True, thin=2)
    init = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5], [-0.5, 0.0, 2.0]])
    a = sample(log_prob, init, settings)
    b = sample(log_prob, init, settings, arrays=ArrayOps(torch.float64, use_numpy=False))
    assert torch.allclose(a.draws, b.draws, rtol=0, atol=1e-10)
    assert torch.allclose(a.warmup_draws, b.warmup_draws, rtol=0, atol=1e-10)
    assert a.stats.keys() == b.stats.keys()
    for k in a.stats:
        assert a.stats[k].dtype == b.stats[k].dtype, k
        assert torch.allclose(a.stats[k].double(), b.stats[k].double(), atol=1e-10), k
    assert torch.allclose(a.metric, b.metric, atol=1e-12)


@pytest.mark.parametrize("metric", ["diag", "dense"])
def test_float32_chains_stay_float32(metric):
    """A float32 model (--dtype float32, or a GPU's default) samples in float32 through
    warmup: draws, statistics, step size and metric (numpy would promote a float32 sum
    divided by an integer count to float64)."""
    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x ** 2).sum(-1)
    r = sample(log_prob, torch.zeros(3, 4, dtype=torch.float32),
               NutsSettings(chains=3, warmup=150, draws=200, seed=1, metric=metric))
    assert r.draws.dtype == r.step_size.dtype == r.metric.dtype == torch.float32
    assert r.stats["accept_stat"].dtype == r.stats["energy"].dtype == torch.float32
    assert 0.8 < float(r.draws.std()) < 1.2


@pytest.mark.parametrize("warmup,first,last", [(1000, 75, 950), (150, 75, 100), (100, 15, 90)])
def test_stan_windows(warmup, first, last):
    init, term, ends = windows(warmup)
    assert init == first and ends[-1] == last == warmup - term
    sizes = [b - a for a, b in zip([init] + ends[:-1], ends, strict=True)]
    assert all(b >= a for a, b in zip(sizes, sizes[1:], strict=False))


def test_a_chain_draws_the_same_whatever_chains_run_beside_it():
    """Each chain reads its own random stream, keyed by the seed and its index, and
    draws only while its own tree grows: chains 3 and 4 of a 4-chain run are the same as
    a run of those two chains alone (issue 18; chains split over processes need it)."""
    scales = torch.tensor([1.0, 3.0, 0.2], dtype=torch.float64)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x / scales) ** 2).sum(-1) - 0.1 * (x ** 4).sum(-1)
    init = torch.tensor([[0.5, -1.0, 0.1], [1.0, 2.0, -0.3], [-0.4, 0.3, 0.2],
                         [0.9, -2.0, 0.05]], dtype=torch.float64)
    four = sample(log_prob, init, NutsSettings(chains=4, warmup=60, draws=40, seed=3))
    two = sample(log_prob, init[2:], NutsSettings(chains=2, warmup=60, draws=40, seed=3,
                                                  first_chain=2))
    assert torch.allclose(four.draws[2:], two.draws, rtol=0, atol=1e-12)
    assert torch.equal(four.stats["tree_depth"][2:], two.stats["tree_depth"])
