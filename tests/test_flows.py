"""Flows (rule 13): `x[i] = f(u[i])` with f a RealNVP scores data by the change of
variables and samples by pushing base draws forward."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.api import compile_file, compile_string
from dsl.diagnostics import BgmError
from runtime.flows import realnvp, realnvp_init_scale, realnvp_inverse, realnvp_size
from runtime.metrics import mmd
from runtime.svi import Svi, SviSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flow_realnvp_moons.bgm"  # NeuralSpline: test_splines.py
SHAPE = (2, 6, 64)


def _weights(shape: tuple[int, int, int], seed: int, spread: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = 2 * torch.rand(realnvp_size(*shape), generator=g, dtype=torch.float64) - 1
    return u * realnvp_init_scale(*shape).double() * spread


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(1, 5), layers=st.integers(1, 5), hidden=st.integers(1, 8),
       seed=st.integers(0, 10_000))
def test_the_inverse_undoes_the_flow_and_its_log_determinant_is_autograd_s(
        dim: int, layers: int, hidden: int, seed: int) -> None:
    shape = (dim, layers, hidden)
    w = _weights(shape, seed)
    u = torch.randn(4, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x = realnvp(w, shape, u)
    back, ladj = realnvp_inverse(w, shape, x)
    assert torch.allclose(back, u, atol=1e-10)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(
            lambda z: realnvp_inverse(w, shape, z)[0], x[i])
        assert float(ladj[i]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-9)


def test_log_density_is_the_change_of_variables_with_an_autograd_jacobian() -> None:
    program = compile_file(EXAMPLE)
    data = json.loads((ROOT / "examples/flow_moons.json").read_text())
    data = {"N": 50, "x": data["x"][:50]}
    model = program.bind(data, device="cpu")
    assert model.latent_names == () and model.observed_names == ("x",)
    w = _weights(SHAPE, 3)
    lp = float(model.log_prob(model.packer.pack({"f": w[None]}, 1))[0])
    x = torch.tensor(data["x"], dtype=torch.float64)
    want = 0.0
    for point in x:
        u, _ = realnvp_inverse(w, SHAPE, point)
        jac = torch.autograd.functional.jacobian(lambda z: realnvp_inverse(w, SHAPE, z)[0],
                                                 point)
        want += float(torch.distributions.Normal(0.0, 1.0).log_prob(u).sum()
                      + torch.linalg.slogdet(jac)[1])
    assert abs(lp - want) < 1e-6 * abs(want)


def test_the_density_integrates_to_one_over_a_grid() -> None:
    w = _weights(SHAPE, 5, spread=1.0)
    side = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    u, ladj = realnvp_inverse(w, SHAPE, grid)
    density = torch.exp(torch.distributions.Normal(0.0, 1.0).log_prob(u).sum(-1) + ladj)
    cell = float(side[1] - side[0]) ** 2
    assert float(density.sum()) * cell == pytest.approx(1.0, abs=0.01)


def test_samples_are_base_draws_pushed_forward() -> None:
    program = compile_file(EXAMPLE)
    w = _weights(SHAPE, 7).numpy()
    draws = program.sample(str(ROOT / "examples/flow_moons.json"), n=2, seed=3,
                           given={"f": np.stack([w, w])}, device="cpu")
    pushed = realnvp(torch.as_tensor(w), SHAPE, torch.as_tensor(draws["u"]))
    assert np.allclose(draws["x"], pushed.numpy(), atol=1e-12)
    assert draws["x"].shape == (2, 2000, 2)


@pytest.mark.parametrize("src, message", [
    ("data N: int\ndata T: int\ndata x: int[N]\nnet g = GRU(vocab=3, dim=4)\n"
     "for i in 1..N:\n    u[i] ~ Normal(0, 1)\n    x[i] = g(u[i])",
     "only an invertible net \\(a flow\\) or an MLP \\(an implicit model\\) can define"),
    ("data N: int\ndata x: real[N, 2]\nnet f = RealNVP(dim=2)\nfor i in 1..N:\n"
     "    u[i]: real[2] ~ Normal(0, 1)\n    x[i] = f(u[1])",
     "must be indexed as 'x\\[i\\]' is"),
    ("data N: int\ndata x: real[N, 2]\ndata y: real[N]\nnet f = RealNVP(dim=2)\n"
     "for i in 1..N:\n    u[i]: real[2] ~ Normal(0, 1)\n    x[i] = f(u[i])\n"
     "    y[i] ~ Normal(u[i, 1], 1)",
     "reading it elsewhere is not supported yet"),
    ("data N: int\ndata x: real[N, 3]\nnet f = RealNVP(dim=2)\nfor i in 1..N:\n"
     "    u[i]: real[3] ~ Normal(0, 1)\n    x[i] = f(u[i])",
     "takes 2 inputs, but its argument has 3"),
])
def test_flows_bgmc_cannot_score_are_reported(src: str, message: str) -> None:
    with pytest.raises(BgmError, match=message) as info:
        compile_string(src, "flow.bgm")
    assert "^" in info.value.render()


def _gaussian_mmd_and_loglik(train: np.ndarray, test: np.ndarray,
                             rng: np.random.Generator) -> tuple[np.ndarray, float]:
    mean, cov = train.mean(0), np.cov(train.T)
    draws = rng.multivariate_normal(mean, cov, size=len(test))
    ll = torch.distributions.MultivariateNormal(torch.tensor(mean), torch.tensor(cov)) \
        .log_prob(torch.tensor(test)).mean()
    return draws, float(ll)


@pytest.mark.slow
def test_trained_flow_beats_a_gaussian_on_held_out_two_moons() -> None:
    """At reduced settings (60 epochs instead of 150): held-out log-likelihood per point
    and MMD of 1000 samples to the held-out set, flow vs a Gaussian fitted to the data."""
    program = compile_file(EXAMPLE)
    train = np.asarray(json.loads((ROOT / "examples/flow_moons.json").read_text())["x"])
    test = np.asarray(json.loads((ROOT / "examples/flow_moons_test.json").read_text())["x"])
    model = program.bind(str(ROOT / "examples/flow_moons.json"), device="cpu",
                         dtype="float32")
    svi = Svi(model, SviSettings(epochs=60, batch=256, lr=3e-3, seed=1))
    svi.run()
    w = svi.params["f"].detach().double()
    held = program.bind(str(ROOT / "examples/flow_moons_test.json"), device="cpu")
    flow_ll = float(held.log_prob(held.packer.pack({"f": w[None]}, 1))[0]) / len(test)
    drawn = program.sample(str(ROOT / "examples/flow_moons_test.json"), n=1, seed=2,
                           given={"f": w[None].numpy()}, device="cpu")["x"][0]
    gauss, gauss_ll = _gaussian_mmd_and_loglik(train, test, np.random.default_rng(2))
    assert flow_ll > gauss_ll + 0.3, (flow_ll, gauss_ll)
    assert mmd(drawn, test) < 0.5 * mmd(gauss, test), (mmd(drawn, test), mmd(gauss, test))
    assert math.isfinite(flow_ll)
