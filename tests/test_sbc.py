"""Simulation-based calibration (Talts et al. 2018): runtime/sbc.py and `bgmc sbc`.

The slow tests run SBC of NUTS on two models (one hierarchical) with 100 replications and
expect uniform ranks (chi-square per parameter, 1% level, Bonferroni across parameters).
The fast tests check that the same machinery accepts an exact sampler and rejects a
deliberately biased one (random-walk Metropolis that forgets the log-Jacobian of the
unconstrained space), plus the rank/chi-square arithmetic, the batched NUTS fitter and
the command line.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from compiler.api import compile_string
from compiler.cli import main
from runtime import sbc
from runtime.accumulate import Mode

NORMAL = """\
model NormalMeanSd

data N: int
data y: real[N]

mu ~ Normal(0, 2)
sigma ~ HalfNormal(1)
for i in 1..N:
    y[i] ~ Normal(mu, sigma)
"""
NORMAL_DATA = {"N": 8}

SCHOOLS = """\
model Schools

data J: int
data y: real[J]
data sigma: real<lower=0>[J]

mu ~ Normal(0, 2)
tau ~ HalfNormal(1)
for j in 1..J:
    eta[j] ~ Normal(0, 1)
    theta[j] = mu + tau * eta[j]
    y[j] ~ Normal(theta[j], sigma[j])
"""
SCHOOLS_DATA = {"J": 4, "sigma": [0.5, 1.0, 1.0, 2.0]}

# Beta-Bernoulli and Normal-Normal (known sd 1) side by side: the posterior of both
# latents is known in closed form.
CONJUGATE = """\
model Conjugate

data N: int
data y: int<lower=0, upper=1>[N]
data x: real[N]

theta ~ Beta(2, 3)
mu ~ Normal(0, 2)
for i in 1..N:
    y[i] ~ Bernoulli(theta)
    x[i] ~ Normal(mu, 1)
"""

# x's mean is indexed by observed labels: the density does not broadcast over a leading
# replication axis of z, so batched NUTS must fall back to one fit after another.
INDEXED = """\
model Indexed

data N: int
data K: int
data z: int<lower=1, upper=K>[N]
data x: real[N]

mu: real[K] ~ Normal(0, 3)
for i in 1..N:
    x[i] ~ Normal(mu[z[i]], 1)
