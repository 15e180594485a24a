"""NUTS speed: ESS per second of bgm, NumPyro and Pyro on the same models and data.

    python bench/nuts_bench.py [--quick]

Workloads (issue 3): eight schools non-centred, 4 chains x (1000 warmup + 1000 draws),
and Bayesian logistic regression with N = 20 000, D = 20 (same settings). ESS/s is the
smallest bulk ESS over all parameters divided by wall-clock seconds of warmup + sampling
(compilation included for NumPyro's JIT, as a user waits for it). Competitors that are
not installed are skipped (`pip install numpyro pyro-ppl`).

The `torch` row is the plain-PyTorch baseline: bgm's own NUTS driven by a hand-written
log density (what a user would write without bgm), so `bgm / torch` measures what the
compiled model costs over hand-written PyTorch, and the other ratios measure the sampler.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")


def min_ess(samples: dict[str, np.ndarray]) -> float:
    """samples: name -> [chains, draws, ...]."""
    from runtime.output import arviz
    az = arviz()
    ds = az.convert_to_dataset({k: v for k, v in samples.items()})
    ess = az.ess(ds, method="bulk")
    return float(min(np.min(np.asarray(ess[k])) for k in ess.data_vars))


def logistic_data(n: int = 20000, d: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w)))).astype(int)
    return {"N": n, "D": d, "X": x, "y": y}


LOGISTIC_BGM = """
model BayesLogistic
data N: int
data D: int
data X: real[N, D]
data y: int<lower=0, upper=1>[N]
alpha ~ Normal(0, 5)
beta: real[D] ~ Normal(0, 1)
y ~ Bernoulli(logits=alpha + X @ beta)
"""


def bgm_run(model_src: Path | str, data: dict | str, chains: int, warmup: int, draws: int):
    from compiler.api import compile_file, compile_string
    from runtime import posterior
    from runtime.nuts import NutsSettings
    program = compile_file(model_src) if isinstance(model_src, Path) else \
        compile_string(model_src)
    model = program.bind(data, device="cpu")
    start = time.perf_counter()
    idata = posterior.run_nuts(model, NutsSettings(chains=chains, warmup=warmup, draws=draws))
    seconds = time.perf_counter() - start
    latents = {k: np.asarray(idata.posterior[k]) for k in model.latent_names}
    return seconds, latents


def torch_run(kind: str, data: dict, chains: int, warmup: int, draws: int):
    """bgm's NUTS on a hand-written log density over the same unconstrained coordinates."""
    import torch

    from runtime import nuts
    from runtime.nuts import NutsSettings
    dt = torch.float64
    if kind == "eight":
        sigma, y = torch.tensor(data["sigma"], dtype=dt), torch.tensor(data["y"], dtype=dt)
        j = int(data["J"])

        def log_prob(q: torch.Tensor) -> torch.Tensor:
            mu, log_tau, eta = q[..., 0], q[..., 1], q[..., 2:]
            tau = log_tau.exp()
            theta = mu[..., None] + tau[..., None] * eta
            return (-0.5 * (mu / 5) ** 2 - torch.log1p((tau / 5) ** 2) + log_tau
                    - 0.5 * (eta ** 2).sum(-1) - 0.5 * (((y - theta) / sigma) ** 2).sum(-1))
        dim, names = 2 + j, {"mu": slice(0, 1), "tau": slice(1, 2), "eta": slice(2, 2 + j)}
    else:
        x, y = torch.tensor(data["X"], dtype=dt), torch.tensor(data["y"], dtype=dt)

        def log_prob(q: torch.Tensor) -> torch.Tensor:
            alpha, beta = q[..., 0], q[..., 1:]
            logits = alpha[..., None] + beta @ x.T
            return (-0.5 * (alpha / 5) ** 2 - 0.5 * (beta ** 2).sum(-1)
                    + (y * logits - torch.nn.functional.softplus(logits)).sum(-1))
        dim, names = 1 + x.shape[1], {"alpha": slice(0, 1), "beta": slice(1, 1 + x.shape[1])}
    init = (torch.rand(chains, dim, dtype=dt, generator=torch.Generator().manual_seed(1))
            * 4 - 2)
    start = time.perf_counter()
    result = nuts.sample(log_prob, init, NutsSettings(chains=chains, warmup=warmup,
                                                      draws=draws))
    seconds = time.perf_counter() - start
    draws_ = result.draws.numpy()
    out = {k: draws_[..., sl] for k, sl in names.items()}
    if kind == "eight":
        out["tau"] = np.exp(out["tau"])
    return seconds, out


