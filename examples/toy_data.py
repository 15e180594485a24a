"""Writes the 2-D sets of the flow and GAN examples, 2000 training and 1000 held-out
points each. Run once; the files are committed.
- flow_moons(_test).json and diffusion_moons(_test).json (the same points, so that the
  flow and the diffusion model can be compared): two moons (two interleaved half
  circles with Gaussian noise 0.1, as scikit-learn's make_moons), standardised;
- gan_ring(_test).json: a ring of 8 Gaussians (radius 2, sd 0.05), the usual GAN test
  of mode collapse.

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


def main() -> None:
    rng = np.random.default_rng(0)
    for name, n in (("flow_moons.json", 2000), ("flow_moons_test.json", 1000)):
        points = two_moons(n, rng).round(5)
        text = json.dumps({"N": n, "x": points.tolist()}) + "\n"
        for copy in (name, name.replace("flow_", "diffusion_")):
            (HERE / copy).write_text(text)
            print(f"{copy}: {n} points")
    rng = np.random.default_rng(1)
    for name, n in (("gan_ring.json", 2000), ("gan_ring_test.json", 1000)):
        points = ring(n, rng).round(5)
        (HERE / name).write_text(json.dumps({"N": n, "x": points.tolist()}) + "\n")
        print(f"{name}: {n} points")


if __name__ == "__main__":
    main()
