"""Training time of the flow and GAN examples at their default settings on the CPU
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import compile_file  # noqa: E402
from runtime.adversarial import Adversarial, AdversarialSettings  # noqa: E402
from runtime.svi import Svi, SviSettings  # noqa: E402

EXAMPLES = ROOT / "examples"
TARGET = 180.0


def mmd(a: np.ndarray, b: np.ndarray, bandwidth: float = 0.5) -> float:
    p, q = torch.as_tensor(a).double(), torch.as_tensor(b).double()

    def k(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(s, t) ** 2 / (2 * bandwidth ** 2)).mean()
    return float(k(p, p) + k(q, q) - 2 * k(p, q))


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


def main() -> None:
    print(f"training time at the examples' default settings, {torch.get_num_threads()} "
          "threads")
    flow()
    gan()


if __name__ == "__main__":
    main()
