"""RealNVP (Dinh et al. 2017): an invertible net of affine coupling layers with
alternating masks, as a function of one flat weight vector.

Layer k keeps the coordinates its mask selects and moves the others:
    y = m * x + (1 - m) * (x * exp(s) + t),   (s, t) = MLP_k(m * x),  s = tanh(.)
so its inverse is explicit and log |det dy/dx| = sum((1 - m) * s). A flow `x = f(u)`
scores data by the change of variables: log p(x) = log p_u(f^-1(x)) + log |det
d f^-1 / dx|, and samples by pushing base draws forward.
"""
from __future__ import annotations

from typing import Any

import torch

from runtime.nets import mlp, mlp_init_scale, mlp_size, single_weights


def _coupling_sizes(dim: int, hidden: int) -> tuple[int, ...]:
    return (int(dim), int(hidden), int(hidden), 2 * int(dim))


def realnvp_size(dim: int, layers: int, hidden: int) -> int:
    return int(layers) * mlp_size(_coupling_sizes(dim, hidden))


def realnvp_init_scale(dim: int, layers: int, hidden: int) -> torch.Tensor:
    return torch.cat([mlp_init_scale(_coupling_sizes(dim, hidden))] * int(layers))


def _masks(dim: int, layers: int, like: torch.Tensor) -> list[torch.Tensor]:
    """Alternating halves: layer k keeps the first half when k is even, else the rest."""
    first = (torch.arange(dim, device=like.device) < (dim + 1) // 2).to(like.dtype)
    return [first if k % 2 == 0 else 1 - first for k in range(layers)]


def _shift_scale(w: torch.Tensor, k: int, dim: int, hidden: int,
                 kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = _coupling_sizes(dim, hidden)
    n = mlp_size(sizes)
    out = mlp(w[k * n:(k + 1) * n], sizes, "relu", kept, kept.dim() - 1)
    return torch.tanh(out[..., :dim]), out[..., dim:]


def realnvp(w: torch.Tensor, shape: tuple[int, int, int], u: Any,
            middle: int | None = None) -> torch.Tensor:
    """x = f(u) for u [batch..., middle..., dim]: its first dims before the `middle`
    ones are batch dims, matched with w's (None: u has no batch dims)."""
    dim, layers, hidden = (int(s) for s in shape)
    w1, batch = single_weights(w)
    x = torch.as_tensor(u, dtype=w.dtype, device=w.device)
    for k, m in enumerate(_masks(dim, layers, x)):
        s, t = _shift_scale(w1, k, dim, hidden, x * m)
        x = m * x + (1 - m) * (x * torch.exp(s) + t)
    lead = 0 if middle is None else x.dim() - 1 - middle
    return _broadcast(x, batch, lead)


def realnvp_inverse(w: torch.Tensor, shape: tuple[int, int, int],
                    x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, log |det d f^-1 / dx|) for data x [..., dim] (no batch dims), with w's batch
    dims in front; the log-determinant is [batch..., ...]."""
    dim, layers, hidden = (int(s) for s in shape)
    w1, batch = single_weights(w)
    u = torch.as_tensor(x, dtype=w.dtype, device=w.device)
    ladj = torch.zeros(u.shape[:-1], dtype=w.dtype, device=w.device)
    for k, m in reversed(list(enumerate(_masks(dim, layers, u)))):
        s, t = _shift_scale(w1, k, dim, hidden, u * m)
        u = m * u + (1 - m) * (u - t) * torch.exp(-s)
        ladj = ladj - ((1 - m) * s).sum(-1)
    return _broadcast(u, batch, 0), _broadcast(ladj, batch, 0)


def _broadcast(r: torch.Tensor, batch: tuple[int, ...], lead: int) -> torch.Tensor:
    """r, whose first `lead` dims are batch dims of the input, with w's batch dims."""
    if not batch:
        return r
    front = torch.broadcast_shapes(batch, tuple(r.shape[:lead]))
    return r.expand(*front, *r.shape[lead:])