"""


@pytest.fixture(scope="module")
def normal() -> Any:
    return compile_string(NORMAL, "normal.bgm")


@pytest.fixture(scope="module")
def schools() -> Any:
    return compile_string(SCHOOLS, "schools.bgm")


# ---- the rank and chi-square arithmetic ---------------------------------------------------


def test_exactly_uniform_ranks_give_p_one_also_when_bins_do_not_divide_the_ranks() -> None:
    # 0..100 is 101 ranks in 10 bins: one bin holds 11 ranks. Expected counts must follow
    # the ranks in each bin (equal-width bins over [0, 101] made this p ~ 1e-15).
    ranks = np.tile(np.arange(101), 1000)
    assert sbc.chi_square_p(ranks, 100, 10) == pytest.approx(1.0)
    assert sbc.chi_square_p(np.tile(np.arange(100), 50), 99, 10) == pytest.approx(1.0)


def test_all_zero_ranks_fail_and_uniform_random_ranks_pass() -> None:
    assert sbc.chi_square_p(np.zeros(100, dtype=int), 100, 10) < 1e-100
    rng = np.random.default_rng(3)
    p = [sbc.chi_square_p(rng.integers(0, 101, 200), 100, 10) for _ in range(400)]
    # under uniformity the p-values are themselves (nearly) uniform
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.002 < np.mean(np.array(p) < 0.01) < 0.03


def test_chi_square_statistic_matches_a_hand_computation() -> None:
    # ranks 0..9 in 5 bins of 2 ranks; 20 ranks with counts 8, 4, 4, 2, 2 (expected 4 each)
    ranks = np.array([0] * 8 + [2] * 4 + [5] * 4 + [6] * 2 + [9] * 2)
    chi2 = (16 + 0 + 0 + 4 + 4) / 4
    assert sbc.chi_square_p(ranks, 9, 5) == pytest.approx(stats.chi2.sf(chi2, 4))


def test_bonferroni_threshold_and_report() -> None:
    ranks = np.zeros((3, 2), dtype=int)
    failing = sbc.SbcResult(["a", "b[1]"], ranks, 10, np.array([0.004, 0.5]), alpha=0.01)
    assert failing.threshold == pytest.approx(0.005)
    assert not failing.calibrated
    assert re.search(r"a\s+p = 0.004\s+<- not uniform", failing.report())
    assert failing.report().endswith("NOT calibrated")
    passing = sbc.SbcResult(["a", "b[1]"], ranks, 10, np.array([0.006, 0.5]), alpha=0.01)
    assert passing.calibrated
    assert "not uniform" not in passing.report()


def test_ranks_count_the_draws_below_the_true_value(normal: Any) -> None:
    # draws far above (below) any prior draw: every rank is 0 (L), and SBC rejects
    L = 50

    def above(model: Any, seed: int) -> np.ndarray:
        return np.full((L, model.dim), 30.0)

    def below(model: Any, seed: int) -> np.ndarray:
        return np.full((L, model.dim), -30.0)

    high = sbc.run(normal.model_class(), NORMAL_DATA, above, replications=20, seed=1)
    low = sbc.run(normal.model_class(), NORMAL_DATA, below, replications=20, seed=1)
    assert high.names == ["mu", "sigma"] and high.draws_per_fit == L
    assert (high.ranks == 0).all() and (low.ranks == L).all()
    assert not high.calibrated and not low.calibrated
    assert (high.p_values < 1e-10).all()


# ---- an exact sampler passes, a biased one fails -----------------------------------------


def exact_conjugate(model: Any, seed: int, draws: int = 100) -> np.ndarray:
    """Independent draws from the closed-form posterior, unconstrained."""
    rng = np.random.default_rng(seed)
    y = model.data["y"].cpu().numpy()
    x = model.data["x"].cpu().numpy()
    n, heads = len(y), int(y.sum())
    theta = rng.beta(2 + heads, 3 + n - heads, draws)
    precision = n + 1 / 4
    mu = rng.normal(x.sum() / precision, 1 / math.sqrt(precision), draws)
    return model.unconstrain({"theta": theta, "mu": mu}, batch_ndim=1).cpu().numpy()


def test_exact_posterior_draws_are_calibrated() -> None:
    program = compile_string(CONJUGATE, "conjugate.bgm")
    result = sbc.run(program.model_class(), {"N": 5}, exact_conjugate, replications=200, seed=2)
    assert result.names == ["theta", "mu"]
    assert result.ranks.shape == (200, 2) and result.draws_per_fit == 100
    assert result.calibrated, result.report()
    assert (result.p_values > 0.05).all(), result.report()


class ParallelMetropolis:
    """Random-walk Metropolis on the unconstrained space: `draws` independent chains, and
    each chain's last state is one draw (so the draws are independent, as SBC needs).
    The proposal scale follows the spread of the chains in the first half, then stays.

    With jacobian=False the acceptance ratio uses the density of the constrained values
    without the log-Jacobian of the transform: for tau > 0 the same as a multiplicative
    random walk tau' = tau * exp(e) whose acceptance omits the Hastings factor tau'/tau.
    """

    def __init__(self, jacobian: bool, draws: int = 100, steps: int = 300):
        self.mode = Mode(jacobian=jacobian, priors=True)
        self.draws, self.steps = draws, steps

    def __call__(self, model: Any, seed: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            q = model.initial_point(gen, 2.0, (self.draws,))
            lp = model.log_prob(q, self.mode)
            scale = q.std(0)
            for t in range(self.steps):
                if t < self.steps // 2:
                    scale = 2.38 / math.sqrt(model.dim) * q.std(0)
                proposal = q + scale * torch.randn(q.shape, generator=gen, dtype=q.dtype)
                lp_new = model.log_prob(proposal, self.mode)
                u = torch.rand(lp.shape, generator=gen, dtype=q.dtype)
                accept = torch.log(u) < lp_new - lp
                q = torch.where(accept[:, None], proposal, q)
                lp = torch.where(accept, lp_new, lp)
        return q.cpu().numpy()


def test_metropolis_without_the_jacobian_fails_sbc(schools: Any) -> None:
    result = sbc.run(schools.model_class(), SCHOOLS_DATA, ParallelMetropolis(jacobian=False),
                     replications=100, seed=1)
    assert not result.calibrated
    p = dict(zip(result.names, result.p_values, strict=True))
    # Not a borderline rejection: without the Jacobian the density of log(tau) no longer
    # falls off as tau -> 0, the chains drift to tiny tau, and the true tau ranks above
    # nearly all draws.
    assert p["tau"] < 1e-20, result.report()
    tau = result.ranks[:, result.names.index("tau")]
    assert tau.mean() > 0.8 * result.draws_per_fit
    # the group effects eta keep their N(0, 1) prior shape and stay calibrated
    assert all(p[f"eta[{j}]"] > result.threshold for j in range(1, 5)), result.report()


@pytest.mark.slow
def test_the_same_metropolis_with_the_jacobian_passes_sbc(schools: Any) -> None:
    """The control for the test above: same sampler, same replications, correct ratio."""
    result = sbc.run(schools.model_class(), SCHOOLS_DATA, ParallelMetropolis(jacobian=True),
                     replications=100, seed=1)
    assert result.calibrated, result.report()


# ---- NUTS -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_nuts_is_calibrated_on_a_normal_with_unknown_mean_and_sd(normal: Any) -> None:
    # 100 replications as the chains of two batched NUTS calls; draws thinned by 3
    fitter = sbc.nuts_fitter(warmup=200, draws=300, thin=3, batch=50)
    result = sbc.run(normal.model_class(), NORMAL_DATA, fitter, replications=100, seed=1)
    assert result.ranks.shape == (100, 2) and result.draws_per_fit == 100
    assert result.calibrated, result.report()


@pytest.mark.slow
def test_nuts_is_calibrated_on_a_hierarchical_non_centred_model(schools: Any) -> None:
    fitter = sbc.nuts_fitter(warmup=200, draws=300, thin=3, batch=100)
    result = sbc.run(schools.model_class(), SCHOOLS_DATA, fitter, replications=100, seed=1)
    assert result.names == ["mu", "tau", "eta[1]", "eta[2]", "eta[3]", "eta[4]"]
    assert result.ranks.shape == (100, 6) and result.draws_per_fit == 100
    assert result.calibrated, result.report()


@pytest.mark.slow
def test_chees_is_calibrated_on_a_hierarchical_non_centred_model(schools: Any) -> None:
    """The many-chain sampler at `bgmc sbc`'s defaults: 4 chains per replication, all 100
    replications in one lockstep run."""
    result = sbc.run(schools.model_class(), SCHOOLS_DATA, sbc.CheesFitter(),
                     replications=100, seed=1)
    assert result.ranks.shape == (100, 6) and result.draws_per_fit == 100
    assert result.calibrated, result.report()


def _conjugate_models(program: Any, means: list[float], n: int = 10) -> list[Any]:
    rng = np.random.default_rng(0)
    models = []
    for m in means:
        x = rng.normal(m, 1.0, n)
        models.append(program.bind({"N": n, "y": (rng.random(n) < 0.5).astype(int),
                                    "x": x}, "cpu"))
    return models


def test_batched_nuts_fits_each_replication_to_its_own_data() -> None:
    program = compile_string(CONJUGATE, "conjugate.bgm")
    models = _conjugate_models(program, [-3.0, 0.0, 3.0])
    assert sbc._stacked(models) is not None  # one NUTS call with three chains
    fitter = sbc.nuts_fitter(warmup=150, draws=400, thin=1)
    fits = fitter.fit_many(models, seed=5)
    assert [f.shape for f in fits] == [(400, 2)] * 3
    for model, draws in zip(models, fits, strict=True):
        x = model.data["x"].cpu().numpy()
        precision = len(x) + 1 / 4
        mu = model.constrain(torch.as_tensor(draws))["mu"].numpy()
        assert mu.mean() == pytest.approx(x.sum() / precision, abs=0.12)
        assert mu.std() == pytest.approx(1 / math.sqrt(precision), rel=0.25)


def test_many_chain_sbc_fits_each_replication_to_its_own_data() -> None:
    """chees over three replications at once, 4 chains each, a metric and a step size per
    replication: each replication's draws are its own posterior (closed form here)."""
    program = compile_string(CONJUGATE, "conjugate.bgm")
    models = _conjugate_models(program, [-3.0, 0.0, 3.0])
    fitter = sbc.CheesFitter(warmup=150, draws=100, thin=1)
    fits = fitter.fit_many(models, seed=5)
    assert [f.shape for f in fits] == [(400, 2)] * 3
    for model, draws in zip(models, fits, strict=True):
        x = model.data["x"].cpu().numpy()
        precision = len(x) + 1 / 4
        mu = model.constrain(torch.as_tensor(draws))["mu"].numpy()
        assert mu.mean() == pytest.approx(x.sum() / precision, abs=0.1)
        assert mu.std() == pytest.approx(1 / math.sqrt(precision), rel=0.2)


