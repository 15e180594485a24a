"""Summing out discrete latents: time per log-likelihood (and gradient) of bgm's generated
code against hmmlearn, Pyro's enumeration and plain PyTorch, on the same data.

    python bench/enumeration_bench.py [--quick]

Workloads (issue 4):
  * HMM, T = 10 000 steps, K = 5 Gaussian states: log p(y | theta) and its gradient.
    hmmlearn's `score` (forward algorithm in C, no gradient); Pyro's enumerated model
    (`pyro.markov` over t, TraceEnum_ELBO's differentiable loss, the pattern of Pyro's
    HMM tutorial) and Pyro's DiscreteHMM distribution (its parallel-scan form); a plain
    PyTorch forward algorithm, one step after another (what one writes by hand).
  * Gaussian mixture, N = 10 000, K = 3: one fit step (loss, gradient, Adam update).
    Pyro's TraceEnum_ELBO with the labels enumerated in parallel; plain PyTorch with
    logsumexp written by hand.
  * Many sequences (issue 19): N = 1 000 sequences of length 100, K = 5, one HMM per
    sequence (`z[n, t]` inside `for n`): log-likelihood and gradient against hmmlearn's
    `score` with `lengths` and Pyro's DiscreteHMM batched over the sequences; then ragged
    lengths (50..100, `for t in 2..lengths[n]`) against hmmlearn (DiscreteHMM takes one
    length only).
Each time is the median of repeated runs after a warm-up; ratios are other / bgm (> 1
means bgm is faster).
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")
torch.set_default_dtype(torch.float64)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hmm_data(t: int, k: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    a = rng.dirichlet(np.ones(k), size=k) + 4 * np.eye(k)
    a /= a.sum(1, keepdims=True)
    mu = np.linspace(-4, 4, k)
    z = np.zeros(t, dtype=int)
    z[0] = rng.integers(k)
    for s in range(1, t):
        z[s] = rng.choice(k, p=a[z[s - 1]])
    y = rng.normal(mu[z], 1.0)
    return {"T": t, "K": k, "y": y, "A": a, "mu": mu, "sigma": 1.0}


def bench_hmm(t: int, k: int, repeats: int) -> dict[str, float]:
    from compiler.api import compile_file
    from runtime.accumulate import Mode
    d = hmm_data(t, k)
    rows: dict[str, float] = {}
    model = compile_file(ROOT / "examples" / "hidden_markov.bgm").bind(
        {"T": t, "K": k, "y": d["y"].tolist()}, device="cpu")
    theta0 = model.unconstrain({"A": torch.tensor(d["A"]), "mu": torch.tensor(d["mu"]),
                                "sigma": torch.tensor(d["sigma"])})[None]

    def bgm() -> None:
        theta = theta0.clone().requires_grad_(True)
        model.log_prob(theta, Mode.for_method("mle")).sum().backward()
    rows["bgm"] = median_time(bgm, repeats)

    y = torch.tensor(d["y"])
    log_a = torch.tensor(d["A"]).log()

    def plain() -> None:  # the forward algorithm written step by step
        mu = torch.tensor(d["mu"], requires_grad=True)
        la = log_a.clone().requires_grad_(True)
        emit = torch.distributions.Normal(mu, 1.0).log_prob(y[:, None])
        alpha = emit[0] - np.log(k)
        for s in range(1, t):
            alpha = torch.logsumexp(alpha[:, None] + la, 0) + emit[s]
        torch.logsumexp(alpha, 0).backward()
    rows["torch (sequential)"] = median_time(plain, max(1, repeats // 5))

    try:
        from hmmlearn.hmm import GaussianHMM
        g = GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
        g.startprob_, g.transmat_ = np.ones(k) / k, d["A"]
        g.means_, g.covars_ = d["mu"][:, None], np.ones((k, 1))
        x = d["y"][:, None]
        rows["hmmlearn score"] = median_time(lambda: g.score(x), repeats)
    except ImportError:
        print("hmmlearn skipped (not installed)")
    try:
        rows.update(_pyro_hmm(d, t, k, repeats))
    except ImportError:
        print("pyro skipped (not installed)")
    return rows


def _pyro_hmm(d: dict, t: int, k: int, repeats: int) -> dict[str, float]:
    import pyro
    import pyro.distributions as pd
    from pyro.infer import TraceEnum_ELBO
    y = torch.tensor(d["y"])
    rows = {}

    def model() -> None:
        a = pyro.param("A", torch.tensor(d["A"]), constraint=pd.constraints.simplex)
        mu = pyro.param("mu", torch.tensor(d["mu"]))
        z = 0
        for s in pyro.markov(range(t)):
            probs = torch.ones(k) / k if s == 0 else a[z]
            z = pyro.sample(f"z_{s}", pd.Categorical(probs),
                            infer={"enumerate": "parallel"})
            pyro.sample(f"y_{s}", pd.Normal(mu[z], 1.0), obs=y[s])

    def guide() -> None:
        pass
    elbo = TraceEnum_ELBO(max_plate_nesting=0)

    def enumerated() -> None:
        pyro.clear_param_store()
        elbo.differentiable_loss(model, guide).backward()
    rows["pyro TraceEnum (markov)"] = median_time(enumerated, 1)

    def discrete_hmm() -> None:
        a = torch.tensor(d["A"]).log().requires_grad_(True)
        mu = torch.tensor(d["mu"], requires_grad=True)
        dist = pd.DiscreteHMM(torch.full((k,), -np.log(k)), a, pd.Normal(mu, 1.0))
        dist.log_prob(y).backward()
    rows["pyro DiscreteHMM"] = median_time(discrete_hmm, repeats)
    return rows


SEQUENCES = """
model Sequences
data N: int
data T: int
data K: int
data lengths: int[N]
data y: real[N, T]
for k in 1..K:
    A[k] ~ Dirichlet(ones(K))
    mu[k] ~ Normal(0, 10)
