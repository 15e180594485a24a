"""The VAE of examples/vae.bgm: time per training step (minibatch of 128 binarised 8x8
digits: ELBO, gradient, Adam update) for bgm's SVI, Pyro's SVI with Trace_ELBO, and the
hand-written PyTorch VAE of bench/vae_reference.py, with the same nets, dtype and batch;
and the time per epoch (11 steps of 128 over the 1500 training images).

    python bench/vae_bench.py [--quick] [--dtype float32|float64] [--skip pyro]

Each time is the median over repeated blocks of steps after a warm-up; ratios are
other / bgm (> 1 means bgm is faster). Issue 5's targets: bgm within 1.2x of the
hand-written step (ratio >= 0.83) and at least 3x faster than Pyro.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")


def _reference() -> object:
    spec = importlib.util.spec_from_file_location("vae_reference", ROOT / "bench/vae_reference.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def per_step(steps_of: dict[str, Callable[[], object]], steps: int,
             repeats: int) -> dict[str, float]:
    """Median seconds per step of each workload, timed in interleaved rounds (so that a
    slow spell of a shared machine falls on all of them alike)."""
    for step in steps_of.values():
        for _ in range(10):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps_of}
    for _ in range(repeats):
        for name, step in steps_of.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(t) for name, t in times.items()}


def bgm_step(dtype: str) -> Callable[[], object]:
    from compiler.api import compile_file
    from runtime.svi import Svi, SviSettings
    model = compile_file(ROOT / "examples/vae.bgm").bind(str(ROOT / "examples/vae.json"),
                                                         device="cpu", dtype=dtype)
    svi = Svi(model, SviSettings(batch=128, seed=1))
    return svi.step


def data(dtype: torch.dtype) -> torch.Tensor:
    import json
    return torch.tensor(json.loads((ROOT / "examples/vae.json").read_text())["x"], dtype=dtype)


def reference_step(x: torch.Tensor) -> Callable[[], object]:
    ref = _reference()
    torch.manual_seed(1)
    vae = ref.Vae(x.shape[1]).to(x.dtype)  # type: ignore[attr-defined]
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    n, batch = x.shape[0], 128
    state = {"order": torch.randperm(n), "at": 0}

    def step() -> None:
        if state["at"] + batch > n:
            state["order"], state["at"] = torch.randperm(n), 0
        rows = x[state["order"][state["at"]:state["at"] + batch]]
        state["at"] += batch
        opt.zero_grad()
        loss = -vae.elbo(rows) * (n / batch)
        loss.backward()
        opt.step()
    return step


def pyro_step(x: torch.Tensor) -> Callable[[], object]:
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam
    ref = _reference()
    pyro.clear_param_store()
    torch.manual_seed(1)
    vae = ref.Vae(x.shape[1]).to(x.dtype)  # type: ignore[attr-defined]
    n, batch = x.shape[0], 128

    def model(rows: torch.Tensor, idx: torch.Tensor) -> None:
        pyro.module("dec", vae.dec)
        with pyro.plate("data", n, subsample=idx):
            z = pyro.sample("z", pdist.Normal(torch.zeros(len(idx), 2, dtype=x.dtype), 1.0)
                            .to_event(1))
            pyro.sample("x", pdist.Bernoulli(logits=vae.dec(z)).to_event(1), obs=rows)

    def guide(rows: torch.Tensor, idx: torch.Tensor) -> None:
        pyro.module("enc", vae.enc)
        with pyro.plate("data", n, subsample=idx):
            h = vae.enc(rows)
            pyro.sample("z", pdist.Normal(h[:, :2], torch.nn.functional.softplus(h[:, 2:]))
                        .to_event(1))

    svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
    state = {"order": torch.randperm(n), "at": 0}

    def step() -> None:
        if state["at"] + batch > n:
            state["order"], state["at"] = torch.randperm(n), 0
        idx = state["order"][state["at"]:state["at"] + batch]
        state["at"] += batch
        svi.step(x[idx], idx)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--skip", nargs="*", default=[], choices=["pyro"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, repeats = (20, 3) if args.quick else (100, 15)
    dtype = getattr(torch, args.dtype)
    x = data(dtype)
    workloads = {"bgm": bgm_step(args.dtype), "hand-written PyTorch": reference_step(x)}
    if "pyro" not in args.skip:
        workloads["Pyro Trace_ELBO"] = pyro_step(x)
    times = per_step(workloads, steps, repeats)
    print(f"VAE step, batch 128 of 1500 binarised 8x8 digits, {args.dtype}, 1 thread")
    print(f"{'workload':24} {'ms/step':>9} {'s/epoch':>9} {'other/bgm':>10}")
    for name, t in times.items():
        ratio = "" if name == "bgm" else f"{t / times['bgm']:10.2f}"
        print(f"{name:24} {1e3 * t:9.3f} {11 * t:9.3f} {ratio}")


if __name__ == "__main__":
    main()
