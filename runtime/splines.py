"""Monotone rational-quadratic splines (Durkan, Bekasov, Murray and Papamakarios 2019,
"Neural Spline Flows"): the elementwise bijection of a neural-spline coupling layer.

On [-B, B] the spline has K bins whose widths and heights are softmaxes of raw numbers
(each at least MIN_BIN of the interval) and K + 1 knot derivatives, the two outer ones
fixed at 1 so that it joins the identity outside [-B, B] with a continuous derivative
(the "linear tails" of the paper). Inside bin k, with xi = (x - x_k) / w_k in [0, 1] and
s_k = h_k / w_k,
    y = y_k + h_k (s_k xi^2 + d_k xi (1 - xi)) / (s_k + (d_k + d_{k+1} - 2 s_k) xi (1 - xi)),
whose derivative is positive in closed form, and whose inverse is the root of a quadratic.

Why by hand: nflows (unmaintained since 2020) and zuko implement the same function, but
as modules owning their parameters; here the spline's parameters are outputs of a
coupling net evaluated from one flat weight vector (runtime/nets.py), and the function is
these sixty lines, checked against autograd's Jacobian (tests/test_splines.py).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MIN_BIN = 1e-3  # smallest bin width or height, as a fraction of the interval
MIN_SLOPE = 1e-3  # smallest derivative at a knot
# raw derivative 0 means slope 1 (softplus(_SHIFT) + MIN_SLOPE = 1): a net whose last
# layer starts near zero starts as the identity
_SHIFT = math.log(math.expm1(1 - MIN_SLOPE))


def params_per_dim(bins: int) -> int:
    """Raw numbers per transformed coordinate: K widths, K heights, K - 1 inner slopes."""
    return 3 * int(bins) - 1


def _knots(raw: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(knot positions [..., K + 1] from -B to B, bin sizes [..., K]) from raw sizes."""
    k = raw.shape[-1]
    frac = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw, -1)
    inner = torch.cumsum(frac[..., :-1], -1) * 2 * bound - bound
    ends = raw.new_full(raw.shape[:-1] + (1,), float(bound))
    knots = torch.cat([-ends, inner, ends], -1)  # exactly -B and B at the ends
    return knots, knots[..., 1:] - knots[..., :-1]


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(-1, idx).squeeze(-1)


def rq_spline(x: torch.Tensor, raw: torch.Tensor, bound: float,
              inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, log |dy/dx|) elementwise for x [...] and its raw parameters raw [..., 3K - 1];
    with inverse=True, (x, log |dx/dy|) of the inverse map at y = x. The identity, with
    log-derivative 0, outside [-bound, bound]."""
    k = (raw.shape[-1] + 1) // 3
    xs, widths = _knots(raw[..., :k], bound)
    ys, heights = _knots(raw[..., k:2 * k], bound)
    ones = raw.new_ones(raw.shape[:-1] + (1,))
    slopes = torch.cat([ones, MIN_SLOPE + F.softplus(raw[..., 2 * k:] + _SHIFT), ones], -1)
    inside = (x >= -bound) & (x <= bound)
    v = x.clamp(-bound, bound)  # outside, any bin will do: the result is discarded
    grid = ys if inverse else xs
    idx = ((v.unsqueeze(-1) >= grid[..., 1:-1]).sum(-1, keepdim=True))
    x_k, w, y_k, h = _gather(xs, idx), _gather(widths, idx), _gather(ys, idx), \
        _gather(heights, idx)
    d0, d1 = _gather(slopes, idx), _gather(slopes[..., 1:], idx)
    s = h / w
    bend = d0 + d1 - 2 * s
    if inverse:
        dy = v - y_k
        a = h * (s - d0) + dy * bend
        b = h * d0 - dy * bend
        c = -s * dy
        xi = (2 * c) / (-b - (b * b - 4 * a * c).clamp(min=0).sqrt())
        out = xi * w + x_k
    else:
        xi = (v - x_k) / w
        out = y_k + h * (s * xi ** 2 + d0 * xi * (1 - xi)) / (s + bend * xi * (1 - xi))
    t = xi * (1 - xi)
    log_slope = 2 * torch.log(s) + torch.log(d1 * xi ** 2 + 2 * s * t + d0 * (1 - xi) ** 2) \
        - 2 * torch.log(s + bend * t)
    log_det = -log_slope if inverse else log_slope
    return torch.where(inside, out, x), torch.where(inside, log_det, torch.zeros_like(x))
