"""Many-chain HMC in lockstep (runtime/chees.py, `--method chees`): exact answers on
Gaussians, per-chain random streams, nested R-hat, divergences on centred eight schools,
and the same NetCDF as NUTS."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.api import compile_string
from compiler.app.fitting import FitSettings
from runtime.chees import CheesSettings, chees_gradient, halton, sample, windows
from runtime.diagnostics import nested_r_hat, summarize
from runtime.nuts import Metric
from runtime.output import arviz
from runtime.streams import ChainStreams, chain_seed

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCHOOLS = json.loads((EXAMPLES / "eight_schools.json").read_text())


def _gaussian(scales: torch.Tensor, chol: torch.Tensor | None = None):
    precision = None if chol is None else torch.cholesky_inverse(chol)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        if precision is not None:
            return -0.5 * ((x @ precision) * x).sum(-1)
        return -0.5 * ((x / scales) ** 2).sum(-1)
    return log_prob


def test_a_badly_scaled_gaussian_has_its_means_and_sds_from_a_diagonal_metric() -> None:
    scales = torch.tensor([0.01, 0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    init = torch.randn(64, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = sample(_gaussian(scales), init, CheesSettings(seed=3))
    draws = result.draws / scales  # standard normal in every coordinate
    assert result.draws.shape == (64, 100, 5)
    assert torch.all(draws.mean((0, 1)).abs() < 0.1)
    assert torch.all((draws.std((0, 1)) - 1).abs() < 0.08)
    # the metric learnt from the pooled chains has the variances' orders of magnitude
    ratio = result.metric / scales ** 2
    assert torch.all((ratio > 0.2) & (ratio < 2))
    ess = arviz().ess(draws.permute(2, 0, 1).numpy()[:, None].squeeze(1)[4])
    assert float(ess) > 1500
    # the trajectory length sits near a quarter period of the whitened Gaussian
    assert 0.8 < result.trajectory_length < 6
    assert int(result.stats["diverging"].sum()) == 0


def test_a_correlation_of_minus_0_9999_is_sampled_with_the_dense_metric() -> None:
    cov = torch.tensor([[1.0, -0.9999 * 50], [-0.9999 * 50, 2500.0]], dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    init = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = sample(_gaussian(torch.ones(2), chol), init,
                    CheesSettings(metric="dense", seed=2))
    flat = result.draws.reshape(-1, 2)
    corr = float(torch.corrcoef(flat.T)[0, 1])
    assert abs(corr + 0.9999) < 0.0005
    assert abs(float(flat[:, 1].std()) / 50 - 1) < 0.08
    assert result.metric.shape == (2, 2)
    # ESS far above what a diagonal metric reaches along a -0.9999 ridge
    ess = float(arviz().ess(flat[:, 0].reshape(64, -1).numpy()))
    assert ess > 1500


def test_each_chain_reads_its_own_stream_whatever_chains_run_beside_it() -> None:
    four = ChainStreams(7, [0, 1, 2, 3], torch.float64)
    alone = ChainStreams(7, [2], torch.float64)
    for _ in range(70):  # across a block boundary
        assert torch.equal(four.normal(3)[2], alone.normal(3)[0])
        assert torch.equal(four.uniform()[2], alone.uniform()[0])
    assert chain_seed(7, 0) != chain_seed(7, 1) != chain_seed(8, 1)
    # a chain left out of a draw does not move its stream
    both, first = ChainStreams(1, [0, 1], torch.float64), ChainStreams(1, [0], torch.float64)
    only_second = torch.tensor([False, True])
    for _ in range(100):
        assert float(both.uniform(only_second)[0]) == 0.5
    assert torch.equal(both.uniform()[0], first.uniform()[0])


def test_the_same_seed_gives_the_same_draws_and_another_seed_others() -> None:
    init = torch.zeros(8, 2, dtype=torch.float64)
    log_prob = _gaussian(torch.tensor([1.0, 2.0], dtype=torch.float64))
    first = sample(log_prob, init, CheesSettings(chains=8, warmup=50, draws=20, seed=5))
    again = sample(log_prob, init, CheesSettings(chains=8, warmup=50, draws=20, seed=5))
    other = sample(log_prob, init, CheesSettings(chains=8, warmup=50, draws=20, seed=6))
    assert torch.equal(first.draws, again.draws)
    assert not torch.equal(first.draws, other.draws)


def test_the_chees_gradient_points_towards_longer_trajectories_at_the_start() -> None:
    """Chains leaving a common centre in the direction of their momentum: moving further
    raises the expected squared distance, so the gradient in log T is positive; moving
    back towards the centre makes it negative."""
    start = torch.tensor([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]],
                         dtype=torch.float64)
    end = 3 * start
    metric = Metric(torch.ones(4, 2, dtype=torch.float64))
    ones, none = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.bool)
    length = torch.ones(1, dtype=torch.float64)
    out = chees_gradient(start, end, end, ones, none, metric, 1.0, length)
    back = chees_gradient(start, end, -end, ones, none, metric, 1.0, length)
    assert float(out) > 0 > float(back)
    # (|x'|^2 - |x|^2) (x' . p) for each chain: (0.09 - 0.01) * 0.09
    assert float(out) == pytest.approx(0.08 * 0.09)
    assert torch.isnan(chees_gradient(start, end, end, ones, torch.ones(4, dtype=torch.bool),
                                      metric, 1.0, length)).all()
    # two groups, each centred on its own mean: the second group's chains moved inwards
    groups = torch.tensor([0, 0, 1, 1])
    p_end = torch.cat([end[:2], -end[2:]])
    both = chees_gradient(start, end, p_end, ones, none, metric, 1.0,
                          torch.ones(2, dtype=torch.float64), groups)
    assert float(both[0]) > 0 > float(both[1])


def test_halton_and_the_metric_windows() -> None:
    assert [halton(i) for i in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert windows(400) == [80, 140, 220, 320]
    assert windows(10) == []


def test_nested_r_hat_by_hand_and_when_a_group_is_stuck() -> None:
    # two superchains of two chains, two draws each: chain means 0, 2 | 4, 6
    draws = np.array([[-1.0, 1.0], [1.0, 3.0], [3.0, 5.0], [5.0, 7.0]])
    groups = np.array([0, 0, 1, 1])
    # superchain means 1 and 5: B = var([1, 5], ddof=1) = 8; per superchain the chain
    # means vary by var([0, 2], ddof=1) = 2 and each chain by var([-1, 1], ddof=1) = 2
    assert nested_r_hat(draws, groups) == pytest.approx(math.sqrt(1 + 8 / 4))
    rng = np.random.default_rng(0)
    mixed = rng.normal(size=(64, 20))
    labels = np.arange(64) * 4 // 64
    assert nested_r_hat(mixed, labels) < 1.01
    stuck = mixed + (labels == 0)[:, None] * 1.0
    assert nested_r_hat(stuck, labels) > 1.05


def test_method_defaults_differ_for_the_many_chain_sampler() -> None:
    many = FitSettings(method="chees")
    assert (many.chains, many.warmup, many.draws, many.adapt_delta) == (64, 400, 100, 0.651)
    nuts = FitSettings(method="nuts")
    assert (nuts.chains, nuts.warmup, nuts.draws, nuts.adapt_delta) == (4, 1000, 1000, 0.8)
    assert FitSettings(method="chees", chains=16).chains == 16


CENTRED = (EXAMPLES / "eight_schools_centered.bgm").read_text()
NONCENTRED = (EXAMPLES / "eight_schools_noncentered.bgm").read_text()


def test_noncentred_eight_schools_matches_the_reference_with_nested_r_hat() -> None:
    fit = compile_string(NONCENTRED, "nc.bgm").fit(SCHOOLS, method="chees", seed=1)
    idata = fit.idata
    assert idata.attrs["method"] == "chees" and int(idata.attrs["superchains"]) == 4
    post = idata.posterior
    assert post.sizes["chain"] == 64 and post.sizes["draw"] == 100
    # posteriordb's reference (eight_schools_noncentered): mu 4.39 (sd 3.3), tau 3.6 (3.2)
    assert abs(float(post["mu"].mean()) - 4.39) < 0.3
    assert abs(float(post["tau"].mean()) - 3.6) < 0.3
    assert abs(float(post["mu"].std()) / 3.3 - 1) < 0.1
    for name in ("lp", "acceptance_rate", "step_size", "n_steps", "diverging", "energy"):
        assert idata.sample_stats[name].shape == (64, 100), name
    table, warnings = summarize(idata)
    assert "r_hat_nested" in table and " r_hat " not in table
    assert not any("R-hat" in w for w in warnings), warnings


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_centred_eight_schools_reports_its_divergences() -> None:
    fit = compile_string(CENTRED, "c.bgm").fit(SCHOOLS, method="chees", seed=1)
    n = int(np.asarray(fit.idata.sample_stats["diverging"]).sum())
    assert n > 0
    _, warnings = summarize(fit.idata)
    assert any(f"{n} of 6400 transitions" in w and "divergent" in w for w in warnings)


def test_bgmc_fit_chees_writes_a_netcdf_like_nuts(tmp_path: Path) -> None:
    out = tmp_path / "fit.nc"
    done = subprocess.run(
        [sys.executable, "-m", "compiler.cli", "fit", str(EXAMPLES / "coin.bgm"), "--data",
         str(EXAMPLES / "coin.json"), "--method", "chees", "--chains", "16", "--warmup",
         "150", "--draws", "50", "-o", str(out), "--no-progress"],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "r_hat_nested" in done.stdout
    idata = arviz().from_netcdf(out)
    assert idata.posterior.sizes["chain"] == 16 and idata.posterior.sizes["draw"] == 50
    assert idata.attrs["method"] == "chees"
    assert "log_likelihood" in idata.groups()
