"""Nets as functions of a flat weight vector, so that their weights are coordinates of
the model's unknowns like any point parameter, batched over chains or restarts.

`mlp(w, sizes, act, x, middle)`: x is [batch..., middle dims..., in] (or without the batch
dims when it is data), w is [batch..., P]; each layer is one (batched) matrix product over
all the middle dims at once; hidden layers use `act`, the output layer none.
"""
from __future__ import annotations

import math
from typing import Any

import torch

ACTIVATIONS = {
    "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "gelu": torch.nn.functional.gelu, "elu": torch.nn.functional.elu,
    "silu": torch.nn.functional.silu, "softplus": torch.nn.functional.softplus,
    "leaky_relu": torch.nn.functional.leaky_relu, "identity": lambda h: h,
}


def _layers(sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def mlp_size(sizes: tuple[int, ...]) -> int:
    """The number of weights: each layer's matrix and bias."""
    return sum(a * b + b for a, b in _layers(sizes))


def mlp_init_scale(sizes: tuple[int, ...]) -> torch.Tensor:
    """Per-weight half-widths of the initial uniform draw: 1/sqrt(fan-in), torch.nn.Linear's
    default, instead of the (-2, 2) used for other unknowns (which saturates a net)."""
    parts = [torch.full((a * b + b,), 1.0 / math.sqrt(a), dtype=torch.float64)
             for a, b in _layers(sizes)]
    return torch.cat(parts)


def _broadcast_copy(w: torch.Tensor) -> torch.Tensor | None:
    """The vector of w [batch..., P] when its batch dims only broadcast it (size 1 or
    stride 0: an expand), else None. Cheap: no comparison of values."""
    batch = w.shape[:-1]
    if all(s == 0 or n == 1 for s, n in zip(w.stride()[:-1], batch, strict=True)):
        return w.reshape(-1, w.shape[-1])[0] if batch else w
    return None


def single_weights(w: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The one weight vector of w [batch..., P] when its batch dims are copies of it
    (particles, or draws of one fit): the net is then evaluated once. Distinct weights
    per batch element are refused (nets are point parameters, fitted by svi, map or mle)."""
    batch = tuple(w.shape[:-1])
    shared = _broadcast_copy(w)
    if shared is not None:
        return shared, batch
    rows = w.reshape(-1, w.shape[-1])
    if torch.equal(rows, rows[:1].expand_as(rows)):
        return rows[0], batch
    raise NotImplementedError("a net with different weights per chain or draw "
                              "(fit it with svi, map or mle)")


def mlp(w: torch.Tensor, sizes: tuple[int, ...], act: str, x: Any, middle: int) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=w.dtype, device=w.device)
    n_in = int(sizes[0])
    lead = x.shape[:x.dim() - 1 - middle]
    mids = x.shape[x.dim() - 1 - middle:-1]
    h = x.reshape(tuple(lead) + (-1, n_in))
    batch = w.shape[:-1]
    layers = _layers(sizes)
    w1 = _broadcast_copy(w)
    if w1 is not None:  # one weight vector broadcast over particles or draws: fused products
        h = _layers_of(w1, layers, act, h)
        h = h.expand(*torch.broadcast_shapes(tuple(batch), tuple(h.shape[:-2])), *h.shape[-2:])
    else:
        start = 0
        for i, (a, b) in enumerate(layers):
            weight = w[..., start:start + a * b].reshape(tuple(batch) + (b, a))
            bias = w[..., start + a * b:start + a * b + b]
            start += a * b + b
            h = h @ weight.mT + bias.unsqueeze(-2)
            if i < len(layers) - 1:
                h = ACTIVATIONS[act](h)
    return h.reshape(tuple(h.shape[:-2]) + tuple(mids) + (h.shape[-1],))


def _layers_of(w: torch.Tensor, layers: list[tuple[int, int]], act: str,
               h: torch.Tensor) -> torch.Tensor:
    # one split (its backward is one concatenation), not a slice per tensor (whose
    # backward each fills a gradient the size of the whole vector)
    parts = w.split([n for a, b in layers for n in (a * b, b)])
    for i, (a, b) in enumerate(layers):
        weight, bias = parts[2 * i].view(b, a), parts[2 * i + 1]
        h = torch.nn.functional.linear(h, weight, bias)
        if i < len(layers) - 1:
            h = ACTIVATIONS[act](h)
    return h