def numpyro_run(kind: str, data: dict, chains: int, warmup: int, draws: int):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from numpyro.infer import MCMC, NUTS
    numpyro.set_host_device_count(chains)
    jax.config.update("jax_enable_x64", True)

    def eight(J, sigma, y=None):
        mu = numpyro.sample("mu", nd.Normal(0, 5))
        tau = numpyro.sample("tau", nd.HalfCauchy(5))
        with numpyro.plate("J", J):
            eta = numpyro.sample("eta", nd.Normal(0, 1))
            numpyro.sample("y", nd.Normal(mu + tau * eta, sigma), obs=y)

    def logistic(X, y=None):
        alpha = numpyro.sample("alpha", nd.Normal(0, 5))
        beta = numpyro.sample("beta", nd.Normal(0, 1).expand([X.shape[1]]).to_event(1))
        numpyro.sample("y", nd.Bernoulli(logits=alpha + X @ beta), obs=y)

    mcmc = MCMC(NUTS(eight if kind == "eight" else logistic), num_warmup=warmup,
                num_samples=draws, num_chains=chains, chain_method="vectorized",
                progress_bar=False)
    args = (data["J"], jnp.asarray(data["sigma"]), jnp.asarray(data["y"])) if kind == "eight" \
        else (jnp.asarray(data["X"]), jnp.asarray(data["y"]))
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(1), *args)
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    seconds = time.perf_counter() - start
    return seconds, {k: np.asarray(v) for k, v in samples.items()}


def pyro_run(kind: str, data: dict, chains: int, warmup: int, draws: int):
    import pyro
    import pyro.distributions as pd
    import torch
    from pyro.infer import MCMC, NUTS
    torch.set_default_dtype(torch.float64)

    def eight(J, sigma, y=None):
        mu = pyro.sample("mu", pd.Normal(0.0, 5.0))
        tau = pyro.sample("tau", pd.HalfCauchy(5.0))
        with pyro.plate("J", J):
            eta = pyro.sample("eta", pd.Normal(0.0, 1.0))
            pyro.sample("y", pd.Normal(mu + tau * eta, sigma), obs=y)

    def logistic(X, y=None):
        alpha = pyro.sample("alpha", pd.Normal(0.0, 5.0))
        beta = pyro.sample("beta", pd.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
        pyro.sample("y", pd.Bernoulli(logits=alpha + X @ beta), obs=y)

    if kind == "eight":
        args = (data["J"], torch.tensor(data["sigma"]), torch.tensor(data["y"]))
    else:
        args = (torch.tensor(data["X"]), torch.tensor(data["y"], dtype=torch.float64))
    results = {}
    start = time.perf_counter()
    for c in range(chains):  # Pyro runs chains in processes; sequential is its CPU default here
        pyro.set_rng_seed(c + 1)
        mcmc = MCMC(NUTS(eight if kind == "eight" else logistic), num_samples=draws,
                    warmup_steps=warmup, num_chains=1, disable_progbar=True)
        mcmc.run(*args)
        for k, v in mcmc.get_samples().items():
            results.setdefault(k, []).append(v.numpy())
    seconds = time.perf_counter() - start
    return seconds, {k: np.stack(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="200 + 200 iterations")
    parser.add_argument("--skip", nargs="*", default=[], help="engines to skip")
    args = parser.parse_args()
    chains, warmup, draws = (4, 200, 200) if args.quick else (4, 1000, 1000)
    eight = json.loads((ROOT / "examples" / "eight_schools.json").read_text())
    logistic = logistic_data()
    workloads = {
        "eight schools (non-centred)": ("eight", ROOT / "examples" /
                                        "eight_schools_noncentered.bgm", eight),
        "logistic regression N=20000 D=20": ("logistic", LOGISTIC_BGM, logistic),
    }
    for title, (kind, src, data) in workloads.items():
        print(f"\n== {title}: {chains} chains x ({warmup} + {draws})")
        rows = {}
        engines = {"bgm": lambda s, k, d: bgm_run(s, d, chains, warmup, draws),
                   "torch": lambda s, k, d: torch_run(k, d, chains, warmup, draws),
                   "numpyro": lambda s, k, d: numpyro_run(k, d, chains, warmup, draws),
                   "pyro": lambda s, k, d: pyro_run(k, d, chains, warmup, draws)}
        for name, run in engines.items():
            if name in args.skip:
                continue
            try:
                seconds, samples = run(src, kind, data)
            except ImportError as exc:
                print(f"{name:8s} skipped ({exc.name} not installed)")
                continue
            ess = min_ess(samples)
            rows[name] = ess / seconds
            print(f"{name:8s} {seconds:8.1f} s   min bulk ESS {ess:8.0f}   "
                  f"ESS/s {ess / seconds:8.1f}")
        if "bgm" in rows:
            for other in ("torch", "numpyro", "pyro"):
                if other in rows:
                    print(f"bgm / {other} ESS/s ratio: {rows['bgm'] / rows[other]:.2f}")


if __name__ == "__main__":
    main()
