"""Bijections from unconstrained space onto each support, from torch's constraint registry.

`biject_to` gives the transform with its log-Jacobian; bgm adds only what torch lacks:
an `ordered` constraint and its transform (first element free, then positive
increments through exp), registered in the same registry so it is found the same way.
"""
from __future__ import annotations

import torch
from torch.distributions import constraints, transforms
from torch.distributions.constraint_registry import biject_to


class _Ordered(constraints.Constraint):
    """Vectors strictly increasing along the last dimension."""

    event_dim = 1

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value[..., 1:] > value[..., :-1]).all(-1)


ordered_vector = _Ordered()


class OrderedTransform(transforms.Transform):
    """y_1 = x_1, y_k = y_{k-1} + exp(x_k): the unconstrained parameterisation Stan uses."""

    domain = constraints.real_vector
    codomain = ordered_vector
    bijective = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderedTransform)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        head = x[..., :1]
        return torch.cat([head, head + torch.cumsum(torch.exp(x[..., 1:]), -1)], -1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([y[..., :1], torch.log(y[..., 1:] - y[..., :-1])], -1)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x[..., 1:].sum(-1)


@biject_to.register(_Ordered)
def _ordered_bijection(constraint: _Ordered) -> transforms.Transform:
    return OrderedTransform()


def real() -> transforms.Transform:
    return biject_to(constraints.real)


def lower_bound(lower: float | torch.Tensor) -> transforms.Transform:
    if isinstance(lower, (int, float)) and lower == 0:
        return biject_to(constraints.positive)
    return biject_to(constraints.greater_than(lower))


def upper_bound(upper: float | torch.Tensor) -> transforms.Transform:
    return biject_to(constraints.less_than(upper))


def interval(lower: float | torch.Tensor, upper: float | torch.Tensor) -> transforms.Transform:
    if isinstance(lower, (int, float)) and isinstance(upper, (int, float)) and \
            (lower, upper) == (0, 1):
        return biject_to(constraints.unit_interval)
    return biject_to(constraints.interval(lower, upper))


def simplex() -> transforms.Transform:
    return biject_to(constraints.simplex)


def ordered() -> transforms.Transform:
    return biject_to(ordered_vector)


def cholesky_corr() -> transforms.Transform:
    return biject_to(constraints.corr_cholesky)


def unconstrained_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a latent's unconstrained coordinates."""
    if kind == "simplex":
        return shape[:-1] + (shape[-1] - 1,)
    if kind == "cholesky_corr":
        k = shape[-1]
        return shape[:-2] + (k * (k - 1) // 2,)
    return shape


def event_rank(kind: str) -> int:
    """How many trailing dims one application of the transform consumes."""
    return {"simplex": 1, "ordered": 1, "cholesky_corr": 2}.get(kind, 0)
