"""Stochastic variational inference with `guide:` blocks and minibatches (runtime/svi.py).

- The minibatch ELBO is unbiased: its gradient averaged over every minibatch of a small
  plate equals the full-data gradient within Monte Carlo error; without the N / batch
  scale it does not.
- The guide's log q is what its distributions say, and its draws are reparameterised.
- A run killed mid-way (SIGKILL) and resumed from its checkpoint ends with the same
  parameters, bit for bit, as an uninterrupted run with the same seed.
- A NaN during training stops with a message naming the term that produced it.
- The VAE example trains through the CLI and its fit feeds `bgmc sample`.
"""
from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.api import compile_file, compile_string
from runtime.errors import ModelError
from runtime.svi import Svi, SviSettings

ROOT = Path(__file__).resolve().parents[1]

AMORTISED = """
data N: int
data x: real[N, 2]
net enc = MLP(2, 8, 2, act=tanh)
param s: real<lower=0>
mu: real[2] ~ Normal(0, 3)
for i in 1..N:
    z[i]: real[2] ~ Normal(mu, 1)
    x[i] ~ Normal(z[i], s)
guide:
    for i in 1..N:
        h[i] = enc(x[i])
        z[i] ~ Normal(h[i], 0.5)
"""


def _data(n: int = 6) -> dict:
    rng = np.random.default_rng(3)
    return {"N": n, "x": (rng.normal(size=(n, 2)) + [1.0, -2.0]).tolist()}


def _gradient(svi: Svi, idx: torch.Tensor | None, particles: int) -> torch.Tensor:
    for p in svi.parameters():
        p.grad = None
    elbo, _, _ = svi.elbo(particles, idx)
    elbo.backward()
    return torch.cat([p.grad.reshape(-1) for p in svi.parameters() if p.grad is not None])


def test_minibatch_gradient_is_unbiased() -> None:
    model = compile_string(AMORTISED).bind(_data(), device="cpu")
    svi = Svi(model, SviSettings(batch=2, seed=4))
    assert svi.plate == "N" and [m.name for m in svi.meanfield] == ["mu"]
    torch.manual_seed(0)
    full = _gradient(svi, None, 200_000)
    subsets = [torch.tensor(c) for c in itertools.combinations(range(6), 2)]
    mini = torch.stack([_gradient(svi, idx, 20_000) for idx in subsets]).mean(0)
    scale = full.abs().max()
    assert torch.allclose(mini, full, atol=0.02 * float(scale)), (mini - full).abs().max()
    # the same average without the N / batch scale is far from the full gradient
    svi._scales = lambda bound, idx: {}  # type: ignore[method-assign]
    unscaled = torch.stack([_gradient(svi, idx, 20_000) for idx in subsets]).mean(0)
    assert (unscaled - full).abs().max() > 0.2 * float(scale)


def test_guide_log_q_is_its_distributions_density() -> None:
    model = compile_string(AMORTISED).bind(_data(), device="cpu")
    svi = Svi(model, SviSettings(seed=2))
    guide = svi.guide
    from runtime.accumulate import Accumulator, Mode
    acc = Accumulator(Mode(False, True), 1)
    torch.manual_seed(5)
    w = svi.params["enc"]
    z = guide.sample_guide(guide.data, {"enc": w.expand(3, -1)}, (3,), acc)["z"]
    x = torch.tensor(_data()["x"], dtype=torch.float64)
    w1, b1 = w[:16].reshape(8, 2), w[16:24]
    w2, b2 = w[24:40].reshape(2, 8), w[40:42]
    h = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    expected = torch.distributions.Normal(h, 0.5).log_prob(z).sum((-2, -1))
    assert torch.allclose(acc.total, expected, atol=1e-10)
    # reparameterised: the draw carries the encoder's gradient
    (g,) = torch.autograd.grad(z.sum(), w)
    assert g.abs().sum() > 0


