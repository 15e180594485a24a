"""Nets in a model (issue 5, first part): an MLP's weights are point parameters, its call
is checked against its declared sizes, and the generated density equals a hand-written
torch.nn network with the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compiler.api import compile_string
from dsl.diagnostics import BgmError
from runtime import ModelError, posterior
from runtime.accumulate import Mode
from runtime.nuts import NutsSettings

REGRESSION = """
model MLPRegression
data N: int
data D: int
data x: real[N, D]
data y: real[N, 2]
net f = MLP(D, 8, 6, 2, act=tanh)
sigma ~ HalfNormal(1)
for i in 1..N:
    y[i] ~ Normal(f(x[i]), sigma)
"""


def _data(n: int = 30, d: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], 1) + 0.1 * rng.normal(size=(n, 2))
    return {"N": n, "D": d, "x": x.tolist(), "y": y.tolist()}


def _reference(w: torch.Tensor, sizes: list[int]) -> torch.nn.Sequential:
    """torch.nn layers holding the flat weights in bgm's order: each layer's matrix
    [out, in] row by row, then its bias."""
    layers: list[torch.nn.Module] = []
    start = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin = torch.nn.Linear(a, b, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(w[start:start + a * b].reshape(b, a))
            lin.bias.copy_(w[start + a * b:start + a * b + b])
        start += a * b + b
        layers += [lin] + ([torch.nn.Tanh()] if i < len(sizes) - 2 else [])
    assert start == len(w)
    return torch.nn.Sequential(*layers)


def test_density_equals_a_torch_nn_network_with_the_same_weights() -> None:
    data = _data()
    model = compile_string(REGRESSION).bind(data, device="cpu")
    assert [lat.name for lat in model.latents] == ["sigma", "f"]
    theta = torch.randn(3, model.dim, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1)) * 0.5
    got = model.log_prob(theta, Mode.for_method("mle"))
    x = torch.tensor(data["x"], dtype=torch.float64)
    y = torch.tensor(data["y"], dtype=torch.float64)
    for row in range(3):
        sigma = theta[row, 0].exp()
        net = _reference(theta[row, 1:], [3, 8, 6, 2])
        with torch.no_grad():
            want = torch.distributions.Normal(net(x), sigma).log_prob(y).sum()
        assert float(got[row]) == pytest.approx(float(want), abs=1e-10)


def test_map_fit_learns_the_function() -> None:
    data = _data(n=120)
    program = compile_string(REGRESSION)
    fit = program.fit(data, method="mle", seed=3, optimizer="adam", lr=0.01, max_iter=3000)
    w = torch.as_tensor(fit.values["f"])
    w = w.to(torch.float64)
    with torch.no_grad():
        pred = _reference(w, [3, 8, 6, 2])(torch.tensor(data["x"], dtype=torch.float64))
    pred = pred.numpy()
    mse = float(np.mean((pred - np.array(data["y"])) ** 2))
    linear = np.linalg.lstsq(np.c_[np.ones(120), np.array(data["x"])], np.array(data["y"]),
                             rcond=None)[0]
    linear_mse = float(np.mean((np.c_[np.ones(120), np.array(data["x"])] @ linear
                                - np.array(data["y"])) ** 2))
    assert mse < 0.5 * linear_mse, (mse, linear_mse)


def test_initial_weights_use_the_fan_in() -> None:
    model = compile_string(REGRESSION).bind(_data(), device="cpu")
    theta = model.initial_point(torch.Generator().manual_seed(0), 2.0, (200,))
    first = theta[:, 1:1 + 3 * 8]  # f's first matrix: fan-in 3
    assert float(first.abs().max()) <= 1 / np.sqrt(3) + 1e-12
    assert float(theta[:, 0].abs().max()) > 1.0  # sigma keeps Stan's (-2, 2)


def test_nuts_refuses_a_net() -> None:
    model = compile_string(REGRESSION).bind(_data(), device="cpu")
    with pytest.raises(ModelError, match="weights of the net f"):
        posterior.run_nuts(model, NutsSettings(chains=1, warmup=10, draws=10))


@pytest.mark.parametrize("src, message", [
    ("data x: real[3]\ndata y: real[2]\nnet f = MLP(4, 2)\ny ~ Normal(f(x), 1)",
     "takes 4 inputs, but its argument has 3"),
    ("data x: real[3]\ndata y: real[2]\nnet f = Glow(3, 2)\ny ~ Normal(f(x), 1)",
     "not supported yet"),
    ("data x: real[3]\ndata y: real[2]\nnet f = GRU(3, 2)\ny ~ Normal(f(x), 1)",
     r"GRU takes keywords: GRU\(vocab=\.\.\., dim=\.\.\., layers=1, context=128\)"),
    ("data x: real[3]\ndata y: real[2]\nnet f = GRU(vocab=3, dim=8)\ny ~ Normal(f(x), 1)",
     "the causal net 'f' reads a prefix of a sequence"),
    ("data T: int\ndata x: real[T]\nnet f = GRU(vocab=3, dim=8)\n"
     "for t in 2..T:\n    x[t] ~ Categorical(logits=f(x[1..t-1]))",
     "reads tokens: a vector of int data with values 1..3"),
    ("data T: int\ndata x: int[T]\nnet f = GRU(vocab=3, dim=8)\n"
     "for t in 2..T:\n    x[t] ~ Categorical(logits=f(x[1..t]))",
     "ends before the innermost loop's iteration"),
    ("data T: int\ndata x: int[T]\nnet f = Transformer(vocab=3, dim=10, heads=4)\n"
     "for t in 2..T:\n    x[t] ~ Categorical(logits=f(x[1..t-1]))",
     r"dim \(10\) must be a multiple of heads \(4\)"),
    ("data T: int\ndata x: int[T]\nnet f = GRU(vocab=3)\n"
     "for t in 2..T:\n    x[t] ~ Categorical(logits=f(x[1..t-1]))", "GRU needs 'dim='"),
    ("data T: int\ndata x: int[T]\nnet f = GRU(vocab=3, dim=4, width=2)\n"
     "for t in 2..T:\n    x[t] ~ Categorical(logits=f(x[1..t-1]))",
     "GRU takes no keyword 'width'"),
    ("data T: int\ndata x: int[T]\nnet f = GRU(vocab=3, dim=4)\n"
     "for t in 1..T:\n    x[t] ~ Categorical(logits=f(x[2..t-1]))",
     "would end before it starts"),
    ("data x: real[3]\ndata y: real[2]\nnet f = MLP(3, 2)\ny ~ Normal(f(x, x), 1)",
     "takes one argument"),
])
def test_bad_net_calls_are_diagnosed(src: str, message: str) -> None:
    with pytest.raises(BgmError, match=message) as info:
        compile_string(src)
    assert "^" in info.value.render()


def test_realnvp_takes_its_sizes_by_position_or_keyword() -> None:
    body = "\nfor i in 1..N:\n    u[i]: real[2] ~ Normal(0, 1)\n    x[i] = f(u[i])"
    head = "data N: int\ndata x: real[N, 2]\n"
    a = compile_string(head + "net f = RealNVP(2, 3, 16)" + body).python
    b = compile_string(head + "net f = RealNVP(dim=2, layers=3, hidden=16)" + body).python
    def code(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "rt.realnvp_size(*(2, 3, 16))" in a and code(a) == code(b)
    with pytest.raises(BgmError, match="RealNVP is given 'dim' twice"):
        compile_string(head + "net f = RealNVP(2, dim=2)" + body)
    with pytest.raises(BgmError, match="RealNVP takes at most 3 sizes"):
        compile_string(head + "net f = RealNVP(2, 3, 16, 4)" + body)
