"""Draws digits from a fitted diffusion_digits.bgm and writes a PNG of 40 of them beside
40 training images.

    python examples/digits_figure.py out/dd.nc -o out/digits.png [--ddim 50]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
MODEL = HERE / "diffusion_digits.bgm"


def main() -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from figures_2d import save_png  # noqa: PLC0415  (this folder)

    from compiler.api import compile_file  # noqa: PLC0415
    from compiler.cli import _given  # noqa: PLC0415
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fit")
    parser.add_argument("-o", "--output", default="digits.png")
    parser.add_argument("--ddim", type=int, help="draw by DDIM over this many steps")
    args = parser.parse_args()
    program = compile_file(MODEL)
    given = _given(args.fit, program, 1, 1)
    data = {"N": 40, "x": [[0.0] * 64] * 40}  # the shape of 40 draws; values unused
    drawn = program.sample(data, n=1, seed=1, given=given, device="cpu",
                           ddim=args.ddim)["x"][0]
    train = np.asarray(json.loads((HERE / "diffusion_digits.json").read_text())["x"])[:40]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    for ax, images, title in ((axes[0], train, "training images"),
                              (axes[1], drawn, f"samples of {program.name}")):
        tiles = np.clip(images, -1, 1).reshape(5, 8, 8, 8).transpose(0, 2, 1, 3)
        ax.imshow(tiles.reshape(40, 64), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    save_png(fig, args.output)


if __name__ == "__main__":
    main()