def test_svi_recovers_a_conjugate_posterior_mean_field() -> None:
    """No guide block: the automatic mean-field Gaussian; a Normal mean with known sd has
    a Gaussian posterior, which the family contains."""
    y = np.random.default_rng(1).normal(1.5, 2.0, size=50)
    program = compile_string("data N: int\ndata y: real[N]\nmu ~ Normal(0, 10)\n"
                             "y ~ Normal(mu, 2)\n")
    svi = Svi(program.bind({"N": 50, "y": y.tolist()}, device="cpu"),
              SviSettings(steps=3000, lr=0.02, particles=8, seed=1))
    svi.run()
    post_var = 1 / (1 / 100 + 50 / 4)
    post_mean = post_var * y.sum() / 4
    assert abs(svi.loc[0].item() - post_mean) < 0.05
    assert abs(math.exp(svi.log_scale[0].item()) - math.sqrt(post_var)) < 0.05


def test_nan_stops_with_the_factor_named() -> None:
    program = compile_string("data N: int\ndata y: real[N]\nparam s: real\n"
                             "y ~ Normal(0, s)\n")
    svi = Svi(program.bind({"N": 3, "y": [1.0, 2.0, 3.0]}, device="cpu"),
              SviSettings(steps=10, seed=1))
    with torch.no_grad():
        svi.params["s"].fill_(-1.0)  # a negative sd: the likelihood is not finite
    with pytest.raises(ModelError, match="term 'likelihood y'.*not finite"):
        svi.step()


def test_batch_errors_name_the_problem() -> None:
    model = compile_string(AMORTISED.split("guide:")[0]).bind(_data(), device="cpu")
    with pytest.raises(ModelError, match="latent 'z' is local to the plate N"):
        Svi(model, SviSettings(batch=2))
    with pytest.raises(ModelError, match="--plate K: not the size of a plate"):
        Svi(model, SviSettings(batch=2, plate="K"))


