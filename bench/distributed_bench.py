"""Items per second of SVI training on one machine: the VAE (128 images a step), the
char-LM (32 windows a step) and the diffusion model of two moons (256 points a step),
each with 1 process x 2 threads, 1 process x 1 thread and 2 processes x 1 thread
(data-parallel, runtime/distributed.py, gloo on localhost).

    python bench/distributed_bench.py [--steps 30]

Each configuration is a fresh process group started by torchrun's launcher; the first
steps (warm-up) are not timed; rank 0 prints. An item is a row of the minibatch (an image,
a window of characters, a point). On a 2-core machine two processes cannot beat one
process using both cores by much: the step of these small models is mostly per-step
overhead (Python, autograd, small matrix products), which data parallelism does not
share, plus one all-reduce of every gradient per step. The numbers show the
all-reduce's cost (`allreduce_ms`) beside the step time, from which a GPU estimate
follows: see the printed note.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"vae": ("vae.bgm", "vae.json", 128, "float32"),
          "charlm": ("charlm.bgm", "charlm.json", 32, "float32"),
          "diffusion": ("diffusion_moons.bgm", "diffusion_moons.json", 256, "float32")}
CONFIGS = (("1 process x 2 threads", 1, 2), ("1 process x 1 thread", 1, 1),
           ("2 processes x 1 thread", 2, 1))
WARMUP = 3


def worker(name: str, steps: int, threads: int) -> None:
    """Train `name` for WARMUP + steps steps on this process group; rank 0 prints."""
    sys.path.insert(0, str(ROOT))
    import torch

    from compiler.api import compile_file
    from runtime.distributed import World
    from runtime.svi import Svi, SviSettings
    torch.set_num_threads(threads)
    bgm, data, batch, dtype = MODELS[name]
    model = compile_file(str(ROOT / "examples" / bgm)).bind(str(ROOT / "examples" / data),
                                                             device="cpu", dtype=dtype)
    world = World.from_env(model.device)
    svi = Svi(model, SviSettings(steps=WARMUP + steps, batch=batch, lr=1e-3, seed=1))
    for _ in range(WARMUP):
        svi.step()
    began = time.perf_counter()
    for _ in range(steps):
        svi.step()
    seconds = time.perf_counter() - began
    grads = [p.grad for p in svi.parameters() if p.grad is not None]
    size = sum(g.numel() for g in grads)
    reduce_s = 0.0
    if world.distributed:  # the all-reduce alone, as in a step
        began = time.perf_counter()
        for _ in range(20):
            world.sum_(grads)
        reduce_s = (time.perf_counter() - began) / 20
    if world.writer:
        print(json.dumps({"items_per_s": steps * batch / seconds,
                          "step_ms": 1000 * seconds / steps, "params": size,
                          "allreduce_ms": 1000 * reduce_s}))
    if world.distributed:
        torch.distributed.destroy_process_group()


def run(name: str, steps: int, nproc: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    me = [str(Path(__file__).resolve()), "--worker", name, "--steps", str(steps),
          "--threads", str(threads)]
    cmd = [sys.executable, *me] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={nproc}", *me]
    for _ in range(2):  # once more if the rendezvous failed (a port taken meanwhile)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode == 0:
            return json.loads(out.stdout.strip().splitlines()[-1])
    raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.threads)
        return
    print(f"{'model':10} {'configuration':24} {'items/s':>9} {'step ms':>8} "
          f"{'all-reduce ms':>14} {'params':>8}")
    for name in args.models.split(","):
        for label, nproc, threads in CONFIGS:
            r = run(name, args.steps, nproc, threads)
            print(f"{name:10} {label:24} {r['items_per_s']:9.0f} {r['step_ms']:8.1f} "
                  f"{r['allreduce_ms'] or float('nan'):14.2f} {r['params']:8d}", flush=True)


if __name__ == "__main__":
    main()
