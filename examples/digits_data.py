"""Writes the data of the digits diffusion example: scikit-learn's 8x8 digits (1797
images, pixel values 0..16) scaled to [-1, 1] (a diffusion model's noise has unit scale,
so its data should too), the first 1500 for training and the other 297 held out. Run
once (needs scikit-learn, a dev dependency); the files are committed.

    python examples/digits_data.py
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = 1500


def main() -> None:
    from sklearn.datasets import load_digits  # noqa: PLC0415
    images = load_digits().data / 8.0 - 1.0  # k / 8 - 1: exact in three decimals
    for name, rows in (("diffusion_digits.json", images[:TRAIN]),
                       ("diffusion_digits_test.json", images[TRAIN:])):
        values = [[round(float(v), 3) for v in row] for row in rows]
        text = json.dumps({"N": len(values), "x": values}, separators=(",", ":"))
        (HERE / name).write_text(text + "\n")
        print(f"{name}: {len(values)} images")


if __name__ == "__main__":
    main()
