"""Fast posteriors, side by side (issue 18): bgm against Stan (PyStan 3), NumPyro and PyMC.

    python bench/posterior_speed_bench.py [--runs 3] [--peers-python PATH] [--quick]
                                          [--workloads eight logistic] [--systems ...]

For each workload and system, one fresh process is started per run; it imports its
library, builds the model (Stan compiles it: httpstan's cache of compiled models is
emptied first, so the first fit is what a new user waits for), fits, and then fits the
same model again with another seed in the same process (the warm path: Stan and PyMC
reuse the compiled model, NumPyro its JIT, bgm its compiled module and bound data).
Printed per system, the median of `--runs` runs:

- first fit whole: seconds from the process's start to the first fit's draws (imports,
  compilation and warm-up included: what `bgmc fit` or a first notebook cell costs);
- second fit: seconds of the second fit, warm-up included (as NumPyro's figures include it);
- min bulk ESS over all parameters (ArviZ) and ESS/s of both fits; divergences.

Workloads: eight schools non-centred, 4 chains x (1000 + 1000) for the NUTS samplers, and
Bayesian logistic regression (N = 20 000, D = 20), 2 chains x (500 + 500). bgm runs NUTS
with the same settings, and its many-chain sampler (`chees`) at its defaults (64 chains x
(400 + 100): at least 4 000 draws) on eight schools and 16 chains x (300 + 100) on the
regression, and ADVI.

The peers are not bgm's dependencies: install them in a separate environment, e.g.
`python -m venv peers && peers/bin/pip install numpyro jax pymc pystan "setuptools<81"
arviz`, and pass `--peers-python peers/bin/python`. A system whose library is missing is
skipped with a note. Run nothing else meanwhile: on 2 cores a second busy process
distorts these timings.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHOOLS = json.loads((ROOT / "examples" / "eight_schools.json").read_text())

EIGHT_BGM = (ROOT / "examples" / "eight_schools_noncentered.bgm").read_text()
LOGISTIC_BGM = """
model BayesLogistic
data N: int
data D: int
data X: real[N, D]
data y: int<lower=0, upper=1>[N]
alpha ~ Normal(0, 5)
beta: real[D] ~ Normal(0, 1)
for n in 1..N:
    y[n] ~ Bernoulli(logits=alpha + dot(X[n], beta))
"""
EIGHT_STAN = """
data { int<lower=0> J; array[J] real y; array[J] real<lower=0> sigma; }
parameters { real mu; real<lower=0> tau; vector[J] eta; }
transformed parameters { vector[J] theta = mu + tau * eta; }
model { mu ~ normal(0, 5); tau ~ cauchy(0, 5); eta ~ std_normal();
        y ~ normal(theta, sigma); }
