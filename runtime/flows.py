"""Invertible nets of coupling layers with alternating masks, as functions of one flat
weight vector. Layer k keeps the coordinates its mask m selects and moves the others by
an elementwise bijection whose parameters a conditioner MLP computes from the kept ones,
so its inverse is explicit and its Jacobian triangular:

- RealNVP (Dinh et al. 2017), affine couplings:
      y = m * x + (1 - m) * (x * exp(s) + t),   (s, t) = MLP_k(m * x),  s = tanh(.)
  with log |det dy/dx| = sum((1 - m) * s);
- NeuralSpline (Durkan et al. 2019), rational-quadratic spline couplings
  (runtime/splines.py): the moved half y_b = spline(x_b; MLP_k(x_a)) on [-B, B] (the
  identity outside), the kept half x_a as it is; only the moved coordinates are computed,
  so the conditioner maps the kept half to the moved half's spline parameters. Affine
  couplings only shift and scale, so a few of them cannot fold a Gaussian into two moons
  or a checkerboard; a spline per coordinate bends it freely.

A flow `x = f(u)` scores data by the change of variables: log p(x) = log p_u(f^-1(x)) +
log |det d f^-1 / dx|, and samples by pushing base draws forward.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from runtime.nets import mlp, mlp_init_scale, mlp_size, single_weights
from runtime.splines import params_per_dim, rq_spline

# a layer: (weights, layer index, its input) -> its output and log |det|, forward or
# inverse
Step = Callable[[torch.Tensor, int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# the last layer of a spline's conditioner starts this much smaller than torch.nn.Linear's
# default, so the flow starts near the identity instead of at a random warp
SPLINE_LAST_LAYER_INIT = 0.01


def _coupling_sizes(dim: int, hidden: int) -> tuple[int, ...]:
    return (int(dim), int(hidden), int(hidden), 2 * int(dim))


def realnvp_size(dim: int, layers: int, hidden: int) -> int:
    return int(layers) * mlp_size(_coupling_sizes(dim, hidden))


def realnvp_init_scale(dim: int, layers: int, hidden: int) -> torch.Tensor:
    return torch.cat([mlp_init_scale(_coupling_sizes(dim, hidden))] * int(layers))


def _mask(dim: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """Alternating halves: layer k keeps the first half when k is even, else the rest."""
    first = (torch.arange(dim, device=like.device) < (dim + 1) // 2).to(like.dtype)
    return first if k % 2 == 0 else 1 - first


def _conditioner(w: torch.Tensor, start: int, sizes: tuple[int, ...],
                 kept: torch.Tensor) -> torch.Tensor:
    return mlp(w[start:start + mlp_size(sizes)], sizes, "relu", kept, kept.dim() - 1)


def _affine(dim: int, hidden: int, inverse: bool) -> Step:
    sizes = _coupling_sizes(dim, hidden)

    def step(w: torch.Tensor, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = _mask(dim, k, x)
        out = _conditioner(w, k * mlp_size(sizes), sizes, x * m)
        s, t = torch.tanh(out[..., :dim]), out[..., dim:]
        if inverse:
            return m * x + (1 - m) * (x - t) * torch.exp(-s), -((1 - m) * s).sum(-1)
        return m * x + (1 - m) * (x * torch.exp(s) + t), ((1 - m) * s).sum(-1)
    return step


def _halves(dim: int, k: int) -> tuple[slice, slice]:
    """(kept, moved) coordinates of spline layer k: the first half moves the second when
    k is even and the reverse when it is odd; in one dimension every layer moves the
    only coordinate, conditioned on nothing."""
    if dim == 1:
        return slice(0, 0), slice(0, 1)
    half = dim // 2
    return (slice(0, half), slice(half, dim)) if k % 2 == 0 else \
        (slice(half, dim), slice(0, half))


def _spline_sizes(dim: int, hidden: int, bins: int, k: int) -> tuple[int, ...]:
    """Layer k's conditioner: its kept coordinates (one constant input when none are) to
    the raw parameters of a spline per moved coordinate."""
    kept, moved = _halves(dim, k)
    return (max(1, kept.stop - kept.start), int(hidden), int(hidden),
            (moved.stop - moved.start) * params_per_dim(bins))


def _spline_starts(dim: int, layers: int, hidden: int, bins: int) -> list[int]:
    """Where each layer's weights start in the flat vector, and the total at the end."""
    sizes = [mlp_size(_spline_sizes(dim, hidden, bins, k)) for k in range(layers)]
    return [sum(sizes[:k]) for k in range(layers + 1)]