sigma ~ HalfNormal(5)
for n in 1..N:
    z[n, 1] ~ Categorical(ones(K) / K)
    for t in 2..lengths[n]:
        z[n, t] ~ Categorical(A[z[n, t-1]])
    for t in 1..lengths[n]:
        y[n, t] ~ Normal(mu[z[n, t]], sigma)
"""


def bench_sequences(n: int, t: int, k: int, repeats: int, ragged: bool) -> dict[str, float]:
    """Many sequences of one HMM: bgm's batched forward algorithm against hmmlearn (C,
    one sequence after another, no gradient) and Pyro's DiscreteHMM (batched)."""
    from compiler.api import compile_string
    from runtime.accumulate import Mode
    d = hmm_data(n * t, k)
    rng = np.random.default_rng(3)
    lengths = rng.integers(t // 2, t + 1, size=n) if ragged else np.full(n, t)
    y = d["y"].reshape(n, t)
    source = SEQUENCES if ragged else SEQUENCES.replace("lengths[n]", "T")
    model = compile_string(source, "sequences.bgm").bind(
        {"N": n, "T": t, "K": k, "lengths": lengths.tolist(), "y": y.tolist()}, device="cpu")
    theta0 = model.unconstrain({"A": torch.tensor(d["A"]), "mu": torch.tensor(d["mu"]),
                                "sigma": torch.tensor(d["sigma"])})[None]
    rows: dict[str, float] = {}

    def bgm() -> None:
        theta = theta0.clone().requires_grad_(True)
        model.log_prob(theta, Mode.for_method("mle")).sum().backward()
    rows["bgm"] = median_time(bgm, repeats)
    try:
        from hmmlearn.hmm import GaussianHMM
        g = GaussianHMM(n_components=k, covariance_type="diag", init_params="", params="")
        g.startprob_, g.transmat_ = np.ones(k) / k, d["A"]
        g.means_, g.covars_ = d["mu"][:, None], np.ones((k, 1))
        x = np.concatenate([y[i, :m] for i, m in enumerate(lengths)])[:, None]
        rows["hmmlearn score (lengths)"] = median_time(lambda: g.score(x, lengths=lengths),
                                                      repeats)
        bgm_value = float(model.log_prob(theta0, Mode.for_method("mle"))[0])
        assert abs(bgm_value - g.score(x, lengths=lengths)) < 1e-6 * abs(bgm_value)
    except ImportError:
        print("hmmlearn skipped (not installed)")
    if not ragged:
        try:
            import pyro.distributions as pd
            yt = torch.tensor(y)

            def discrete_hmm() -> None:
                a = torch.tensor(d["A"]).log().requires_grad_(True)
                mu = torch.tensor(d["mu"], requires_grad=True)
                dist = pd.DiscreteHMM(torch.full((k,), -np.log(k)), a, pd.Normal(mu, 1.0))
                dist.log_prob(yt).sum().backward()  # batched over the n sequences
            rows["pyro DiscreteHMM (batched)"] = median_time(discrete_hmm, repeats)
        except ImportError:
            print("pyro skipped (not installed)")
    return rows


def bench_mixture(n: int, k: int, repeats: int) -> dict[str, float]:
    from compiler.api import compile_file
    from runtime.accumulate import Mode
    rng = np.random.default_rng(1)
    x = rng.normal(np.array([-4.0, 0.0, 4.0])[rng.integers(0, k, n)], 1.0)
    rows: dict[str, float] = {}
    model = compile_file(ROOT / "examples" / "gaussian_mixture.bgm").bind(
        {"N": n, "K": k, "x": x.tolist()}, device="cpu")
    theta = torch.zeros(1, model.dim, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.01)

    def bgm() -> None:
        opt.zero_grad()
        (-model.log_prob(theta, Mode.for_method("map")).sum()).backward()
        opt.step()
    rows["bgm"] = median_time(bgm, repeats)

    xt = torch.tensor(x)
    params = [torch.zeros(k - 1, requires_grad=True), torch.zeros(k, requires_grad=True),
              torch.zeros(k, requires_grad=True)]
    opt2 = torch.optim.Adam(params, lr=0.01)

    def plain() -> None:
        opt2.zero_grad()
        logits, mu, log_s = params
        log_w = torch.log_softmax(torch.cat([logits, torch.zeros(1)]), 0)
        lp = torch.distributions.Normal(mu, log_s.exp()).log_prob(xt[:, None]) + log_w
        (-torch.logsumexp(lp, 1).sum()).backward()
        opt2.step()
    rows["torch (hand-written)"] = median_time(plain, repeats)
    try:
        import pyro
        import pyro.distributions as pd
        from pyro.infer import SVI, TraceEnum_ELBO
        from pyro.optim import Adam

        def model() -> None:
            w = pyro.param("w", torch.ones(k) / k, constraint=pd.constraints.simplex)
            mu = pyro.param("mu", torch.zeros(k))
            s = pyro.param("s", torch.ones(k), constraint=pd.constraints.positive)
            with pyro.plate("data", n):
                z = pyro.sample("z", pd.Categorical(w), infer={"enumerate": "parallel"})
                pyro.sample("x", pd.Normal(mu[z], s[z]), obs=xt)

        def guide() -> None:
            pass
        pyro.clear_param_store()
        svi = SVI(model, guide, Adam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=1))
        rows["pyro TraceEnum"] = median_time(svi.step, repeats)
    except ImportError:
        print("pyro skipped (not installed)")
    return rows


def report(title: str, rows: dict[str, float]) -> None:
    print(f"\n== {title}")
    base = rows["bgm"]
    for name, seconds in rows.items():
        ratio = "" if name == "bgm" else f"   {seconds / base:8.2f}x bgm's time"
        print(f"{name:26s} {seconds * 1000:10.2f} ms{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="T = 1000, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t, repeats = (1000, 5) if args.quick else (10_000, 20)
    report(f"HMM log-likelihood + gradient, T = {t}, K = 5", bench_hmm(t, 5, repeats))
    report("Gaussian mixture fit step, N = 10 000, K = 3", bench_mixture(10_000, 3, repeats))
    n = 100 if args.quick else 1000
    report(f"{n} sequences x 100 steps, K = 5: log-likelihood + gradient",
           bench_sequences(n, 100, 5, repeats, ragged=False))
    report(f"{n} sequences of 50..100 steps (ragged), K = 5: log-likelihood + gradient",
           bench_sequences(n, 100, 5, repeats, ragged=True))


if __name__ == "__main__":
    main()
