"""Fits of many rows hold memory that does not grow with draws x rows: groups over the
limit are left out and said, LOO is then computed from the model in blocks (and equals
ArviZ's), the model is run a chunk of draws at a time, and evaluating it leaves no
reference cycle holding data-sized tensors."""
from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import runtime.loo as loo_module
from compiler.api import compile_string
from compiler.app.cli import _fit_labels, main
from runtime.diagnostics import quiet
from runtime.evaluate import chunk_draws, evaluate
from runtime.loo import loo_from_model
from runtime.output import arviz

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REGRESSION = """model LR
data N: int
data x: real[N]
data y: real[N]
alpha ~ Normal(0, 5)
beta ~ Normal(0, 5)
sigma ~ HalfNormal(2)
for i in 1..N:
    mu[i] = alpha + beta * x[i]
    y[i] ~ Normal(mu[i], sigma)
"""

MIXTURE = """model Mix
data N: int
data x: real[N]
w ~ Dirichlet(ones(2))
mu: ordered[2] ~ Normal(0, 5)
for i in 1..N:
    z[i] ~ Categorical(w)
    x[i] ~ Normal(mu[z[i]], 1)
"""


def regression_data(n: int = 40) -> dict[str, object]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    return {"N": n, "x": x.tolist(), "y": (1 + 2 * x + rng.standard_t(3, size=n)).tolist()}


def schools_data() -> dict[str, object]:
    return json.loads((EXAMPLES / "eight_schools.json").read_text())


@pytest.fixture(scope="module")
def regression_fit():
    program = compile_string(REGRESSION, "lr.bgm")
    fit = program.fit(regression_data(), method="nuts", chains=2, warmup=150, draws=150)
    return program, fit


def _theta(program, data, idata):
    bound = program.bind(data, device="cpu")
    post = idata.posterior
    values = {x: np.asarray(post[x]) for x in program.continuous_unknowns()}
    return bound, bound.unconstrain(values, batch_ndim=2)


def test_groups_over_the_limit_are_left_out_and_said(regression_fit) -> None:
    program, fit = regression_fit
    bound, theta = _theta(program, regression_data(), fit.idata)
    full = evaluate(bound, theta, log_likelihood="auto", limit=10**9)
    assert set(full.log_likelihood) == {"y"} and "mu" in full.posterior
    assert full.left_out == ()
    small = evaluate(bound, theta, log_likelihood="auto", limit=2 * 150 * 40 - 1)
    assert small.log_likelihood == {}
    assert "mu" not in small.posterior and {"alpha", "beta", "sigma"} <= set(small.posterior)
    said = " ".join(small.left_out)
    assert "the deterministic node 'mu' has 40 values per draw" in said
    assert "the pointwise log-likelihood (2 x 150 draws x 40 observations = 1.2e+04 values" \
        in said and "'bgmc compare --data'" in said
    kept = evaluate(bound, theta, log_likelihood="always", limit=10)
    np.testing.assert_allclose(kept.log_likelihood["y"], full.log_likelihood["y"])
    assert evaluate(bound, theta, log_likelihood="never").log_likelihood == {}


def test_draws_of_a_summed_out_latent_left_out_keep_their_marginals() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, 30), rng.normal(2, 1, 30)])
    program = compile_string(MIXTURE, "mix.bgm")
    bound = program.bind({"N": 60, "x": x.tolist()}, device="cpu")
    theta = torch.zeros(1, 4, bound.dim, dtype=torch.float64)
    whole = evaluate(bound, theta, limit=10**9)
    cut = evaluate(bound, theta, limit=4 * 60 - 1)
    assert whole.discrete is not None and cut.discrete is not None
    assert "z" in whole.discrete.draws and "z" not in cut.discrete.draws
    np.testing.assert_allclose(cut.discrete.marginals["z"], whole.discrete.marginals["z"])
    assert any("the draws of the summed-out 'z'" in s for s in cut.left_out)


def test_loo_from_the_model_equals_arviz(regression_fit, monkeypatch) -> None:
    program, fit = regression_fit
    az = arviz()
    with quiet():
        reference = az.loo(fit.idata, pointwise=True)
    bound, theta = _theta(program, regression_data(), fit.idata)
    ess = az.ess(fit.idata.posterior, method="mean")
    reff = float(np.hstack([ess[v].values.ravel() for v in ess.data_vars]).mean() / 300)
    for block in (10**9, 2 * 150 * 7):  # one block; blocks of 7 rows (from those rows alone)
        monkeypatch.setattr(loo_module, "BLOCK_VALUES", block)
        ours = loo_from_model(bound, theta, reff)
        assert ours["elpd_loo"] == pytest.approx(reference["elpd_loo"], rel=1e-10)
        assert ours["p_loo"] == pytest.approx(reference["p_loo"], rel=1e-8)
        np.testing.assert_allclose(ours["loo_i"].values, reference["loo_i"].values, rtol=1e-10)
        np.testing.assert_allclose(ours["pareto_k"].values, reference["pareto_k"].values,
                                   rtol=1e-8)