def spline_flow_size(dim: int, layers: int, hidden: int, bins: int, bound: int) -> int:
    return _spline_starts(int(dim), int(layers), int(hidden), int(bins))[-1]


def spline_flow_init_scale(dim: int, layers: int, hidden: int, bins: int, bound: int,
                           last: float = SPLINE_LAST_LAYER_INIT) -> torch.Tensor:
    """torch.nn.Linear's initial half-widths, `last` times them in each conditioner's
    last layer."""
    parts = []
    for k in range(int(layers)):
        sizes = _spline_sizes(int(dim), int(hidden), int(bins), k)
        scale = mlp_init_scale(sizes)
        scale[-(sizes[-2] * sizes[-1] + sizes[-1]):] *= last
        parts.append(scale)
    return torch.cat(parts)


def _spline(shape: tuple[int, ...], inverse: bool) -> Step:
    dim, layers, hidden, bins, bound = shape
    starts = _spline_starts(dim, layers, hidden, bins)

    def step(w: torch.Tensor, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, moved = _halves(dim, k)
        given = x[..., kept] if dim > 1 else torch.zeros_like(x)
        out = _conditioner(w, starts[k], _spline_sizes(dim, hidden, bins, k), given)
        x_moved = x[..., moved]
        raw = out.reshape(*out.shape[:-1], x_moved.shape[-1], params_per_dim(bins))
        y, log_det = rq_spline(x_moved, raw, float(bound), inverse)
        parts = (x[..., kept], y) if kept.start == 0 else (y, x[..., kept])
        return torch.cat(parts, -1), log_det.sum(-1)
    return step


def _forward(w: torch.Tensor, dim: int, layers: int, u: Any, middle: int | None,
             step: Step) -> torch.Tensor:
    """x = f(u) for u [batch..., middle..., dim]: its first dims before the `middle`
    ones are batch dims, matched with w's (None: u has no batch dims)."""
    w1, batch = single_weights(w)
    x = torch.as_tensor(u, dtype=w.dtype, device=w.device)
    for k in range(layers):
        x = step(w1, k, x)[0]
    lead = 0 if middle is None else x.dim() - 1 - middle
    return _broadcast(x, batch, lead)


def _inverse(w: torch.Tensor, dim: int, layers: int, x: Any,
             step: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, log |det d f^-1 / dx|) for data x [..., dim] (no batch dims), with w's batch
    dims in front; the log-determinant is [batch..., ...]."""
    w1, batch = single_weights(w)
    u = torch.as_tensor(x, dtype=w.dtype, device=w.device)
    ladj = torch.zeros(u.shape[:-1], dtype=w.dtype, device=w.device)
    for k in reversed(range(layers)):
        u, log_det = step(w1, k, u)
        ladj = ladj + log_det
    return _broadcast(u, batch, 0), _broadcast(ladj, batch, 0)


def realnvp(w: torch.Tensor, shape: tuple[int, int, int], u: Any,
            middle: int | None = None) -> torch.Tensor:
    dim, layers, hidden = (int(s) for s in shape)
    return _forward(w, dim, layers, u, middle, _affine(dim, hidden, False))


def realnvp_inverse(w: torch.Tensor, shape: tuple[int, int, int],
                    x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    dim, layers, hidden = (int(s) for s in shape)
    return _inverse(w, dim, layers, x, _affine(dim, hidden, True))


def spline_flow(w: torch.Tensor, shape: tuple[int, ...], u: Any,
                middle: int | None = None) -> torch.Tensor:
    """The NeuralSpline flow; shape is (dim, layers, hidden, bins, bound)."""
    s = tuple(int(v) for v in shape)
    return _forward(w, s[0], s[1], u, middle, _spline(s, False))


def spline_flow_inverse(w: torch.Tensor, shape: tuple[int, ...],
                        x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s = tuple(int(v) for v in shape)
    return _inverse(w, s[0], s[1], x, _spline(s, True))


def _broadcast(r: torch.Tensor, batch: tuple[int, ...], lead: int) -> torch.Tensor:
    """r, whose first `lead` dims are batch dims of the input, with w's batch dims."""
    if not batch:
        return r
    front = torch.broadcast_shapes(batch, tuple(r.shape[:lead]))
    return r.expand(*front, *r.shape[lead:])
