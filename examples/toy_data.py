"""Writes the 2-D sets of the flow and GAN examples, 2000 training and 1000 held-out
points each. Run once; the files are committed.
- flow_moons(_test).json, flow_realnvp_moons(_test).json and diffusion_moons(_test).json
  (the same points, so that the flows and the diffusion model can be compared): two
  moons (two interleaved half circles with Gaussian noise 0.1, as scikit-learn's
  make_moons), standardised;
- gan_ring(_test).json: a ring of 8 Gaussians (radius 2, sd 0.05), the usual GAN test
  of mode collapse.

`SHAPES` are the 2-D sets the generative checks fit (tests/test_generative_quality.py,
bench/generative_bench.py): moons, a checkerboard, two spirals and a mixture of 8
Gaussians, each centred and scaled to an sd of 1 per coordinate, drawn by `shape(name, n,
seed)`; `EIGHT_CENTRES` are the mixture's modes, for counting the modes a GAN covers.

    python examples/toy_data.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def two_moons(n: int, rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    angle = rng.uniform(0.0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    return (points - [0.5, 0.25]) / [0.87, 0.5]  # about zero mean, unit scale


def ring(n: int, rng: np.random.Generator, modes: int = 8, radius: float = 2.0,
         sd: float = 0.05) -> np.ndarray:
    angle = 2 * math.pi * rng.integers(0, modes, n) / modes
    centres = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + sd * rng.standard_normal((n, 2))


def checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the 8 black squares of a 4 x 4 board over [-2, 2]^2 (FFJORD's)."""
    x = rng.uniform(-2.0, 2.0, n)
    y = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x) % 2
    return np.stack([x, y], axis=1)


def two_spirals(n: int, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    """Two interleaved spirals of one and a half turns, uniform noise of width `noise`."""
    turn = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3 * np.pi
    side = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    arm = np.stack([-np.cos(turn) * turn, np.sin(turn) * turn], axis=1)
    return side * arm + noise * rng.uniform(0.0, 1.0, (n, 2))


# a ring of 8 modes of sd 0.1 whose radius gives the mixture an sd of about 1 per coordinate
EIGHT_RADIUS, EIGHT_SD = math.sqrt(2 * (1 - 0.1 ** 2)), 0.1
EIGHT_CENTRES = EIGHT_RADIUS * np.array([[math.cos(2 * math.pi * k / 8),
                                          math.sin(2 * math.pi * k / 8)] for k in range(8)])


def eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    return EIGHT_CENTRES[rng.integers(0, 8, n)] + EIGHT_SD * rng.standard_normal((n, 2))


def _standardised(points: np.ndarray) -> np.ndarray:
    """Centred, and scaled by one number so that the sd per coordinate is about 1 (the
    shape is kept: both coordinates share the scale)."""
    centred = points - points.mean(0)
    return centred / np.sqrt((centred ** 2).mean())


SHAPES = {"moons": lambda n, rng: _standardised(two_moons(n, rng)),
          "checkerboard": lambda n, rng: _standardised(checkerboard(n, rng)),
          "spirals": lambda n, rng: _standardised(two_spirals(n, rng)),
          "eight_gaussians": eight_gaussians}  # already of sd 1, centred on its modes


def shape(name: str, n: int, seed: int) -> np.ndarray:
    """n points of the set `name` (one of SHAPES) from the seed."""
    return SHAPES[name](n, np.random.default_rng(seed))


def main() -> None:
    rng = np.random.default_rng(0)
    for name, n in (("flow_moons.json", 2000), ("flow_moons_test.json", 1000)):
        points = two_moons(n, rng).round(5)
        text = json.dumps({"N": n, "x": points.tolist()}) + "\n"
        for copy in (name, name.replace("flow_", "flow_realnvp_"),
                     name.replace("flow_", "diffusion_")):
            (HERE / copy).write_text(text)
            print(f"{copy}: {n} points")
    rng = np.random.default_rng(1)
    for name, n in (("gan_ring.json", 2000), ("gan_ring_test.json", 1000)):
        points = ring(n, rng).round(5)
        (HERE / name).write_text(json.dumps({"N": n, "x": points.tolist()}) + "\n")
        print(f"{name}: {n} points")


if __name__ == "__main__":
    main()