def test_loo_of_a_plate_with_local_latents_uses_all_rows_per_block(monkeypatch) -> None:
    program = compile_string((EXAMPLES / "eight_schools_noncentered.bgm").read_text(),
                             "schools.bgm")
    fit = program.fit(schools_data(), method="nuts", chains=2, warmup=100, draws=150)
    bound, theta = _theta(program, schools_data(), fit.idata)
    assert loo_module._row_plate(bound, {"y": 8}) is None  # eta[j] lives in the plate
    az = arviz()
    with quiet():
        reference = az.loo(fit.idata, pointwise=True)
    ess = az.ess(fit.idata.posterior, method="mean")
    reff = float(np.hstack([ess[v].values.ravel() for v in ess.data_vars]).mean() / 300)
    monkeypatch.setattr(loo_module, "BLOCK_VALUES", 2 * 150 * 3)
    ours = loo_from_model(bound, theta, reff)
    np.testing.assert_allclose(ours["loo_i"].values, reference["loo_i"].values, rtol=1e-10)


def test_compare_computes_loo_from_the_model_given_the_data(tmp_path: Path, capsys) -> None:
    (tmp_path / "lr.bgm").write_text(REGRESSION)
    (tmp_path / "d.json").write_text(json.dumps(regression_data()))
    common = ["fit", str(tmp_path / "lr.bgm"), "--data", str(tmp_path / "d.json"), "--method",
              "nuts", "--chains", "2", "--warmup", "100", "--draws", "100", "--no-progress"]
    assert main(common + ["-o", str(tmp_path / "a.nc")]) == 0
    assert main(common + ["-o", str(tmp_path / "b.nc"), "--log-likelihood", "never"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a.nc"), str(tmp_path / "b.nc")]) == 1
    assert "it was fitted with --log-likelihood never; refit, or give --data" in \
        capsys.readouterr().err
    assert main(["compare", str(tmp_path / "a.nc"), str(tmp_path / "b.nc"), "--data",
                 str(tmp_path / "d.json")]) == 0
    table = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:3]}
    assert rows["a"][2] == rows["b"][2]  # the same elpd_loo, to the printed digits
    assert "warning: True where the Pareto k" in table
    # one file twice, or two files of one name: a row each, told apart by path and count
    a = str(tmp_path / "a.nc")
    assert main(["compare", a, a]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:len(a) + 4].strip() for line in lines[1:3]] == [a, f"{a} (2)"]


def test_fit_labels_are_stems_unless_they_repeat() -> None:
    assert _fit_labels(["x/a.nc", "y/b.nc"]) == ["a", "b"]
    assert _fit_labels(["x/a.nc", "y/a.nc", "b.nc"]) == ["x/a.nc", "y/a.nc", "b"]
    assert _fit_labels(["a.nc", "a.nc", "a.nc"]) == ["a.nc", "a.nc (2)", "a.nc (3)"]


def test_the_model_runs_a_chunk_of_draws_sized_by_the_data() -> None:
    assert chunk_draws(4, 10) == 256
    assert chunk_draws(4, 10**6) == 1
    assert chunk_draws(1, 2**16) == 64


def test_constrain_leaves_no_reference_cycle(regression_fit) -> None:
    program, fit = regression_fit
    bound, theta = _theta(program, regression_data(), fit.idata)
    gc.collect()
    gc.disable()
    try:
        bound.constrain(theta[:, :5])
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_advi_evaluates_its_particles_in_chunks_with_the_same_result(monkeypatch) -> None:
    """Particles are independent, so a chunk at a time (what keeps 10^6 rows in memory)
    gives the same fit as all at once."""
    import runtime.advi as advi  # noqa: PLC0415
    program = compile_string(REGRESSION, "lr.bgm")
    model = program.bind(regression_data(), device="cpu")
    settings = advi.AdviSettings(seed=3, draws=50, max_iter=300)
    start = torch.zeros(model.dim, dtype=torch.float64)
    whole = advi.fit(model.log_prob, start, settings)
    monkeypatch.setattr(advi, "_chunk", lambda log_prob: 3)
    chunked = advi.fit(model.log_prob, start, settings)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(chunked.draws, whole.draws, rtol=1e-10, atol=1e-12)
    assert chunked.elbo == pytest.approx(whole.elbo, rel=1e-10)