def test_many_chain_sbc_falls_back_to_nuts_where_the_density_does_not_batch() -> None:
    program = compile_string(INDEXED, "indexed.bgm")
    rng = np.random.default_rng(1)
    models = [program.bind({"N": 6, "K": 3, "z": rng.integers(1, 4, 6),
                            "x": rng.normal(size=6)}, "cpu") for _ in range(2)]
    fits = sbc.CheesFitter(warmup=60, draws=10, thin=2).fit_many(models, seed=9)
    nuts = sbc.nuts_fitter(warmup=60, draws=40, thin=2)
    assert np.array_equal(fits[0], nuts(models[0], 9))


def test_batched_nuts_falls_back_to_one_fit_after_another() -> None:
    program = compile_string(INDEXED, "indexed.bgm")
    rng = np.random.default_rng(1)
    models = [program.bind({"N": 6, "K": 3, "z": rng.integers(1, 4, 6),
                            "x": rng.normal(size=6)}, "cpu") for _ in range(2)]
    assert sbc._stacked(models) is None
    fitter = sbc.nuts_fitter(warmup=60, draws=40, thin=2)
    fits = fitter.fit_many(models, seed=9)
    assert np.array_equal(fits[0], fitter(models[0], 9))
    assert np.array_equal(fits[1], fitter(models[1], 10))


