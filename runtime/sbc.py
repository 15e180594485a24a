"""Simulation-based calibration (Talts et al. 2018) of any model, from the model alone.

Each replication draws the latents from the prior and data from the likelihood, refits
the model to the simulated data, and records the rank of the true value among L
(thinned) posterior draws. If the fit is calibrated the ranks are uniform on 0..L; a
chi-square test over B bins (Bonferroni-corrected across parameter elements) and rank
histograms show when they are not.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.errors import ModelError
from runtime.nuts import _value_and_grad
from runtime.ops import Data

Fitter = Callable[[Any, int], np.ndarray]  # (bound model, seed) -> draws [L, dim] unconstrained


@dataclass
class SbcResult:
    names: list[str]  # one per scalar element, Stan-style: theta[2]
    ranks: np.ndarray  # [replications, elements] in 0..L
    draws_per_fit: int
    p_values: np.ndarray  # per element, chi-square uniformity
    alpha: float

    @property
    def threshold(self) -> float:
        """Bonferroni-corrected level."""
        return self.alpha / max(1, len(self.names))

    @property
    def calibrated(self) -> bool:
        return bool((self.p_values >= self.threshold).all())

    def report(self) -> str:
        lines = [f"SBC: {self.ranks.shape[0]} replications, {self.draws_per_fit} draws each; "
                 f"chi-square p-values (reject below {self.threshold:.2g}):"]
        for name, p in zip(self.names, self.p_values, strict=True):
            flag = "  <- not uniform" if p < self.threshold else ""
            lines.append(f"  {name:20s} p = {p:.3g}{flag}")
        lines.append("calibrated" if self.calibrated else "NOT calibrated")
        return "\n".join(lines)


def _rank_bins(max_rank: int, bins: int) -> np.ndarray:
    """Bin edges on the integer ranks 0..max_rank: each bin holds whole ranks (their
    numbers differ by at most one when bins does not divide max_rank + 1)."""
    bins = max(1, min(bins, max_rank + 1))
    return np.unique(np.round(np.linspace(0, max_rank + 1, bins + 1))) - 0.5


def chi_square_p(ranks: np.ndarray, max_rank: int, bins: int) -> float:
    """p-value of uniformity of ranks on 0..max_rank using `bins` bins of whole ranks."""
    from scipy import stats  # noqa: PLC0415
    edges = _rank_bins(max_rank, bins)
    if len(edges) < 3:
        return 1.0
    counts, _ = np.histogram(ranks, bins=edges)
    expected = len(ranks) * np.diff(edges) / (max_rank + 1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(chi2, len(counts) - 1))


def _flat_names(values: dict[str, torch.Tensor], batch: int) -> list[str]:
    names = []
    for name, v in values.items():
        shape = tuple(v.shape[batch:])
        if not shape:
            names.append(name)
            continue
        for idx in np.ndindex(*shape):
            names.append(f"{name}[{', '.join(str(i + 1) for i in idx)}]")
    return names


def _flatten(values: dict[str, torch.Tensor], batch: int) -> np.ndarray:
    parts = [v.detach().cpu().reshape(tuple(v.shape[:batch]) + (-1,)).numpy()
             for v in values.values()]
    return np.concatenate(parts, axis=-1)


def run(model_class: type, raw_data: dict[str, Any], fitter: Fitter, replications: int = 100,
        seed: int = 1, alpha: float = 0.01, bins: int = 10, device: str = "cpu",
        progress: Callable[[int, int], None] | None = None) -> SbcResult:
    """SBC of a generated model class with `fitter`: `replications` simulated data sets,
    each bound to the class and fitted.

    Replication r simulates with seed * 100003 + r and is fitted with seed * 7 + r. A
    fitter with a `fit_many(models, seed)` method and a `batch` size (as `nuts_fitter`
    returns) is given `batch` replications at once, with the seed of the first of them.
    """
    simulator = model_class(raw_data, device=device, simulate=True)
    if simulator.has_factor_statements:
        raise ModelError("SBC needs a generative model; 'factor' statements cannot be "
                         "simulated")
    latent_names = list(simulator.latent_names)
    fit_many = getattr(fitter, "fit_many", None)
    batch = max(1, int(getattr(fitter, "batch", 1))) if fit_many is not None else 1
    rows, names, max_rank = [], None, None
    for first in range(0, replications, batch):
        reps = range(first, min(first + batch, replications))
        truths, models = [], []
        for r in reps:
            draws = simulator.draws(1, seed * 100003 + r)
            truths.append({k: draws[k][0] for k in latent_names})
            data = dict(raw_data)
            for name in simulator.observed_names:
                data[name] = draws[name][0].cpu().numpy()
            models.append(model_class(data, device=device))
        if fit_many is not None:
            fits = fit_many(models, seed * 7 + first)
        else:
            fits = [fitter(model, seed * 7 + r) for r, model in zip(reps, models, strict=True)]
        for r, truth, model, samples in zip(reps, truths, models, fits, strict=True):
            theta = torch.as_tensor(samples, dtype=model.dtype, device=model.device)
            post = model.constrain(theta)
            post = {k: post[k] for k in latent_names}
            true_flat = _flatten({k: truth[k][None] for k in latent_names}, 1)[0]
            post_flat = _flatten(post, 1)
            names = names or _flat_names(post, 1)
            max_rank = post_flat.shape[0]
            rows.append((post_flat < true_flat[None]).sum(0))
            if progress:
                progress(r + 1, replications)
    ranks = np.stack(rows)
    assert names is not None and max_rank is not None
    p = np.array([chi_square_p(ranks[:, j], max_rank, bins) for j in range(ranks.shape[1])])
    return SbcResult(names, ranks, max_rank, p, alpha)


class NutsFitter:
    """NUTS with one chain per replication, thinned so the draws are nearly independent
    (SBC needs that); a Fitter, and `fit_many` fits `batch` replications at once.

    The replications differ only in their simulated data, so a copy of the model whose
    differing data carry a leading replication axis gives every chain its own density in
    one call, and they run as the chains of one batched NUTS call (which adapts step size
    and metric per chain: each chain is still an independent fit). Generated densities
    broadcast over that axis for most models; this is checked (log density and gradient at
    random points against each replication's own model) and where it does not hold the
    replications are fitted one after another.
    """

    def __init__(self, warmup: int = 300, draws: int = 400, thin: int = 4, batch: int = 50):
        self.warmup, self.draws, self.thin, self.batch = warmup, draws, thin, batch

    def __call__(self, model: Any, seed: int) -> np.ndarray:
        return self.fit_many([model], seed)[0]

    def fit_many(self, models: list[Any], seed: int) -> list[np.ndarray]:
        """Draws [L, dim] for each model; model i's chain starts from seed + i's initial
        point (and is fitted with seed + i when the models are fitted one by one)."""
        from runtime.nuts import NutsSettings, sample  # noqa: PLC0415
        from runtime.posterior import starts  # noqa: PLC0415
        stacked = _stacked(models)
        groups = [models] if stacked is not None else [[m] for m in models]
        out: list[np.ndarray] = []
        for k, group in enumerate(groups):
            first = seed if stacked is not None else seed + k
            q0 = torch.cat([starts(m, 1, first + i, 2.0, None) for i, m in enumerate(group)])
            density = stacked if stacked is not None else group[0]
            settings = NutsSettings(chains=len(group), warmup=self.warmup, draws=self.draws,
                                    seed=first)
            result = sample(density.log_prob, q0, settings)
            out.extend(result.draws[:, ::self.thin].cpu().numpy())
        return out


def nuts_fitter(warmup: int = 300, draws: int = 400, thin: int = 4,
                batch: int = 50) -> NutsFitter:
    """NUTS on one chain per replication, `batch` replications per batched NUTS call."""
    return NutsFitter(warmup, draws, thin, batch)


class CheesFitter:
    """Many-chain HMC (runtime/chees.py) over every replication of a batch at once:
    `chains` chains per replication, all of them in one lockstep run, each replication
    with its own metric (a group of chains) and the step size and trajectory length
    shared; a Fitter whose `fit_many` takes `batch` replications. Each replication's
    draws are its chains' draws, thinned, pooled.

    Why: NUTS fits a batch of replications as one batched call too, but each of its
    chains adapts alone over a long warmup; here the adaptation is pooled, and SBC's 100
    replications of a small model cost about what one fit costs. Where the model's
    density does not broadcast over the replications (runtime/sbc.py `_stacked`), the
    replications are fitted by NUTS instead, one after another.
    """

    def __init__(self, warmup: int = 300, draws: int = 100, thin: int = 4, chains: int = 4,
                 batch: int = 100):
        self.warmup, self.draws, self.thin = warmup, draws, thin
        self.chains, self.batch = chains, batch

    def __call__(self, model: Any, seed: int) -> np.ndarray:
        return self.fit_many([model], seed)[0]

    def fit_many(self, models: list[Any], seed: int) -> list[np.ndarray]:
        from runtime.chees import CheesSettings, sample  # noqa: PLC0415
        from runtime.posterior import starts  # noqa: PLC0415
        r, m = len(models), self.chains
        stacked = _stacked(models) if r > 1 else models[0]
        if stacked is None or not _broadcasts(stacked, models, m):
            return NutsFitter(self.warmup, self.draws * m, self.thin, 1).fit_many(models, seed)
        q0 = torch.cat([starts(model, m, seed + i, 2.0, None)
                        for i, model in enumerate(models)])  # chain i * m + j: replication i
        d = q0.shape[-1]

        def log_prob(x: torch.Tensor) -> torch.Tensor:  # [r * m, d] -> [r * m]
            return stacked.log_prob(x.reshape(r, m, d).transpose(0, 1)).transpose(0, 1) \
                .reshape(r * m)
        groups = torch.arange(r).repeat_interleave(m)
        # No Laplace start: many replications of a hierarchical model have their mode at
        # the neck of a funnel, whose curvature is a poor first metric (SBC of eight
        # schools was not calibrated with it at these settings, and is without it).
        result = sample(log_prob, q0, CheesSettings(chains=r * m, warmup=self.warmup,
                                                    draws=self.draws, seed=seed,
                                                    laplace=False), groups=groups)
        draws = result.draws[:, ::self.thin].reshape(r, m, -1, d)
        return list(draws.reshape(r, -1, d).cpu().numpy())


def _broadcasts(stacked: Any, models: list[Any], chains: int) -> bool:
    """Whether the stacked density takes theta [chains, replications, dim] and gives each
    replication's own density, as `_stacked` checked for [replications, dim]."""
    generator = torch.Generator().manual_seed(1)
    q = models[0].initial_point(generator, 2.0, (chains, len(models)))
    try:
        lp = stacked.log_prob(q)
        if lp.shape != (chains, len(models)):
            return False
        return all(torch.allclose(lp[:, i], models[i].log_prob(q[:, i]), rtol=1e-6, atol=1e-8,
                                  equal_nan=True) for i in range(len(models)))
    except Exception:  # any failure means it does not broadcast that way
        return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    return type(a) is type(b) and a == b


def _stacked(models: list[Any]) -> Any | None:
    """One model whose data that differ between `models` have a leading axis, so that
    log_prob(theta [len(models), dim]) is each model's density at its own row; None when
    the model's density does not broadcast that way (or there is one model only)."""
    if len(models) < 2:
        return None
    first = models[0]
    varying: dict[str, torch.Tensor] = {}
    for name, value in first.data.items():
        values = [m.data.get(name) for m in models]
        if all(_same(value, v) for v in values[1:]):
            continue
        if not all(isinstance(v, torch.Tensor | int) for v in values):
            return None
        parts = [torch.as_tensor(v, device=first.device) for v in values]
        if any(t.shape != parts[0].shape or t.dtype != parts[0].dtype for t in parts):
            return None
        varying[name] = torch.stack(parts)
    stacked = copy.copy(first)
    stacked.data = Data({}, first.device, first.dtype)
    stacked.data.update(first.data)
    stacked.data.update(varying)
    generator = torch.Generator().manual_seed(0)
    try:
        for _ in range(2):
            q = first.initial_point(generator, 2.0, (len(models),))
            lp, grad = _value_and_grad(stacked.log_prob, q)
            if lp.shape != (len(models),):
                return None
            for i, m in enumerate(models):
                lp_i, grad_i = _value_and_grad(m.log_prob, q[i:i + 1])
                if not (torch.allclose(lp[i:i + 1], lp_i, rtol=1e-6, atol=1e-8,
                                       equal_nan=True)
                        and torch.allclose(grad[i:i + 1], grad_i, rtol=1e-6, atol=1e-8,
                                           equal_nan=True)):
                    return None
    except Exception:  # any failure means the density does not broadcast that way
        return None
    return stacked


def plot(result: SbcResult, path: str) -> None:
    """Rank histograms, one panel per element, with the 99% band of a uniform histogram."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from scipy import stats  # noqa: PLC0415
    k = len(result.names)
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    edges = _rank_bins(result.draws_per_fit, 20)
    n = result.ranks.shape[0]
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / (len(edges) - 1))
    for j, ax in enumerate(axes.flat):
        if j >= k:
            ax.axis("off")
            continue
        ax.axhspan(lo, hi, color="0.85")
        ax.hist(result.ranks[:, j], bins=edges, color="tab:blue", edgecolor="white")
        ax.set_title(f"{result.names[j]} (p={result.p_values[j]:.2g})", fontsize=9)
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
