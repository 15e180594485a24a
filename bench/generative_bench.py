"""Training time of the flow, GAN and diffusion examples at their default settings on the CPU
(target: under 3 minutes each), with the quality numbers the tests check: held-out
log-likelihood per point and RBF MMD to the held-out set, against a Gaussian fitted to
the training data.

    python bench/generative_bench.py
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import compile_file  # noqa: E402
from runtime.adversarial import Adversarial, AdversarialSettings  # noqa: E402
from runtime.metrics import mmd  # noqa: E402
from runtime.svi import Svi, SviSettings  # noqa: E402

EXAMPLES = ROOT / "examples"
TARGET = 180.0


def load(name: str) -> np.ndarray:
    return np.asarray(json.loads((EXAMPLES / name).read_text())["x"])


def gaussian(train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    mean, cov = train.mean(0), np.cov(train.T)
    ll = torch.distributions.MultivariateNormal(torch.tensor(mean), torch.tensor(cov)) \
        .log_prob(torch.tensor(test)).mean()
    draws = np.random.default_rng(1).multivariate_normal(mean, cov, len(test))
    return float(ll), mmd(draws, test)


def flow() -> None:
    program = compile_file(EXAMPLES / "flow_moons.bgm")
    model = program.bind(str(EXAMPLES / "flow_moons.json"), device="cpu", dtype="float32")
    start = time.perf_counter()
    svi = Svi(model, SviSettings(epochs=150, batch=256, lr=3e-3, seed=1))
    svi.run()
    seconds = time.perf_counter() - start
    w = svi.params["f"].detach().double()
    held = program.bind(str(EXAMPLES / "flow_moons_test.json"), device="cpu")
    test, train = load("flow_moons_test.json"), load("flow_moons.json")
    ll = float(held.log_prob(held.packer.pack({"f": w[None]}, 1))[0]) / len(test)
    drawn = program.sample(str(EXAMPLES / "flow_moons_test.json"), n=1, seed=2,
                           given={"f": w[None].numpy()}, device="cpu")["x"][0]
    g_ll, g_mmd = gaussian(train, test)
    print(f"flow_moons  {seconds:7.1f} s ({seconds / TARGET:.2f} of the target)  held-out "
          f"log-lik {ll:.3f} (Gaussian {g_ll:.3f}), MMD {mmd(drawn, test):.4f} "
          f"(Gaussian {g_mmd:.4f})")


def gan() -> None:
    model = compile_file(EXAMPLES / "gan_ring.bgm").bind(str(EXAMPLES / "gan_ring.json"),
                                                         device="cpu", dtype="float32")
    start = time.perf_counter()
    trainer = Adversarial(model, AdversarialSettings(critic="D", steps=2000, batch=256,
                                                     lr=1e-3, seed=1))
    trainer.run()
    seconds = time.perf_counter() - start
    test, train = load("gan_ring_test.json"), load("gan_ring.json")
    with torch.no_grad():
        drawn = trainer.fake(len(test)).numpy()
    print(f"gan_ring    {seconds:7.1f} s ({seconds / TARGET:.2f} of the target)  MMD "
          f"{mmd(drawn, test):.4f} (Gaussian {gaussian(train, test)[1]:.4f})")


def _diffusion(stem: str, epochs: int, batch: int, lr: float) -> tuple[Any, torch.Tensor,
                                                                      float]:
    program = compile_file(EXAMPLES / f"{stem}.bgm")
    model = program.bind(str(EXAMPLES / f"{stem}.json"), device="cpu", dtype="float32")
    start = time.perf_counter()
    svi = Svi(model, SviSettings(epochs=epochs, batch=batch, lr=lr, seed=1))
    svi.run()
    return program, svi.params["eps"].detach().double(), time.perf_counter() - start


def diffusion_moons() -> None:
    program, w, seconds = _diffusion("diffusion_moons", 1000, 256, 5e-4)
    test, train = load("diffusion_moons_test.json"), load("diffusion_moons.json")
    drawn = {k: program.sample(str(EXAMPLES / "diffusion_moons_test.json"), n=1, seed=2,
                               given={"eps": w[None].numpy()}, device="cpu",
                               ddim=k)["x"][0] for k in (None, 50)}
    print(f"diffusion_moons {seconds:5.1f} s ({seconds / TARGET:.2f} of the target)  MMD "
          f"DDPM {mmd(drawn[None], test):.4f}, DDIM-50 {mmd(drawn[50], test):.4f} "
          f"(Gaussian {gaussian(train, test)[1]:.4f})")


def diffusion_digits() -> None:
    program, w, seconds = _diffusion("diffusion_digits", 600, 128, 1e-3)
    test, train = load("diffusion_digits_test.json"), load("diffusion_digits.json")
    drawn = program.sample(str(EXAMPLES / "diffusion_digits_test.json"), n=1, seed=2,
                           given={"eps": w[None].numpy()}, device="cpu")["x"][0]
    gauss = np.random.default_rng(1).multivariate_normal(train.mean(0), np.cov(train.T),
                                                         len(test)).clip(-1, 1)
    print(f"diffusion_digits {seconds:4.1f} s ({seconds / TARGET:.2f} of the target)  MMD "
          f"(bandwidth 4) {mmd(drawn, test, 4.0):.4f} (Gaussian, clipped to [-1, 1]: "
          f"{mmd(gauss, test, 4.0):.4f})")


def main() -> None:
    only = set(sys.argv[1:])  # e.g. diffusion_moons: run only these
    print(f"training time at the examples' default settings, {torch.get_num_threads()} "
          "threads")
    for bench in (flow, gan, diffusion_moons, diffusion_digits):
        if not only or bench.__name__ in only:
            bench()


if __name__ == "__main__":
    main()
