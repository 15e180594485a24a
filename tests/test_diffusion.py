"""Diffusion models (rule 20): `x[i] ~ Diffusion(eps, steps=T, schedule=...)` trains a
noise-prediction net by the simplified DDPM loss and samples by the reverse chain
(ancestral, or DDIM over fewer steps)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.api import compile_file, compile_string
from compiler.cli import main
from compiler.passes.diffusion import SCHEDULES
from dsl.diagnostics import BgmError
from runtime import diffusion as rd
from runtime.metrics import mmd, mmd_interval
from runtime.nets import mlp_init_scale, mlp_size
from runtime.svi import Svi, SviSettings

ROOT = Path(__file__).resolve().parents[1]
MOONS = ROOT / "examples" / "diffusion_moons.bgm"
MOONS_DATA = ROOT / "examples" / "diffusion_moons.json"
MOONS_TEST = ROOT / "examples" / "diffusion_moons_test.json"
DIGITS = ROOT / "examples" / "diffusion_digits.bgm"


def _weights(sizes: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = 2 * torch.rand(mlp_size(sizes), generator=g, dtype=torch.float64) - 1
    return u * mlp_init_scale(sizes).double()


def _points(path: Path) -> np.ndarray:
    return np.asarray(json.loads(path.read_text())["x"])


def test_the_compiler_and_the_runtime_know_the_same_schedules() -> None:
    assert SCHEDULES == rd.SCHEDULES


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_forward_chain_matches_its_closed_form(schedule: str) -> None:
    """Stepping q(x_t | x_{t-1}) t times from x_0 gives N(sqrt(abar_t) x_0, (1 - abar_t) I),
    the closed form training draws x_t from; both checked by sampling (5 standard errors)."""
    steps, n = 40, 200_000
    chain = rd.Chain.of(schedule, steps, torch.zeros((), dtype=torch.float64))
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64)
    torch.manual_seed(0)
    x = x0.expand(n, 2).clone()
    for t in range(1, steps + 1):
        x = rd.forward_step(x, t, torch.randn_like(x), chain)
        if t not in (1, 5, 20, 40):
            continue
        closed = rd.q_sample(x0.expand(n, 2), torch.full((n,), t), torch.randn(n, 2,
                             dtype=torch.float64), chain)
        abar = float(torch.prod(1 - rd.betas(schedule, steps)[:t]))
        mean, var = math.sqrt(abar) * x0, 1 - abar
        for draws in (x, closed):
            se_mean = math.sqrt(var / n)
            se_var = var * math.sqrt(2 / n)
            assert torch.allclose(draws.mean(0), mean, atol=5 * se_mean), (t, draws.mean(0))
            assert torch.allclose(draws.var(0), torch.tensor(var, dtype=torch.float64),
                                  atol=5 * se_var), (t, draws.var(0), var)


def test_the_schedules_are_ddpms_and_nichol_and_dhariwals() -> None:
    assert torch.allclose(rd.betas("linear", 1000),
                          torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    steps, s = 200, 0.008
    abar = torch.cumprod(1 - rd.betas("cosine", steps), 0)
    for t in (1, 50, 100, 150):
        f = math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2 / \
            math.cos(s / (1 + s) * math.pi / 2) ** 2
        assert float(abar[t - 1]) == pytest.approx(f, rel=1e-10)
    for schedule in SCHEDULES:
        for steps in (20, 200, 1000):
            b = rd.betas(schedule, steps)
            assert b.min() > 0 and b.max() <= 0.999
            assert float(torch.prod(1 - b)) < 1e-3  # the chain ends in noise


def _denoiser(steps: int = 12, clip: tuple[float, float] | None = None) -> rd.Diffusion:
    sizes = (2 + 4, 16, 16, 2)
    return rd.Diffusion(_weights(sizes, 1), sizes, "tanh", steps, "linear", clip)


@pytest.mark.parametrize("clip", [None, (-0.5, 0.5)])
def test_ddim_over_every_step_with_eta_one_is_ddpm(clip: tuple[float, float] | None) -> None:
    d = _denoiser(clip=clip).expand((500,))
    torch.manual_seed(3)
    ddpm = d.sample()
    torch.manual_seed(3)
    with rd.sampler(ddim=d.steps, eta=1.0):
        ddim = d.sample()
    assert torch.allclose(ddpm, ddim, atol=1e-10)
    assert not torch.allclose(ddpm, torch.zeros_like(ddpm))


def test_the_ancestral_step_is_the_epsilon_form_of_ho_et_al() -> None:
    """x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(1 - beta_t) + sigma_t z, with
    sigma_t^2 = beta_t (1 - abar_{t-1}) / (1 - abar_t), written out by hand."""
    d = _denoiser(steps=5).expand((300,))
    torch.manual_seed(4)
    got = d.sample()
    torch.manual_seed(4)
    b = rd.betas("linear", 5)
    abar = torch.cumprod(1 - b, 0)
    x = torch.randn(300, 2, dtype=torch.float64)
    for t in range(5, 0, -1):
        eps = d.eps(x, torch.full((300,), float(t), dtype=torch.float64), 0)
        x = (x - b[t - 1] / (1 - abar[t - 1]).sqrt() * eps) / (1 - b[t - 1]).sqrt()
        if t > 1:
            x = x + (b[t - 1] * (1 - abar[t - 2]) / (1 - abar[t - 1])).sqrt() * \
                torch.randn_like(x)
    assert torch.allclose(got, x, atol=1e-10)


def test_ddim_visits_evenly_spaced_steps_down_to_one() -> None:
    assert rd.ddim_steps(200, 50) == list(range(197, 0, -4))
    assert rd.ddim_steps(10, 10) == list(range(10, 0, -1))
    assert rd.ddim_steps(10, 500) == list(range(10, 0, -1))
    assert rd.ddim_steps(9, 1) == [1]


def test_samples_stay_inside_the_declared_bounds_when_clipped() -> None:
    torch.manual_seed(0)
    wild = rd.Diffusion(_weights((6, 16, 2), 2) * 30, (6, 16, 2), "relu", 20, "cosine")
    assert wild.expand((400,)).sample().abs().max() > 1  # the net's x_0 strays
    clipped = rd.Diffusion(wild.w, wild.sizes, "relu", 20, "cosine", (-1.0, 1.0))
    for ddim in (None, 5):
        with rd.sampler(ddim):
            assert clipped.expand((400,)).sample().abs().max() <= 1 + 1e-12


def test_the_log_density_is_minus_the_noise_prediction_loss_by_hand() -> None:
    """-sum_i ||noise_i - eps(sqrt(abar_t) x_i + sqrt(1 - abar_t) noise_i, t / T)||^2, with
    the net, its time features and the schedule written out here."""
    program = compile_file(MOONS)
    data = {"N": 30, "x": _points(MOONS_DATA)[:30].tolist()}
    model = program.bind(data, device="cpu")
    assert model.observed_names == ("x",) and model.diffusion_names == ("x",)
    sizes = (18, 128, 128, 128, 2)
    w = _weights(sizes, 7)
    torch.manual_seed(5)
    got = float(model.log_prob(model.packer.pack({"eps": w[None]}, 1))[0])
    torch.manual_seed(5)
    steps = 200
    t = torch.randint(1, steps + 1, (30,))
    x0 = torch.tensor(data["x"], dtype=torch.float64)
    noise = torch.randn_like(x0)
    s = 0.008
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s)
                  * math.pi / 2) ** 2
    betas = (1 - (f / f[0])[1:] / (f / f[0])[:-1]).clamp(max=0.999)
    abar = torch.cumprod(1 - betas, 0)[t - 1]  # f(t) / f(0), with beta_T clipped
    xt = abar.sqrt()[:, None] * x0 + (1 - abar).sqrt()[:, None] * noise
    angle = 1000 * (t / steps)[:, None].double() * 10000.0 ** (-torch.arange(8) / 8)
    h = torch.cat([xt, angle.sin(), angle.cos()], 1)
    start = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        weight = w[start:start + a * b].view(b, a)
        bias = w[start + a * b:start + a * b + b]
        start += a * b + b
        h = h @ weight.T + bias
        if i < len(sizes) - 2:
            h = torch.nn.functional.silu(h)
    want = float(-((noise - h) ** 2).sum())
    assert got == pytest.approx(want, rel=1e-8)  # sin(1000 t / T ...) rounds differently


@pytest.mark.parametrize("body, message", [
    ("net eps = MLP(2 + 16, 8, 2)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps, schedule=\"quad\")",
     'the schedule of a Diffusion is "linear" or "cosine"'),
    ("net eps = MLP(2 + 3, 8, 2)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps)",
     "its inputs minus its outputs is 3, not 1"),
    ("net eps = MLP(2 + 2, 8, 3)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps)",
     r"a draw of Diffusion has shape \[3\], but the left side 'x\[i\]' has shape \[2\]"),
    ("net eps = GRU(vocab=3, dim=4)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps)",
     "must be a net declared as an MLP; 'eps' is a GRU"),
    ("net eps = MLP(4, 8, 2)\nfor i in 1..N:\n    x[i] ~ Diffusion(N)",
     "'N' is not a net"),
    ("net eps = MLP(4, 8, 2)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps, step=3)",
     "Diffusion takes no keyword 'step'"),
    ("net eps = MLP(4, 8, 2)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps, steps=0)",
     "a Diffusion needs at least 1 step"),
    ("net eps = MLP(4, 8, 2)\nfor i in 1..N:\n    x[i] ~ Diffusion(eps, eps)",
     "Diffusion takes its denoising net first, then keywords"),
    ("net eps = MLP(4, 8, 2)\nfor i in 1..N:\n    z[i]: real[2] ~ Diffusion(eps)\n"
     "    x[i] ~ Normal(z[i], 1)", "Diffusion is a distribution over data; 'z' is not data"),
])
def test_diffusions_bgmc_cannot_use_are_reported_with_a_caret(body: str, message: str) -> None:
    src = f"data N: int\ndata x: real[N, 2]\n{body}\n"
    with pytest.raises(BgmError, match=message) as info:
        compile_string(src, "diffusion.bgm")
    assert "^" in info.value.render()


def test_likelihood_methods_are_refused_and_ddim_needs_a_diffusion(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", str(MOONS), "--data", str(MOONS_TEST), "--method", "map"]) == 1
    err = capsys.readouterr().err
    assert "noise-prediction loss" in err and "use --method svi" in err
    assert "Traceback" not in err
    coin = ROOT / "examples" / "coin.bgm"
    assert main(["sample", str(coin), "--data", str(coin.with_suffix(".json")),
                 "--ddim", "10"]) == 1
    assert "--ddim draws from a diffusion model" in capsys.readouterr().err


def _trained(epochs: int, lr: float) -> tuple[object, torch.Tensor]:
    program = compile_file(MOONS)
    model = program.bind(str(MOONS_DATA), device="cpu", dtype="float32")
    svi = Svi(model, SviSettings(epochs=epochs, batch=256, lr=lr, seed=1))
    svi.run()
    return program, svi.params["eps"].detach().double()


def _drawn(program: object, w: torch.Tensor, ddim: int | None, seed: int = 2) -> np.ndarray:
    return program.sample(str(MOONS_TEST), n=1, seed=seed,  # type: ignore[attr-defined]
                          given={"eps": w[None].numpy()}, device="cpu", ddim=ddim)["x"][0]


def _gaussian(train: np.ndarray, n: int) -> np.ndarray:
    return np.random.default_rng(1).multivariate_normal(train.mean(0), np.cov(train.T), n)


def test_a_short_training_beats_a_gaussian_on_the_moons() -> None:
    """40 epochs (the example runs 1000): DDPM samples are closer to held-out data (MMD)
    than draws of a Gaussian fitted to the training data."""
    program, w = _trained(40, 2e-3)
    test = _points(MOONS_TEST)
    drawn = _drawn(program, w, None)
    assert mmd(drawn, test) < mmd(_gaussian(_points(MOONS_DATA), len(test)), test)


@pytest.mark.slow
def test_ddim_with_50_steps_and_ddpm_agree_and_beat_a_gaussian() -> None:
    """400 epochs (the example runs 1000): the MMDs to held-out data of DDIM-50 and of
    DDPM (all 200 steps) have overlapping 95% bootstrap intervals, and both are under
    half the Gaussian's."""
    program, w = _trained(400, 1e-3)
    test = _points(MOONS_TEST)
    ddpm, ddim = _drawn(program, w, None), _drawn(program, w, 50)
    gauss = mmd(_gaussian(_points(MOONS_DATA), len(test)), test)
    a, b = mmd_interval(ddpm, test, seed=1), mmd_interval(ddim, test, seed=2)
    assert a[0] <= b[1] and b[0] <= a[1], (a, b)
    assert mmd(ddpm, test) < 0.5 * gauss and mmd(ddim, test) < 0.5 * gauss, \
        (mmd(ddpm, test), mmd(ddim, test), gauss)