"""
LOGISTIC_STAN = """
data { int<lower=0> N; int<lower=0> D; matrix[N, D] X; array[N] int<lower=0, upper=1> y; }
parameters { real alpha; vector[D] beta; }
model { alpha ~ normal(0, 5); beta ~ std_normal(); y ~ bernoulli_logit(alpha + X * beta); }
"""
SETTINGS = {"eight": {"chains": 4, "warmup": 1000, "draws": 1000},
            "logistic": {"chains": 2, "warmup": 500, "draws": 500}}
CHEES = {"eight": {"chains": 64, "warmup": 400, "draws": 100},
         "logistic": {"chains": 16, "warmup": 300, "draws": 100}}
QUICK = {"eight": {"chains": 4, "warmup": 300, "draws": 300},
         "logistic": {"chains": 2, "warmup": 200, "draws": 200}}


def logistic_data(n: int = 20000, d: int = 20, seed: int = 0) -> dict:
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w)))).astype(int)
    return {"N": n, "D": d, "X": x.tolist(), "y": y.tolist()}


def data_of(workload: str) -> dict:
    return SCHOOLS if workload == "eight" else logistic_data()


# ---- workers: each runs in its own process -------------------------------------------------


def min_ess(posterior: dict) -> float:
    """Smallest bulk ESS over every coordinate; posterior: name -> [chains, draws, ...]."""
    import arviz as az
    import numpy as np
    ess = az.ess(az.convert_to_dataset({k: np.asarray(v) for k, v in posterior.items()}),
                 method="bulk")
    return float(min(np.min(np.asarray(ess[k])) for k in ess.data_vars))


def bgm_worker(workload: str, method: str, settings: dict):
    from compiler.api import compile_string
    program = compile_string(EIGHT_BGM if workload == "eight" else LOGISTIC_BGM,
                             f"{workload}.bgm")
    data = data_of(workload)
    options = {} if method == "advi" else dict(settings)

    def fit(seed: int):
        result = program.fit(data, method=method, seed=seed, **options)
        post = {k: result.idata.posterior[k].values
                for k in ("mu", "tau", "eta", "alpha", "beta")
                if k in result.idata.posterior}
        stats = getattr(result.idata, "sample_stats", None)
        diverging = int(stats["diverging"].values.sum()) if stats is not None and \
            "diverging" in stats else 0
        return post, diverging
    return fit


def stan_worker(workload: str, settings: dict):
    import stan
    data = data_of(workload)
    code = EIGHT_STAN if workload == "eight" else LOGISTIC_STAN
    def fit(seed: int):
        # built again for each seed: the compiled model is reused from httpstan's cache,
        # and a posterior object built with the same seed would return its cached draws
        posterior = stan.build(code, data=data, random_seed=seed)
        fit_ = posterior.sample(num_chains=settings["chains"],
                                         num_warmup=settings["warmup"],
                                         num_samples=settings["draws"])
        c = settings["chains"]
        names = ("mu", "tau", "eta") if workload == "eight" else ("alpha", "beta")
        post = {}
        for name in names:
            values = fit_[name]  # [..., draws x chains], draws of a chain interleaved
            values = values.reshape(values.shape[:-1] + (-1, c))
            post[name] = values.transpose(values.ndim - 1, values.ndim - 2,
                                          *range(values.ndim - 2))
        return post, int(fit_["divergent__"].sum())
    return fit


def numpyro_worker(workload: str, settings: dict):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as nd
    from numpyro.infer import MCMC, NUTS
    jax.config.update("jax_enable_x64", True)
    data = data_of(workload)

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

    args = (data["J"], jnp.asarray(data["sigma"], dtype=float), jnp.asarray(data["y"],
                                                                            dtype=float)) \
        if workload == "eight" else (jnp.asarray(data["X"]), jnp.asarray(data["y"]))
    mcmc = MCMC(NUTS(eight if workload == "eight" else logistic),
                num_warmup=settings["warmup"], num_samples=settings["draws"],
                num_chains=settings["chains"], chain_method="vectorized", progress_bar=False)

    def fit(seed: int):
        mcmc.run(jax.random.PRNGKey(seed), *args, extra_fields=("diverging",))
        samples = mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(samples)
        post = {k: v for k, v in samples.items() if k in ("mu", "tau", "eta", "alpha",
                                                          "beta")}
        return post, int(mcmc.get_extra_fields()["diverging"].sum())
    return fit


def pymc_worker(workload: str, settings: dict):
    import numpy as np
    import pymc as pm
    data = data_of(workload)
    with pm.Model() as model:
        if workload == "eight":
            mu = pm.Normal("mu", 0, 5)
            tau = pm.HalfCauchy("tau", 5)
            eta = pm.Normal("eta", 0, 1, shape=data["J"])
            pm.Normal("y", mu + tau * eta, np.asarray(data["sigma"], dtype=float),
                      observed=np.asarray(data["y"], dtype=float))
        else:
            alpha = pm.Normal("alpha", 0, 5)
            beta = pm.Normal("beta", 0, 1, shape=data["D"])
            pm.Bernoulli("y", logit_p=alpha + np.asarray(data["X"]) @ beta,
                         observed=np.asarray(data["y"]))

    def fit(seed: int):
        with model:
            idata = pm.sample(draws=settings["draws"], tune=settings["warmup"],
                              chains=settings["chains"], cores=1, random_seed=seed,
                              progressbar=False, compute_convergence_checks=False)
        post = {k: idata.posterior[k].values for k in ("mu", "tau", "eta", "alpha", "beta")
                if k in idata.posterior}
        return post, int(idata.sample_stats["diverging"].values.sum())
    return fit


def worker(system: str, workload: str, settings: dict, began: float) -> dict:
    """Two fits in this process; seconds from `began` (the process's start) to the first
    fit's draws, and of the second fit."""
    if system.startswith("bgm"):
        fit = bgm_worker(workload, system.split("-", 1)[1], settings)
    else:
        fit = {"stan": stan_worker, "numpyro": numpyro_worker,
               "pymc": pymc_worker}[system](workload, settings)
    post, div = fit(1)
    first = time.time() - began
    ess_first = min_ess(post)
    start = time.perf_counter()
    post2, div2 = fit(2)
    second = time.perf_counter() - start
    return {"first": first, "second": second, "ess_first": ess_first,
            "ess_second": min_ess(post2), "divergences": div + div2}


# ---- the driver ----------------------------------------------------------------------------


def _clear_stan_cache(python: str) -> None:
    """Empty httpstan's cache of compiled models, so each run's first fit compiles."""
    out = subprocess.run([python, "-c", "import httpstan.cache as c; print(c.cache_directory())"],
                         capture_output=True, text=True, check=False)
    folder = out.stdout.strip()
    if out.returncode == 0 and folder and os.path.isdir(folder):
        shutil.rmtree(folder, ignore_errors=True)


def run_once(system: str, workload: str, settings: dict, python: str) -> dict | str:
    if system == "stan":
        _clear_stan_cache(python)
    began = time.time()
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); "
            f"sys.path.insert(0, {str(ROOT / 'bench')!r}); import posterior_speed_bench as b; "
            f"print('RESULT' + json.dumps(b.worker({system!r}, {workload!r}, "
            f"json.loads({json.dumps(settings)!r}), {began!r})))")
    with tempfile.TemporaryDirectory() as scratch:  # PyStan's build leaves files in cwd
        done = subprocess.run([python, "-c", code], capture_output=True, text=True,
                              check=False, cwd=scratch,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT"):])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"skipped ({tail[:120]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers-python", default=sys.executable,
                        help="the Python of an environment with the peers installed")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, one run")
    parser.add_argument("--workloads", nargs="*", default=["eight", "logistic"])
    parser.add_argument("--systems", nargs="*",
                        default=["bgm-chees", "bgm-nuts", "bgm-advi", "stan", "numpyro",
                                 "pymc"])
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    for workload in args.workloads:
        nuts = (QUICK if args.quick else SETTINGS)[workload]
        print(f"\n== {workload}: NUTS {nuts['chains']} chains x ({nuts['warmup']} + "
              f"{nuts['draws']}); bgm-chees {CHEES[workload]['chains']} chains x "
              f"({CHEES[workload]['warmup']} + {CHEES[workload]['draws']}); median of "
              f"{runs} run(s)")
        print(f"{'system':10s} {'first fit':>10s} {'second fit':>11s} {'min ESS':>8s} "
              f"{'ESS/s 1st':>9s} {'ESS/s 2nd':>9s} {'div':>4s}")
        rows = {}
        for system in args.systems:
            python = sys.executable if system.startswith("bgm") else args.peers_python
            settings = CHEES[workload] if system == "bgm-chees" else nuts
            results = [run_once(system, workload, settings, python) for _ in range(runs)]
            good = [r for r in results if isinstance(r, dict)]
            if not good:
                print(f"{system:10s} {results[0]}")
                continue
            med = {k: statistics.median(r[k] for r in good) for k in good[0]}
            rows[system] = med
            print(f"{system:10s} {med['first']:9.2f}s {med['second']:10.2f}s "
                  f"{med['ess_second']:8.0f} {med['ess_first'] / med['first']:9.0f} "
                  f"{med['ess_second'] / med['second']:9.0f} {med['divergences']:4.0f}",
                  flush=True)
        best = rows.get("bgm-chees")
        for peer in ("stan", "numpyro", "pymc"):
            if best and peer in rows:
                p = rows[peer]
                ours, theirs = (r["ess_second"] / r["second"] for r in (best, p))
                print(f"bgm-chees vs {peer}: first fit {p['first'] / best['first']:.2f}x "
                      f"faster; second-fit ESS/s {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
