"""What makes flows, GANs and diffusion models learn at their defaults, unit by unit: the
weights' moving average (its update, the fit and the checkpoint keep it), the
learning-rate schedule, the GAN's R1 penalty and two time scales, the count of modes a
sampler covers, and the per-family training defaults `bgmc fit` fills in."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.api import compile_file
from compiler.app.defaults import FAMILIES, family_of, with_family_defaults
from compiler.app.fitting import FitSettings
from runtime import checkpoint
from runtime.adversarial import Adversarial, AdversarialSettings
from runtime.ema import Ema, decay_at
from runtime.metrics import mode_shares, modes_covered
from runtime.posterior import svi_result
from runtime.schedule import FLOOR, learning_rate
from runtime.svi import Svi, SviSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _moons(n: int) -> dict:
    return {"N": n, "x": json.loads((EXAMPLES / "diffusion_moons.json").read_text())["x"][:n]}


# ---- the moving average
def test_the_moving_average_warms_up_then_decays_at_its_rate() -> None:
    assert decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert decay_at(0.999, 100) == pytest.approx(101 / 110)
    assert decay_at(0.999, 100_000) == 0.999
    w = {"a": torch.tensor([0.0, 10.0])}
    ema = Ema(w, 0.9)
    want = w["a"].clone()
    for step in range(1, 6):
        w["a"] = w["a"] + 1.0
        ema.update(w, step)
        d = min(0.9, (1 + step) / (10 + step))
        want = d * want + (1 - d) * w["a"]
    assert torch.allclose(ema.shadow["a"], want, atol=1e-6)
    before = w["a"].clone()
    with ema.swapped(w):
        assert torch.equal(w["a"], ema.shadow["a"])
    assert torch.equal(w["a"], before)


def test_a_diffusion_fit_keeps_and_saves_the_average_of_its_denoiser() -> None:
    model = compile_file(EXAMPLES / "diffusion_moons.bgm").bind(_moons(64), device="cpu")
    svi = Svi(model, SviSettings(steps=30, batch=32, lr=1e-2, seed=1))
    assert svi.ema is not None and svi.ema.decay == 0.999
    svi.run()
    assert not torch.allclose(svi.ema.shadow["eps"], svi.params["eps"].detach())
    idata, _ = svi_result(svi)
    saved = torch.as_tensor(np.asarray(idata.nets["eps"])[0, 0])
    assert torch.allclose(saved, svi.ema.shadow["eps"], atol=1e-12)
    assert float(idata.attrs["ema"]) == 0.999
    flow = compile_file(EXAMPLES / "flow_moons.bgm").bind(_moons(64), device="cpu")
    assert Svi(flow, SviSettings(steps=1)).ema is None  # averages only where it helps


def test_the_average_survives_a_checkpoint_and_a_resumed_run_repeats_the_whole(
        tmp_path: Path) -> None:
    model = compile_file(EXAMPLES / "diffusion_moons.bgm").bind(_moons(64), device="cpu")
    settings = SviSettings(steps=12, batch=16, lr=1e-2, seed=2, schedule="cosine")
    whole = Svi(model, settings)
    whole.run()
    first = Svi(model, settings)
    for _ in range(5):
        first.step()
    checkpoint.save(first, tmp_path / "ck.safetensors")
    resumed = Svi(model, settings)
    checkpoint.load(resumed, tmp_path / "ck.safetensors")
    assert torch.equal(resumed.ema.shadow["eps"], first.ema.shadow["eps"])
    resumed.run()
    assert torch.equal(resumed.ema.shadow["eps"], whole.ema.shadow["eps"])
    assert torch.equal(resumed.params["eps"], whole.params["eps"])


# ---- the learning-rate schedule
def test_the_cosine_schedule_falls_from_the_rate_to_its_floor() -> None:
    rates = [learning_rate(1e-3, t, 101, "cosine") for t in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(FLOOR * 1e-3)
    assert rates[50] == pytest.approx(1e-3 * (FLOOR + (1 - FLOOR) / 2))
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert learning_rate(1e-3, 70, 101, "constant") == 1e-3


# ---- GANs: the R1 penalty and two time scales
def _gan(**options: object) -> Adversarial:
    model = compile_file(EXAMPLES / "gan_ring.bgm").bind(str(EXAMPLES / "gan_ring.json"),
                                                         device="cpu", dtype="float64")
    return Adversarial(model, AdversarialSettings(critic="D", **options))  # type: ignore[arg-type]


def test_the_critic_loss_carries_the_r1_penalty_on_real_rows() -> None:
    trainer = _gan()
    assert trainer.settings.r1 == 10.0
    g = torch.Generator().manual_seed(0)
    real, fake = (torch.randn(64, 2, dtype=torch.float64, generator=g) for _ in range(2))
    slope = torch.tensor([0.6, 0.8], dtype=torch.float64) * 3  # |grad D| = 3 everywhere
    trainer.critic = lambda x: x @ slope  # type: ignore[method-assign]
    plain = torch.nn.functional.softplus(-(real @ slope)).mean() + \
        torch.nn.functional.softplus(fake @ slope).mean()
    loss = trainer._critic_loss(real, fake).detach()
    assert float(loss) == pytest.approx(float(plain) + 0.5 * 10.0 * 9.0, rel=1e-12)


def test_the_critic_learns_twice_as_fast_with_adam_without_momentum() -> None:
    trainer = _gan(lr=1e-4)
    (d,), (g,) = trainer.opt_d.param_groups, trainer.opt_g.param_groups
    assert d["lr"] == pytest.approx(2e-4) and g["lr"] == pytest.approx(1e-4)
    assert d["betas"] == (0.0, 0.99) == g["betas"]
    wgan = _gan(lr=1e-4, loss="wgan-gp")
    assert wgan.opt_d.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert wgan.opt_d.param_groups[0]["betas"] == (0.0, 0.9) and wgan.settings.critic_steps == 5


def test_gan_samples_and_the_fit_use_the_generator_s_average() -> None:
    trainer = _gan(steps=3, batch=32)
    trainer.run()
    assert trainer.ema is not None
    with trainer.averaged():
        averaged = trainer.params["G"].detach().clone()
    assert not torch.equal(averaged, trainer.params["G"].detach())
    assert torch.equal(trainer.model.packer.unpack(trainer.theta()[0])["G"][0], averaged)


# ---- mode coverage
def test_mode_shares_count_the_samples_nearest_each_mode() -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array([[0.1, 0.0]] * 6 + [[9.0, 0.5]] * 3 + [[5.0, 5.1]])  # one between
    assert mode_shares(samples, centres).tolist() == [0.6, 0.3, 0.1]
    assert mode_shares(samples, centres, within=2.0).tolist() == [0.6, 0.3, 0.0]
    assert modes_covered(samples, centres, at_least=0.05, within=2.0) == 2
    assert modes_covered(samples, centres, at_least=0.05) == 3
    collapsed = np.repeat(centres[:1], 100, axis=0)
    assert modes_covered(collapsed, centres) == 1


# ---- per-family training defaults
@pytest.mark.parametrize("example, family", [
    ("flow_moons.bgm", "flow"), ("flow_realnvp_moons.bgm", "flow"),
    ("diffusion_moons.bgm", "diffusion"), ("gan_ring.bgm", "gan"), ("vae.bgm", None),
    ("coin.bgm", None)])
def test_each_family_is_recognised(example: str, family: str | None) -> None:
    assert family_of(compile_file(EXAMPLES / example)) == \
        (FAMILIES[family] if family else None)


def test_family_defaults_fill_only_what_the_user_left_out() -> None:
    flow = FAMILIES["flow"]
    settings, note = with_family_defaults(FitSettings(method="svi"), flow)
    assert (settings.epochs, settings.batch, settings.lr, settings.lr_schedule,
            settings.dtype) == (300, 256, 3e-3, "cosine", "float32")
    assert note == ("training a flow with its defaults: --epochs 300 --batch 256 --lr 0.003 "
                    "--lr-schedule cosine --dtype float32")
    given = FitSettings(method="svi", max_iter=50, lr=0.01, dtype="float64")
    settings, note = with_family_defaults(given, flow)
    assert (settings.max_iter, settings.epochs, settings.lr, settings.dtype) == \
        (50, None, 0.01, "float64")
    assert note == "training a flow with its defaults: --batch 256 --lr-schedule cosine"
    gan, _ = with_family_defaults(FitSettings(method="adversarial", critic="D"), FAMILIES["gan"])
    assert (gan.max_iter, gan.lr, gan.lr_schedule) == (5000, 2e-4, None)
    map_fit = FitSettings(method="map")
    assert with_family_defaults(map_fit, flow) == (map_fit, None)


def test_bgmc_fit_says_which_defaults_it_trained_with(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    from compiler.cli import main
    data = tmp_path / "moons.json"
    data.write_text(json.dumps(_moons(40)))
    assert main(["fit", str(EXAMPLES / "flow_moons.bgm"), "--data", str(data), "--method",
                 "svi", "--iter", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "note: training a flow with its defaults: --batch 256 --lr 0.003 --lr-schedule " \
        "cosine --dtype float32" in err
    assert math.isfinite(torch.get_num_threads())