def test_mmd_is_zero_for_one_set_and_its_interval_brackets_a_shift() -> None:
    g = np.random.default_rng(0)
    a, b = g.normal(size=(300, 2)), g.normal(size=(300, 2)) + [1.0, 0.0]
    assert mmd(a, a) == pytest.approx(0.0, abs=1e-12)
    k = lambda s, t: np.exp(-((s[:, None] - t[None]) ** 2).sum(-1) / 0.5).mean()  # noqa: E731
    assert mmd(a, b) == pytest.approx(k(a, a) + k(b, b) - 2 * k(a, b), rel=1e-10)
    lo, hi = mmd_interval(a, b, reps=100)
    assert 0 < lo < hi and lo < mmd(a, b) * 1.5 and hi > mmd(a, b) * 0.5


def test_the_cli_fits_then_samples_by_ddpm_and_by_ddim(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "moons.json"
    data.write_text(json.dumps({"N": 64, "x": _points(MOONS_TEST)[:64].tolist()}))
    fit = tmp_path / "fit.nc"
    assert main(["fit", str(MOONS), "--data", str(data), "--method", "svi", "--epochs", "2",
                 "--batch", "32", "--no-progress", "-o", str(fit)]) == 0
    assert "noise-prediction objective" in capsys.readouterr().out
    drawn = {}
    for extra in ([], ["--ddim", "10"], ["--ddim", "10", "--eta", "1"]):
        out = tmp_path / f"draws{len(extra)}.json"
        assert main(["sample", str(MOONS), "--data", str(data), "--fit", str(fit), "-n", "2",
                     "-o", str(out), *extra]) == 0
        x = np.asarray(json.loads(out.read_text())["x"])
        assert x.shape == (2, 64, 2) and np.isfinite(x).all()
        drawn[len(extra)] = x
    assert not np.allclose(drawn[0], drawn[2]) and not np.allclose(drawn[2], drawn[4])


@pytest.mark.slow
def test_the_digits_model_learns_to_denoise_held_out_images() -> None:
    """100 epochs (the example runs 600): on held-out digits the noise-prediction loss at
    random steps is under a quarter of predicting no noise (E||noise||^2 = 64), and the
    samples keep to the declared pixel range [-1, 1]."""
    program = compile_file(DIGITS)
    model = program.bind(str(DIGITS.with_suffix(".json")), device="cpu", dtype="float32")
    svi = Svi(model, SviSettings(epochs=100, batch=128, lr=1e-3, seed=1))
    svi.run()
    w = svi.params["eps"].detach().double()
    test = ROOT / "examples" / "diffusion_digits_test.json"
    held = program.bind(str(test), device="cpu")
    torch.manual_seed(0)
    loss = -float(held.log_prob(held.packer.pack({"eps": w[None]}, 1))[0]) / 297
    assert loss < 64 / 4, loss
    drawn = program.sample(str(test), n=1, seed=3, given={"eps": w[None].numpy()},
                           device="cpu")["x"][0]
    assert drawn.shape == (297, 64) and np.abs(drawn).max() <= 1.0 + 1e-9
