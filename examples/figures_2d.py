"""Draws 2000 points from a fitted 2-D example (flow_moons.bgm, gan_ring.bgm) and writes
a PNG of them beside its training data.

    python examples/figures_2d.py examples/flow_moons.bgm out/flow.nc -o out/flow.png
    python examples/figures_2d.py examples/diffusion_moons.bgm out/dm.nc -o out/dm.png --ddim 50
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from compiler.api import compile_file  # noqa: PLC0415
    from compiler.cli import _given  # noqa: PLC0415
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the .bgm file; its data is the .json beside it")
    parser.add_argument("fit")
    parser.add_argument("-o", "--output", default="flow_samples.png")
    parser.add_argument("--ddim", type=int, help="a diffusion model: draw by DDIM over this "
                                                 "many steps")
    args = parser.parse_args()
    program = compile_file(args.model)
    data = Path(args.model).with_suffix(".json")
    given = _given(args.fit, program, 1, 1)
    drawn = program.sample(str(data), n=1, seed=1, given=given, device="cpu",
                           ddim=args.ddim)["x"][0]
    train = np.asarray(json.loads(data.read_text())["x"])
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    for ax, points, title in ((axes[0], train, "training data"),
                              (axes[1], drawn, f"samples of {program.name}")):
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
    save_png(fig, args.output)


def save_png(fig: Any, path: str) -> None:
    """The figure as a PNG, written whole or not at all."""
    import io  # noqa: PLC0415

    from runtime.files import write_atomic  # noqa: PLC0415
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
