"""Simulation-based calibration (Talts et al. 2018) of any model, from the model alone.

Each replication draws the latents from the prior and data from the likelihood, refits
the model to the simulated data, and records the rank of the true value among L
(thinned) posterior draws. If the fit is calibrated the ranks are uniform on 0..L; a
chi-square test over B bins (Bonferroni-corrected across parameter elements) and rank
histograms show when they are not.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.errors import ModelError

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


def chi_square_p(ranks: np.ndarray, max_rank: int, bins: int) -> float:
    """p-value of uniformity of ranks on 0..max_rank using `bins` equal-width bins."""
    from scipy import stats  # noqa: PLC0415
    edges = np.linspace(0, max_rank + 1, bins + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    expected = len(ranks) * np.diff(edges) / (max_rank + 1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(chi2, bins - 1))


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


def run(program: Any, raw_data: dict[str, Any], fitter: Fitter, replications: int = 100,
        seed: int = 1, alpha: float = 0.01, bins: int = 10, device: str = "cpu",
        progress: Callable[[int, int], None] | None = None) -> SbcResult:
    simulator = program.bind(raw_data, device, simulate=True)
    if simulator.has_factor_statements:
        raise ModelError("SBC needs a generative model; 'factor' statements cannot be "
                         "simulated")
    latent_names = list(simulator.latent_names)
    rows, names, max_rank = [], None, None
    for r in range(replications):
        draws = simulator.draws(1, seed * 100003 + r)
        truth = {k: draws[k][0] for k in latent_names}
        data = dict(raw_data)
        for name in simulator.observed_names:
            data[name] = draws[name][0].cpu().numpy()
        model = program.bind(data, device)
        samples = fitter(model, seed * 7 + r)  # [L, dim]
        theta = torch.as_tensor(samples, dtype=model.dtype, device=model.device)
        post = {k: v for k, v in model.constrain(theta).items() if k in latent_names}
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


def nuts_fitter(warmup: int = 300, draws: int = 400, thin: int = 4) -> Fitter:
    """NUTS on one chain, thinned so the draws are nearly independent (SBC needs that)."""
    from runtime.nuts import NutsSettings, sample  # noqa: PLC0415
    from runtime.posterior import starts  # noqa: PLC0415

    def fit(model: Any, seed: int) -> np.ndarray:
        q0 = starts(model, 1, seed, 2.0, None)
        result = sample(model.log_prob, q0, NutsSettings(chains=1, warmup=warmup, draws=draws,
                                                         seed=seed))
        return result.draws[0, ::thin].cpu().numpy()
    return fit


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
    bins = 20
    n = result.ranks.shape[0]
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    for j, ax in enumerate(axes.flat):
        if j >= k:
            ax.axis("off")
            continue
        ax.axhspan(lo, hi, color="0.85")
        ax.hist(result.ranks[:, j], bins=np.linspace(0, result.draws_per_fit + 1, bins + 1),
                color="tab:blue", edgecolor="white")
        ax.set_title(f"{result.names[j]} (p={result.p_values[j]:.2g})", fontsize=9)
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
