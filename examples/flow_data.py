"""Writes flow_moons.json and flow_moons_test.json: the two-moons set (two interleaved half
circles with Gaussian noise 0.1, as scikit-learn's make_moons), standardised, 2000
training and 1000 held-out points, for flow_moons.bgm. Run once; the files are committed.

    python examples/flow_data.py
"""
from __future__ import annotations

import json
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


def main() -> None:
    rng = np.random.default_rng(0)
    for name, n in (("flow_moons.json", 2000), ("flow_moons_test.json", 1000)):
        points = two_moons(n, rng).round(5)
        (HERE / name).write_text(json.dumps({"N": n, "x": points.tolist()}) + "\n")
        print(f"{name}: {n} points")


if __name__ == "__main__":
    main()