# ---- the command line --------------------------------------------------------------------


def test_cli_sbc_writes_rank_histograms_and_prints_p_values(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "normal.bgm"
    model.write_text(NORMAL)
    data = tmp_path / "data.json"
    data.write_text(json.dumps(NORMAL_DATA))
    plot = tmp_path / "ranks.png"
    code = main(["sbc", str(model), "--data", str(data), "-n", "12", "--warmup", "100",
                 "--draws", "100", "--thin", "5", "--seed", "3", "--device", "cpu",
                 "--method", "nuts", "-o", str(plot)])
    out = capsys.readouterr().out
    assert out.startswith("SBC: 12 replications, 20 draws each")
    p = {m.group(1): float(m.group(2))
         for m in re.finditer(r"^\s+(\S+)\s+p = ([0-9.e+-]+)", out, re.MULTILINE)}
    assert set(p) == {"mu", "sigma"}
    assert all(0.0 <= v <= 1.0 for v in p.values())
    calibrated = all(v >= 0.01 / 2 for v in p.values())
    assert out.rstrip().endswith("\ncalibrated" if calibrated else "NOT calibrated")
    assert code == (0 if calibrated else 1)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["data.json", "normal.bgm",
                                                          "ranks.png"]


def test_cli_sbc_reports_a_missing_data_file_without_a_traceback(tmp_path: Path) -> None:
    model = tmp_path / "normal.bgm"
    model.write_text(NORMAL)
    missing = tmp_path / "nope.json"
    done = subprocess.run([sys.executable, "-m", "compiler.cli", "sbc", str(model),
                           "--data", str(missing), "-o", str(tmp_path / "ranks.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: data file {str(missing)!r} not found"
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "ranks.png").exists()


SEQUENCES = """\
model SequencesHMM
data N: int
data T: int
data lengths: int[N]
data y: real[N, T]
for k in 1..2:
    A[k] ~ Dirichlet(ones(2) + 2 * one_hot(k, 2))
mu: ordered[2] ~ Normal(0, 2)
for n in 1..N:
    z[n, 1] ~ Categorical(ones(2) / 2)
    for t in 2..lengths[n]:
        z[n, t] ~ Categorical(A[z[n, t-1]])
    for t in 1..lengths[n]:
        y[n, t] ~ Normal(mu[z[n, t]], 1)
"""


@pytest.mark.slow
def test_chees_is_calibrated_on_an_hmm_of_many_ragged_sequences() -> None:
    """Issue 19: one chain per sequence, of different lengths, summed out by the batched
    forward algorithm; the replications' draws of A, mu and sigma have uniform ranks."""
    program = compile_string(SEQUENCES, "sequences.bgm")
    data = {"N": 3, "T": 6, "lengths": [6, 4, 2]}
    result = sbc.run(program.model_class(), data, sbc.CheesFitter(warmup=200),
                     replications=50, seed=2)
    assert result.names == ["A[1, 1]", "A[1, 2]", "A[2, 1]", "A[2, 2]", "mu[1]", "mu[2]"]
    assert result.calibrated, result.report()
