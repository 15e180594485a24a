"""Figures of a fitted VAE (examples/vae.bgm): samples, reconstructions, the latent space.

    bgmc fit examples/vae.bgm --data examples/vae.json --method svi --batch 128 \
        --epochs 100 -o out/vae.nc
    python examples/vae_figures.py out/vae.nc -o out/

writes samples.png (images decoded from z ~ N(0, I) by the fitted decoder: `bgmc sample
--prior`), reconstructions.png (training images above, their reconstructions below:
the posterior predictive at the guide's z) and latent_space.png (each training image's
mean code under the guide, coloured by its digit, a label the model never saw).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from compiler.api import compile_file  # noqa: E402
from runtime.output import read_netcdf  # noqa: E402

HERE = Path(__file__).resolve().parent


def grid(images: np.ndarray, rows: int, path: Path, title: str) -> None:
    cols = len(images) // rows
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.4))
    for ax, image in zip(axes.flat, images, strict=True):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fit")
    parser.add_argument("-o", "--output", default=".")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    program = compile_file(HERE / "vae.bgm")
    data = str(HERE / "vae.json")
    idata = read_netcdf(args.fit)
    nets = {"dec": np.asarray(idata.nets["dec"])[0]}  # [1, weights]: one "draw"
    z = np.asarray(idata.posterior["z"])[0]  # [draws, N, 2]
    samples = program.sample(data, n=1, seed=args.seed, given=nets, prior=True)["x"][0]
    grid(samples[:64], 4, out / "samples.png", "samples: z ~ N(0, I), x ~ decoder(z)")
    recon = program.sample(data, n=1, seed=args.seed,
                           given={**nets, "z": z[:1]})["x"][0]
    x = np.asarray(json.loads(Path(data).read_text())["x"])
    grid(np.concatenate([x[:16], recon[:16]]), 2, out / "reconstructions.png",
         "training images (top) and reconstructions (bottom)")
    labels = np.asarray(json.loads((HERE / "vae_labels.json").read_text())["label"])
    mean = z.mean(0)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    points = ax.scatter(mean[:, 0], mean[:, 1], c=labels, cmap="tab10", s=6)
    fig.colorbar(points, ax=ax, label="digit (not seen by the model)")
    ax.set_xlabel("z[1]")
    ax.set_ylabel("z[2]")
    ax.set_title("latent space: each image's mean code under the guide")
    fig.savefig(out / "latent_space.png", dpi=100)
    plt.close(fig)
    print(f"wrote {out / 'samples.png'}, {out / 'reconstructions.png'}, "
          f"{out / 'latent_space.png'}")


if __name__ == "__main__":
    main()
