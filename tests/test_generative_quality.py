"""Deep generative models learn 2-D shapes at their default settings (slow step).

Each family (a NeuralSpline flow, a GAN, a diffusion model: the examples' models) is
fitted as `bgmc fit` fits it with no training flags, through `Program.fit` and the family
defaults (compiler/app/defaults.py), except for fewer epochs or steps to fit CI's time.
On moons, a checkerboard, two spirals and a mixture of 8 Gaussians (examples/toy_data.py:
2000 training points, sd 1), its samples must be closer to 1000 held-out points than a
Gaussian fitted to the training data, by half: the RBF MMD averaged over bandwidths 0.1,
0.2 and 0.4 (runtime/metrics.py), 1000 samples each. The GAN must also cover the
mixture: at least 7 of its 8 modes get 5% of the samples or more.

bench/generative_bench.py runs the same at the full defaults, with timings.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.api import compile_file
from runtime.metrics import mmd_multi, modes_covered

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
_spec = importlib.util.spec_from_file_location("toy_data", EXAMPLES / "toy_data.py")
toy_data = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(toy_data)  # type: ignore[union-attr]

# family: (example, fit options at CI's reduced length)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "flow": ("flow_moons.bgm", {"method": "svi", "epochs": 60}),
    "gan": ("gan_ring.bgm", {"method": "adversarial", "critic": "D", "max_iter": 2500}),
    "diffusion": ("diffusion_moons.bgm", {"method": "svi", "epochs": 1000}),
}


def _points(x: np.ndarray) -> dict[str, Any]:
    return {"N": len(x), "x": x.tolist()}


def _gaussian_mmd(train: np.ndarray, test: np.ndarray) -> float:
    draws = np.random.default_rng(1).multivariate_normal(train.mean(0), np.cov(train.T),
                                                         len(test))
    return mmd_multi(draws, test)


def fitted_samples(family: str, train: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """n samples of the family's example fitted to `train` at CI's settings."""
    example, options = FAMILIES[family]
    program = compile_file(EXAMPLES / example)
    fit = program.fit(_points(train), seed=seed, device="cpu", **options)
    # the nets as the fit saved them (a GAN's and a diffusion model's averaged weights),
    # one draw each: what `bgmc sample --fit` reads
    given = {name: np.asarray(fit.idata.nets[name])[0] for name in fit.idata.nets.data_vars}
    return program.sample(_points(train[:n]), n=1, seed=seed + 1, given=given,
                          device="cpu")["x"][0]


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(toy_data.SHAPES))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_held_out_mmd_is_under_half_a_fitted_gaussian_s(family: str, shape: str) -> None:
    train, test = toy_data.shape(shape, 2000, 0), toy_data.shape(shape, 1000, 100)
    drawn = fitted_samples(family, train, len(test))
    model, gaussian = mmd_multi(drawn, test), _gaussian_mmd(train, test)
    print(f"{family} on {shape}: MMD {model:.4f}, a fitted Gaussian's {gaussian:.4f}")
    assert model < 0.5 * gaussian, (family, shape, model, gaussian)
    if family == "gan" and shape == "eight_gaussians":
        covered = modes_covered(drawn, toy_data.EIGHT_CENTRES, at_least=0.05)
        assert covered >= 7, covered
