"""Implicit models (rule 13 with a net that is not invertible): refused by likelihood
methods, trained adversarially against a critic net declared in the file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.api import compile_file, compile_string
from dsl.diagnostics import BgmError
from runtime.adversarial import Adversarial, AdversarialSettings
from runtime.errors import ModelError
from runtime.metrics import mmd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gan_ring.bgm"
TRAIN, TEST = ROOT / "examples" / "gan_ring.json", ROOT / "examples" / "gan_ring_test.json"


def _bgmc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compiler.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def _gaussian_draws(train: np.ndarray, n: int) -> np.ndarray:
    return np.random.default_rng(1).multivariate_normal(train.mean(0), np.cov(train.T), n)


@pytest.mark.parametrize("method", ["map", "mle", "nuts", "advi", "svi"])
def test_likelihood_methods_refuse_an_implicit_model(method: str, tmp_path: Path) -> None:
    run = _bgmc("fit", str(EXAMPLE), "--data", str(TRAIN), "--method", method, cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "implicit model" in run.stderr and "--method adversarial --critic" in run.stderr
    assert "gan_ring.bgm:" in run.stderr


def test_the_critic_must_be_a_net_that_scores_rows() -> None:
    model = compile_file(EXAMPLE).bind(str(TRAIN), device="cpu", dtype="float32")
    with pytest.raises(ModelError, match="--critic H: not a net of the model"):
        Adversarial(model, AdversarialSettings(critic="H"))
    with pytest.raises(ModelError, match="must output one number per row; it outputs 2"):
        Adversarial(model, AdversarialSettings(critic="G"))
    with pytest.raises(ModelError, match="--gan-loss must be one of"):
        Adversarial(model, AdversarialSettings(critic="D", loss="hinge"))


def test_an_implicit_model_with_other_unknowns_is_refused() -> None:
    src = ("data N: int\ndata x: real[N, 2]\nnet G = MLP(2, 8, 2)\nsigma ~ HalfNormal(1)\n"
           "for i in 1..N:\n    z[i]: real[2] ~ Normal(0, sigma)\n    x[i] = G(z[i])")
    with pytest.raises(BgmError, match="'sigma' is an unknown of an implicit model"):
        compile_string(src, "gan.bgm")


def test_the_gradient_penalty_vanishes_for_a_unit_slope_critic() -> None:
    model = compile_file(EXAMPLE).bind(str(TRAIN), device="cpu", dtype="float64")
    trainer = Adversarial(model, AdversarialSettings(critic="D", loss="wgan-gp"))
    real, fake = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    slope = torch.tensor([0.6, 0.8], dtype=torch.float64)
    trainer.critic = lambda x: x @ slope  # type: ignore[method-assign]
    loss = trainer._critic_loss(real, fake)
    assert float(loss) == pytest.approx(float((fake @ slope).mean() - (real @ slope).mean()),
                                        abs=1e-12)


def _trained_mmds(steps: int, loss: str) -> tuple[float, float]:
    """MMD to the held-out ring of the trained GAN's samples and of a fitted Gaussian's."""
    program = compile_file(EXAMPLE)
    model = program.bind(str(TRAIN), device="cpu", dtype="float32")
    trainer = Adversarial(model, AdversarialSettings(critic="D", steps=steps, lr=1e-3,
                                                     loss=loss))
    trainer.run()
    test = np.asarray(json.loads(TEST.read_text())["x"])
    train = np.asarray(json.loads(TRAIN.read_text())["x"])
    with torch.no_grad():
        drawn = trainer.fake(len(test)).numpy()
    return mmd(drawn, test), mmd(_gaussian_draws(train, len(test)), test)


def test_a_short_ns_gan_beats_a_gaussian_on_the_ring() -> None:
    """800 steps (the example runs 2000): samples are closer to held-out data (MMD)
    than draws of a Gaussian fitted to the training data."""
    gan, gaussian = _trained_mmds(800, "ns")
    assert gan < gaussian, (gan, gaussian)


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_cli_trains_writes_the_nets_and_samples(tmp_path: Path) -> None:
    run = _bgmc("fit", str(EXAMPLE), "--data", str(TRAIN), "--method", "adversarial",
                "--critic", "D", "--iter", "30", "--no-progress", "-o", "gan.nc", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "adversarial (ns): 30 steps" in run.stdout
    assert (tmp_path / "gan.nc.loss.png").exists()
    sample = _bgmc("sample", str(EXAMPLE), "--data", str(TEST), "--fit", "gan.nc", "-n", "2",
                   "-o", "draws.json", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    x = np.asarray(json.loads((tmp_path / "draws.json").read_text())["x"])
    assert x.shape == (2, 1000, 2) and np.isfinite(x).all()


@pytest.mark.slow  # the default ns loss: tests/test_generative_quality.py, on four sets
def test_a_trained_wgan_gp_is_far_closer_to_the_ring_than_a_gaussian() -> None:
    gan, gaussian = _trained_mmds(600, "wgan-gp")
    assert gan < 0.6 * gaussian, (gan, gaussian)
