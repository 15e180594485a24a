"""NeuralSpline flows: the rational-quadratic spline and its coupling layers are exact
bijections. Checked against autograd (the log-determinant is the log |det| of the
Jacobian autograd computes), by round trips in float64, by the identity outside the tail
bound, and through the compiler: the generated log density is the change of variables."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.api import compile_file, compile_string
from dsl.diagnostics import BgmError
from runtime.flows import (
    spline_flow,
    spline_flow_init_scale,
    spline_flow_inverse,
    spline_flow_size,
)
from runtime.splines import params_per_dim, rq_spline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flow_moons.bgm"
SHAPE = (2, 8, 64, 8, 4)  # the example's: NeuralSpline(dim=2) at its defaults


def _weights(shape: tuple[int, ...], seed: int, spread: float) -> torch.Tensor:
    """Weights drawn as torch.nn.Linear draws them, the conditioners' last layers `spread`
    times wider: raw spline parameters of order `spread`, a warp far from the identity
    (a new flow's last layers start 100 times smaller)."""
    g = torch.Generator().manual_seed(seed)
    u = 2 * torch.rand(spline_flow_size(*shape), generator=g, dtype=torch.float64) - 1
    return u * spline_flow_init_scale(*shape, last=spread).double()


def _autograd_log_det(w: torch.Tensor, shape: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
    """log |det d f^-1 / dx| at each row of x by autograd: rows map independently, so the
    Jacobian of the sum over rows holds every row's Jacobian."""
    jac = torch.autograd.functional.jacobian(
        lambda z: spline_flow_inverse(w, shape, z)[0].sum(0), x)  # [dim, rows, dim]
    return torch.linalg.slogdet(jac.permute(1, 0, 2))[1]


@settings(max_examples=25, deadline=None)
@given(bins=st.integers(1, 12), bound=st.floats(0.5, 6), scale=st.floats(0.1, 4),
       seed=st.integers(0, 10_000))
def test_the_spline_is_inverted_exactly_and_its_log_slope_is_autograd_s(
        bins: int, bound: float, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    raw = scale * torch.randn(200, params_per_dim(bins), generator=g, dtype=torch.float64)
    x = (2 * torch.rand(200, generator=g, dtype=torch.float64) - 1) * 1.5 * bound
    x.requires_grad_(True)
    y, log_slope = rq_spline(x, raw, bound)
    slope, = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(log_slope, slope.log(), atol=1e-9)
    back, log_back = rq_spline(y.detach(), raw, bound, inverse=True)
    assert torch.allclose(back, x.detach(), atol=1e-9)
    assert torch.allclose(log_back, -log_slope, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(dim=st.integers(1, 4), layers=st.integers(1, 4), hidden=st.integers(1, 8),
       bins=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_the_inverse_undoes_the_flow_and_its_log_determinant_is_autograd_s(
        dim: int, layers: int, hidden: int, bins: int, seed: int) -> None:
    shape = (dim, layers, hidden, bins, 3)
    w = _weights(shape, seed, spread=3.0)
    u = 1.5 * torch.randn(50, dim, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(seed))
    x = spline_flow(w, shape, u)
    back, ladj = spline_flow_inverse(w, shape, x)
    assert float((back - u).abs().max()) < 1e-5
    assert torch.allclose(ladj, _autograd_log_det(w, shape, x), atol=1e-6)


def test_the_example_s_flow_round_trips_random_points_to_1e_5() -> None:
    w = _weights(SHAPE, 1, spread=3.0)
    x = 2.5 * torch.randn(2000, 2, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(2))
    u, ladj = spline_flow_inverse(w, SHAPE, x)
    assert float((u - x).abs().max()) > 0.5  # far from the identity
    assert float((spline_flow(w, SHAPE, u) - x).abs().max()) < 1e-5
    assert torch.isfinite(ladj).all()


def test_outside_the_tail_bound_the_flow_is_the_identity() -> None:
    w = _weights(SHAPE, 3, spread=3.0)
    outside = torch.tensor([[5.0, -7.5], [-4.01, 4.2], [100.0, -100.0]], dtype=torch.float64)
    u, ladj = spline_flow_inverse(w, SHAPE, outside)
    assert torch.equal(u, outside) and torch.equal(ladj, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(spline_flow(w, SHAPE, outside), outside)


def test_a_new_flow_starts_near_the_identity() -> None:
    """The conditioners' last layers start small: no random warp before training."""
    w = _weights(SHAPE, 4, spread=0.01)  # as a new flow starts
    x = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    u, ladj = spline_flow_inverse(w, SHAPE, x)
    assert float((u - x).abs().max()) < 0.1 and float(ladj.abs().max()) < 0.1


def test_log_density_is_the_change_of_variables_with_an_autograd_jacobian() -> None:
    program = compile_file(EXAMPLE)
    data = json.loads((ROOT / "examples/flow_moons.json").read_text())
    data = {"N": 30, "x": data["x"][:30]}
    model = program.bind(data, device="cpu")
    assert model.latent_names == () and model.observed_names == ("x",)
    w = _weights(SHAPE, 5, spread=3.0)
    lp = float(model.log_prob(model.packer.pack({"f": w[None]}, 1))[0])
    x = torch.tensor(data["x"], dtype=torch.float64)
    u, _ = spline_flow_inverse(w, SHAPE, x)
    want = float(torch.distributions.Normal(0.0, 1.0).log_prob(u).sum()
                 + _autograd_log_det(w, SHAPE, x).sum())
    assert abs(lp - want) < 1e-6 * abs(want)


def test_the_density_integrates_to_one_over_a_grid() -> None:
    shape = (2, 4, 16, 6, 3)
    w = _weights(shape, 6, spread=1.5)
    side = torch.linspace(-7, 7, 401, dtype=torch.float64)
    u, ladj = spline_flow_inverse(w, shape, torch.cartesian_prod(side, side))
    density = torch.exp(torch.distributions.Normal(0.0, 1.0).log_prob(u).sum(-1) + ladj)
    assert float(density.sum()) * float(side[1] - side[0]) ** 2 == pytest.approx(1.0, abs=0.01)


def test_neural_spline_takes_its_sizes_by_keyword_with_defaults() -> None:
    def code(src: str) -> str:
        return compile_string("data N: int\ndata x: real[N, 3]\n" + src +
                              "\nfor i in 1..N:\n    u[i]: real[3] ~ Normal(0, 1)\n"
                              "    x[i] = f(u[i])\n", "f.bgm").python
    short = code("net f = NeuralSpline(dim=3)")
    assert "rt.spline_flow_inverse(u__['f'], (3, 8, 64, 8, 4), x)" in short
    long = code("net f = NeuralSpline(dim=3, layers=2, hidden=16, bins=5, bound=6)")
    assert "rt.spline_flow_size(*(3, 2, 16, 5, 6))" in long


@pytest.mark.parametrize("decl, message", [
    ("NeuralSpline(layers=2)", "NeuralSpline needs 'dim='"),
    ("NeuralSpline(dim=2, knots=3)", "NeuralSpline takes no keyword 'knots'"),
    ("NeuralSpline(dim=2, bound=0)", "'bound' of a NeuralSpline must be between 1"),
    ("NeuralSpline(dim=3)", "takes 3 inputs, but its argument has 2"),
])
def test_neural_spline_mistakes_are_reported(decl: str, message: str) -> None:
    src = (f"data N: int\ndata x: real[N, 2]\nnet f = {decl}\nfor i in 1..N:\n"
           "    u[i]: real[2] ~ Normal(0, 1)\n    x[i] = f(u[i])")
    with pytest.raises(BgmError, match=message) as info:
        compile_string(src, "flow.bgm")
    assert "^" in info.value.render()
