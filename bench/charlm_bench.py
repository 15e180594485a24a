"""examples/charlm.bgm against the hand-written bench/charlm_reference.py: held-out bits
per character and time per training step, same architecture, optimiser, batch and steps.

    python bench/charlm_bench.py [--steps 1500] [--seeds 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import compile_file  # noqa: E402
from runtime.svi import Svi, SviSettings  # noqa: E402

MODEL = ROOT / "examples" / "charlm.bgm"
TRAIN = ROOT / "examples" / "charlm.json"
TEST = ROOT / "examples" / "charlm_test.json"


def reference() -> Any:
    spec = importlib.util.spec_from_file_location("charlm_reference",
                                                  ROOT / "bench" / "charlm_reference.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def train_bgm(steps: int, seed: int, batch: int = 32, lr: float = 3e-3) -> tuple[Any, Svi, float]:
    """The fitted SVI state of charlm.bgm and seconds per step."""
    program = compile_file(MODEL)
    model = program.bind(str(TRAIN), device="cpu", dtype="float32")
    svi = Svi(model, SviSettings(steps=steps, batch=batch, lr=lr, seed=seed))
    start = time.perf_counter()
    svi.run()
    return program, svi, (time.perf_counter() - start) / steps


def heldout_bits(program: Any, svi: Svi, data: Path = TEST) -> float:
    """Mean -log2 p of each held-out character after the first, at the fitted weights."""
    model = program.bind(str(data), device="cpu", dtype="float32")
    theta = model.packer.pack({k: v.detach()[None] for k, v in svi.params.items()}, 1)
    with torch.no_grad():
        lp = float(model.log_prob(theta)[0])
    return -lp / (model.data["T"] - 1) / math.log(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ref = reference()
    tokens, vocab = ref.load_tokens(TRAIN)
    test, _ = ref.load_tokens(TEST)
    rows = []
    for seed in range(1, args.seeds + 1):
        program, svi, bgm_step = train_bgm(args.steps, seed)
        start = time.perf_counter()
        model = ref.train(tokens, vocab, args.steps, seed=seed)
        ref_step = (time.perf_counter() - start) / args.steps
        rows.append((heldout_bits(program, svi), ref.bits_per_char(model, test), bgm_step,
                     ref_step))
        print(f"seed {seed}: bgm {rows[-1][0]:.4f} bits/char ({bgm_step * 1e3:.2f} ms/step), "
              f"hand-written {rows[-1][1]:.4f} ({ref_step * 1e3:.2f} ms/step)")
    bgm, hand = (statistics.mean(r[i] for r in rows) for i in (0, 1))
    speed = statistics.mean(r[3] for r in rows) / statistics.mean(r[2] for r in rows)
    print(f"mean held-out bits/char: bgm {bgm:.4f}, hand-written {hand:.4f}, difference "
          f"{bgm - hand:+.4f}; step time hand-written / bgm = {speed:.2f}")


if __name__ == "__main__":
    main()