def _bgmc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _final_params(path: Path) -> dict[str, np.ndarray]:
    from runtime.output import read_netcdf
    idata = read_netcdf(path)
    return {"dec": np.asarray(idata.nets["dec"]), "z": np.asarray(idata.posterior["z"])}


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    common = ["fit", "examples/vae.bgm", "--data", "examples/vae.json", "--method", "svi",
              "--batch", "100", "--iter", "400", "--draws", "5", "--seed", "3",
              "--checkpoint-every", "20", "--no-progress"]
    whole = tmp_path / "whole.nc"
    done = _bgmc(*common, "-o", str(whole))
    assert done.returncode == 0, done.stderr
    killed = tmp_path / "killed.nc"
    ckpt = Path(f"{killed}.ckpt.safetensors")
    proc = subprocess.Popen([sys.executable, "-m", "compiler.cli", *common, "-o", str(killed)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    began = time.monotonic()
    while not ckpt.exists() and proc.poll() is None and time.monotonic() - began < 300:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not killed.exists(), "the run finished before it could be killed"
    from safetensors import safe_open
    with safe_open(str(ckpt), framework="pt") as f:
        step = int(f.metadata()["step"])
    assert 0 < step < 400
    resumed = _bgmc(*common, "-o", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {ckpt} at step {step}" in resumed.stderr
    a, b = _final_params(whole), _final_params(killed)
    assert np.array_equal(a["dec"], b["dec"]) and np.array_equal(a["z"], b["z"])


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "fit.nc"
    base = ["fit", "examples/vae.bgm", "--data", "examples/vae.json", "--method", "svi",
            "--batch", "100", "--iter", "20", "--draws", "5", "--no-progress", "-o", str(out)]
    assert _bgmc(*base).returncode == 0
    other = _bgmc(*base, "--seed", "9", "--resume")
    assert other.returncode != 0 and "written with seed = 1, this run has 9" in other.stderr
    assert "Traceback" not in other.stderr


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_vae_example_trains_and_samples(tmp_path: Path) -> None:
    out = tmp_path / "vae.nc"
    fit = _bgmc("fit", "examples/vae.bgm", "--data", "examples/vae.json", "--method", "svi",
                "--batch", "128", "--epochs", "30", "--draws", "20", "--no-progress",
                "-o", str(out))
    assert fit.returncode == 0, fit.stderr
    per_image = float(fit.stdout.split("(")[1].split(" per item")[0])
    # an untrained decoder gives about 64 log 2 = 44 nats per image; 30 epochs reach < 35
    assert -35 < per_image < -15, per_image
    assert (tmp_path / "vae.nc.loss.png").stat().st_size > 1000
    sample = _bgmc("sample", "examples/vae.bgm", "--data", "examples/vae.json", "--fit",
                   str(out), "-n", "3", "-o", str(tmp_path / "x.npz"))
    assert sample.returncode == 0, sample.stderr
    x = np.load(tmp_path / "x.npz")["x"]
    assert x.shape == (3, 1500, 64) and set(np.unique(x)) <= {0.0, 1.0}
    # reconstructions resemble their own images more than other images (pixel agreement)
    data = np.asarray(compile_file(ROOT / "examples/vae.bgm").bind(
        str(ROOT / "examples/vae.json"), device="cpu").data["x"])
    other = data[np.random.default_rng(0).permutation(len(data))]
    assert (x == data).mean() > (x == other).mean() + 0.05


def _reference_module() -> object:
    import importlib.util
    spec = importlib.util.spec_from_file_location("vae_reference",
                                                  ROOT / "bench/vae_reference.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _flat(seq: torch.nn.Sequential) -> torch.Tensor:
    """torch.nn.Linear layers as bgm's flat weight vector: each layer's [out, in] matrix
    row by row, then its bias."""
    return torch.cat([t.detach().reshape(-1) for layer in seq if isinstance(layer, torch.nn.Linear)
                      for t in (layer.weight, layer.bias)])


def test_vae_log_joint_and_elbo_equal_the_hand_written_vae() -> None:
    ref = _reference_module()
    torch.manual_seed(0)
    vae = ref.Vae(64).double()  # type: ignore[attr-defined]
    program = compile_file(ROOT / "examples/vae.bgm")
    model = program.bind(str(ROOT / "examples/vae.json"), device="cpu")
    x = model.data["x"].double()
    z = torch.randn(1500, 2, dtype=torch.float64)
    assert "enc" not in model.packer.slices  # the encoder belongs to the guide alone
    theta = model.packer.pack({"z": z, "dec": _flat(vae.dec)}, 0)
    with torch.no_grad():
        logits = vae.dec(z)
        want = float(-torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="sum") + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum())
    assert abs(float(model.log_prob(theta)) - want) < 1e-8 * abs(want)
    # the ELBO with the guide at the same weights and noise: the reference's formula
    svi = Svi(model, SviSettings(seed=1))
    with torch.no_grad():
        svi.params["dec"].copy_(_flat(vae.dec))
        svi.params["enc"].copy_(_flat(vae.enc))
    with torch.no_grad():
        torch.manual_seed(7)
        got = float(svi.elbo(4)[0])
        torch.manual_seed(7)
        expected = float(vae.elbo(x, 4))
    assert abs(got - expected) < 1e-8 * abs(expected)


def test_a_guide_for_a_positive_latent_gives_draws_on_its_support() -> None:
    """A LogNormal guide for a HalfNormal latent: the ELBO uses the guide's draws as they
    are (no transform, no Jacobian) and the fit's draws map back to them exactly."""
    y = np.random.default_rng(2).normal(0.0, 3.0, size=40)
    program = compile_string(
        "data N: int\ndata y: real[N]\nsigma ~ HalfNormal(5)\ny ~ Normal(0, sigma)\n"
        "guide:\n    param m: real\n    param s: real<lower=0>\n"
        "    sigma ~ LogNormal(m, s)\n")
    model = program.bind({"N": 40, "y": y.tolist()}, device="cpu")
    svi = Svi(model, SviSettings(steps=1500, lr=0.02, particles=4, seed=3))
    assert svi.meanfield == [] and sorted(svi.params) == ["m", "s"]
    svi.run()
    # the posterior of sigma is close to the sample sd's neighbourhood: log sigma ~ m
    assert abs(svi.params["m"].item() - math.log(np.sqrt((y ** 2).mean()))) < 0.1
    torch.manual_seed(1)
    draws = svi.draws(200)[0]
    sigma = model.constrain(draws)["sigma"]
    assert (sigma > 0).all()
    assert abs(torch.log(sigma).mean().item() - svi.params["m"].item()) < 0.05


def _heldout_elbo_bgm(program: object, svi: Svi, particles: int = 100) -> float:
    """bgm's ELBO per held-out image at the trained nets (the amortised guide applied to
    images it never saw), averaged over `particles` draws."""
    test = program.bind(str(ROOT / "examples/vae_test.json"), device="cpu",  # type: ignore[attr-defined]
                        dtype="float32")
    held = Svi(test, SviSettings(seed=99))
    with torch.no_grad():
        for name, value in svi.params.items():
            held.params[name].copy_(value)
    torch.manual_seed(123)
    return held.full_elbo(particles) / test.data["N"]


@pytest.mark.slow
def test_vae_heldout_elbo_matches_the_hand_written_vae_over_three_seeds() -> None:
    """examples/vae.bgm and bench/vae_reference.py, same architecture, Adam (lr 1e-3),
    batch 128 and 100 epochs: the held-out ELBO per image averaged over 3 seeds agrees
    within 2%."""
    ref = _reference_module()
    program = compile_file(ROOT / "examples/vae.bgm")
    train = program.bind(str(ROOT / "examples/vae.json"), device="cpu", dtype="float32")
    x = train.data["x"].float()
    x_test = program.bind(str(ROOT / "examples/vae_test.json"), device="cpu",
                          dtype="float32").data["x"].float()
    ours, theirs = [], []
    for seed in (1, 2, 3):
        svi = Svi(train, SviSettings(epochs=100, batch=128, lr=1e-3, seed=seed))
        svi.run()
        ours.append(_heldout_elbo_bgm(program, svi))
        vae = ref.train(x, 100, batch=128, lr=1e-3, seed=seed)  # type: ignore[attr-defined]
        torch.manual_seed(123)
        theirs.append(ref.heldout_elbo(vae, x_test))  # type: ignore[attr-defined]
    mean_ours, mean_theirs = float(np.mean(ours)), float(np.mean(theirs))
    assert abs(mean_ours - mean_theirs) < 0.02 * abs(mean_theirs), (ours, theirs)
    assert mean_ours > -40.0, ours  # it learned: an untrained decoder gives about -44


def test_a_non_finite_elbo_stops_the_step_before_any_update_and_names_its_term() -> None:
    """The step reads the loss and the finiteness of the ELBO and of the gradients in one
    copy to the host; a non-finite ELBO still stops before the optimiser moves."""
    model = compile_file(ROOT / "examples/linear_regression.bgm").bind(
        str(ROOT / "examples/linear_regression.json"), device="cpu")
    svi = Svi(model, SviSettings(batch=8, seed=1))
    svi.step()
    with torch.no_grad():
        svi.log_scale.fill_(math.inf)
    before = {k: v.detach().clone() for k, v in svi.named_tensors().items()}
    with pytest.raises(ModelError, match=r"the ELBO became non-finite at step 2: the "
                                         r"model's term 'prior alpha' \(linear_regression"):
        svi.step()
    assert svi.state.step == 1 and len(svi.state.losses) == 1
    for name, value in svi.named_tensors().items():
        assert torch.equal(value.detach(), before[name]), name
