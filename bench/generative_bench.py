"""Training time and sample quality of each deep generative family at the full defaults
`bgmc fit` uses when no training flag is given (compiler/app/defaults.py), on the 2-D
sets of examples/toy_data.py: moons, a checkerboard, two spirals and a mixture of 8
Gaussians, 2000 training points and 1000 held out, each of sd 1.

Quality is the RBF MMD of 1000 samples to the held-out points, averaged over bandwidths
0.1, 0.2 and 0.4 (runtime/metrics.py), beside a Gaussian fitted to the training data
and a second draw of the data itself (the floor: what a perfect model scores). The GAN's
line on the mixture also counts the modes that get at least 5% of its samples. The
families are the examples' models: NeuralSpline and RealNVP flows (flow_moons.bgm,
flow_realnvp_moons.bgm), the GAN of gan_ring.bgm and the diffusion model of
diffusion_moons.bgm. tests/test_generative_quality.py checks the same at shorter runs.

    python bench/generative_bench.py                 # every family and set (~12 min)
    python bench/generative_bench.py spline moons    # a family and a set
    python bench/generative_bench.py digits          # the 8x8 digits diffusion example
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import compile_file  # noqa: E402
from runtime.metrics import mmd, mmd_multi, modes_covered  # noqa: E402

EXAMPLES = ROOT / "examples"
_spec = importlib.util.spec_from_file_location("toy_data", EXAMPLES / "toy_data.py")
toy_data = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(toy_data)  # type: ignore[union-attr]

# family: (label, example, fit options: the method only, so the family defaults apply)
FAMILIES = {
    "realnvp": ("flow (RealNVP, 6 layers)", "flow_realnvp_moons.bgm", {"method": "svi"}),
    "spline": ("flow (NeuralSpline)", "flow_moons.bgm", {"method": "svi"}),
    "gan": ("GAN (ns + R1)", "gan_ring.bgm", {"method": "adversarial", "critic": "D"}),
    "diffusion": ("diffusion (DDPM)", "diffusion_moons.bgm", {"method": "svi"}),
}


def _points(x: np.ndarray) -> dict[str, Any]:
    return {"N": len(x), "x": x.tolist()}


def _fit_and_sample(example: str, options: dict[str, Any], train: np.ndarray,
                    n: int) -> tuple[float, np.ndarray]:
    program = compile_file(EXAMPLES / example)
    start = time.perf_counter()
    fit = program.fit(_points(train), seed=1, device="cpu", **options)
    seconds = time.perf_counter() - start
    given = {name: np.asarray(fit.idata.nets[name])[0] for name in fit.idata.nets.data_vars}
    drawn = program.sample(_points(train[:n]), n=1, seed=2, given=given, device="cpu")["x"][0]
    return seconds, drawn


def _cell(seconds: float | None, value: float) -> str:
    return f"{value:.4f}" + (f" ({seconds:4.0f} s)" if seconds is not None else "")


def run(families: list[str], shapes: list[str]) -> None:
    rows: dict[str, list[str]] = {}
    notes = []
    for shape in shapes:
        train, test = toy_data.shape(shape, 2000, 0), toy_data.shape(shape, 1000, 100)
        gauss = np.random.default_rng(1).multivariate_normal(train.mean(0), np.cov(train.T),
                                                             len(test))
        rows.setdefault("Gaussian (fitted)", []).append(_cell(None, mmd_multi(gauss, test)))
        rows.setdefault("the data again (floor)", []).append(
            _cell(None, mmd_multi(toy_data.shape(shape, 1000, 200), test)))
        for key in families:
            label, example, options = FAMILIES[key]
            seconds, drawn = _fit_and_sample(example, options, train, len(test))
            rows.setdefault(label, []).append(_cell(seconds, mmd_multi(drawn, test)))
            print(f"  {label} on {shape}: {rows[label][-1]}", flush=True)
            if shape == "eight_gaussians":
                covered = modes_covered(drawn, toy_data.EIGHT_CENTRES, at_least=0.05)
                notes.append(f"{label} on eight_gaussians: {covered} of 8 modes get at "
                             "least 5% of the samples")
    width = max(len(k) for k in rows)
    print(f"\nMMD to held-out points (training time) at the default settings\n"
          f"{'':{width}}  " + "  ".join(f"{s:>17}" for s in shapes))
    for label, cells in rows.items():
        print(f"{label:{width}}  " + "  ".join(f"{c:>17}" for c in cells))
    for line in notes:
        print(line)


def digits() -> None:
    """The digits diffusion example with the settings in its header."""
    program = compile_file(EXAMPLES / "diffusion_digits.bgm")
    load = lambda name: np.asarray(json.loads((EXAMPLES / name).read_text())["x"])  # noqa: E731
    train, test = load("diffusion_digits.json"), load("diffusion_digits_test.json")
    start = time.perf_counter()
    fit = program.fit(str(EXAMPLES / "diffusion_digits.json"), method="svi", seed=1,
                      device="cpu", batch=128, epochs=600, lr=1e-3)
    seconds = time.perf_counter() - start
    given = {"eps": np.asarray(fit.idata.nets["eps"])[0]}
    drawn = program.sample(str(EXAMPLES / "diffusion_digits_test.json"), n=1, seed=2,
                           given=given, device="cpu")["x"][0]
    gauss = np.random.default_rng(1).multivariate_normal(train.mean(0), np.cov(train.T),
                                                         len(test)).clip(-1, 1)
    print(f"diffusion_digits {seconds:4.1f} s  MMD (bandwidth 4) {mmd(drawn, test, 4.0):.4f} "
          f"(Gaussian, clipped to [-1, 1]: {mmd(gauss, test, 4.0):.4f})")


def main() -> None:
    args = sys.argv[1:]
    if args == ["digits"]:
        digits()
        return
    families = [a for a in args if a in FAMILIES] or list(FAMILIES)
    shapes = [a for a in args if a in toy_data.SHAPES] or list(toy_data.SHAPES)
    unknown = [a for a in args if a not in FAMILIES and a not in toy_data.SHAPES]
    if unknown:
        sys.exit(f"unknown family or set '{unknown[0]}': families {', '.join(FAMILIES)}; "
                 f"sets {', '.join(toy_data.SHAPES)}; or 'digits'")
    run(families, shapes)


if __name__ == "__main__":
    main()
