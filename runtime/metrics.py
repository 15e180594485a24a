"""How close samples are to data: the squared maximum mean discrepancy (MMD) with a fixed
RBF kernel, and a bootstrap interval for it. Used to judge generative models that have
no likelihood to compare (GANs), or whose sampler is being compared (DDPM vs DDIM).
"""
from __future__ import annotations

from typing import Any

import torch


def mmd(a: Any, b: Any, bandwidth: float = 0.5) -> float:
    """Squared MMD between point sets a [n, d] and b [m, d], kernel
    exp(-|x - y|^2 / (2 bandwidth^2)) (the biased estimate: it includes i = j pairs)."""
    p, q = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float(_mean_kernel(p, p, bandwidth) + _mean_kernel(q, q, bandwidth)
                 - 2 * _mean_kernel(p, q, bandwidth))


def _mean_kernel(s: torch.Tensor, t: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return torch.exp(-torch.cdist(s, t) ** 2 / (2 * bandwidth ** 2)).mean()


def mmd_interval(a: Any, b: Any, reps: int = 200, level: float = 0.95, seed: int = 0,
                 bandwidth: float = 0.5) -> tuple[float, float]:
    """A percentile bootstrap interval for mmd(a, b): both sets resampled with
    replacement `reps` times (resampling repeats points, which raises the biased
    estimate: compare intervals made the same way, not an interval with 0)."""
    p, q = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(reps):
        i = torch.randint(len(p), (len(p),), generator=g)
        j = torch.randint(len(q), (len(q),), generator=g)
        values.append(mmd(p[i], q[j], bandwidth))
    probs = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.tensor(values, dtype=torch.float64).quantile(probs)
    return float(lo), float(hi)
