"""Closed-form log densities for the distributions models use most.

Constructing a torch.distributions object costs tens of microseconds (argument
broadcasting, constraint bookkeeping), which dominates a small model's gradient in NUTS.
These classes hold their arguments and compute log_prob with a few tensor operations;
anything else (sampling, expand, event_shape) is delegated to the equivalent torch
distribution, built only when asked. tests/test_lpdf.py checks every one against torch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

_LOG_2PI = math.log(2 * math.pi)
_LOG_PI = math.log(math.pi)
_LOG_2 = math.log(2.0)


def _log(x: Any) -> Any:
    """log of a tensor, or of a Python number in double precision (never float32). As
    torch.log, NaN below 0 and -inf at 0: math.log would raise (a rejected point, not an
    error, when a model's constant makes a density undefined)."""
    if isinstance(x, (int, float)):
        return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)
    return torch.log(x)


def _lgamma(x: Any) -> Any:
    if isinstance(x, (int, float)):
        try:
            return math.lgamma(x) if x > 0 or x != math.floor(x) else math.inf
        except OverflowError:  # lgamma(1e308): beyond every float
            return math.inf
    return torch.lgamma(x)


def _log1p(x: Any) -> Any:
    if isinstance(x, (int, float)):
        return math.log1p(x) if x > -1 else (-math.inf if x == -1 else math.nan)
    return torch.log1p(x)


def _where_positive(lp: Any, *params: Any) -> Any:
    """lp, and -inf wherever a parameter that must be positive is not.

    Most densities become NaN outside their parameters' support (the log of a negative
    scale), which the engines reject. Those whose formula stays finite there (a Gamma
    with a negative shape: lgamma is finite at -0.5) would silently give a wrong density
    at a point of a trajectory where a computed shape turns negative, so they are guarded:
    Stan rejects such a point."""
    for p in params:
        if isinstance(p, torch.Tensor):
            lp = torch.where(p > 0, lp, -math.inf)
        elif not p > 0:
            lp = torch.full_like(torch.as_tensor(lp), -math.inf)
    return lp


class Fast:
    """A distribution with a hand-written log_prob and a lazily built torch twin."""

    def __init__(self, build: Callable[[], Any], log_prob: Callable[[Any], Any]):
        self._build = build
        self._log_prob = log_prob
        self._twin: Any = None

    def log_prob(self, value: Any) -> Any:
        return self._log_prob(value)

    @property
    def twin(self) -> Any:
        if self._twin is None:
            self._twin = self._build()
        return self._twin

    def __getattr__(self, name: str) -> Any:  # sample, expand, event_shape, support, ...
        return getattr(self.twin, name)


def normal(mu: Any, sigma: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        z = (x - mu) / sigma
        return -0.5 * z * z - _log(sigma) - 0.5 * _LOG_2PI
    return lp


def half_normal(sigma: Any) -> Callable[[Any], Any]:
    base = normal(0.0, sigma)
    return lambda x: base(x) + _LOG_2


def cauchy(mu: Any, sigma: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        z = (x - mu) / sigma
        return -_LOG_PI - _log(sigma) - torch.log1p(z * z)
    return lp


def half_cauchy(sigma: Any) -> Callable[[Any], Any]:
    base = cauchy(0.0, sigma)
    return lambda x: base(x) + _LOG_2


def student_t(nu: Any, mu: Any, sigma: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        n = nu
        z = (x - mu) / sigma
        return (_lgamma((n + 1) / 2) - _lgamma(n / 2) - 0.5 * _log(n * math.pi)
                - _log(sigma) - (n + 1) / 2 * torch.log1p(z * z / n))
    return lp


def laplace(mu: Any, b: Any) -> Callable[[Any], Any]:
    return lambda x: -_log(2 * b) - torch.abs(x - mu) / b


def exponential(rate: Any) -> Callable[[Any], Any]:
    return lambda x: _log(rate) - rate * x


def gamma(alpha: Any, beta: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        a, b = alpha, beta
        return _where_positive(a * _log(b) - _lgamma(a) + (a - 1) * torch.log(x) - b * x, a)
    return lp


def inverse_gamma(alpha: Any, beta: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        a, b = alpha, beta
        return _where_positive(a * _log(b) - _lgamma(a) - (a + 1) * torch.log(x) - b / x, a)
    return lp


def beta(alpha: Any, beta_: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        a, b = alpha, beta_
        return _where_positive((a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x)
                               - (_lgamma(a) + _lgamma(b) - _lgamma(a + b)), a, b)
    return lp


def log_normal(mu: Any, sigma: Any) -> Callable[[Any], Any]:
    base = normal(mu, sigma)

    def lp(x: Any) -> Any:
        log_x = torch.log(x)
        return base(log_x) - log_x
    return lp


def bernoulli_logits(logits: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        if isinstance(logits, (int, float)):
            return x * logits - (max(logits, 0.0) + math.log1p(math.exp(-abs(logits))))
        # for x in {0, 1}, x l - softplus(l) = log sigmoid((2x - 1) l): two operations on
        # the [chains, N] logits and two in the backward pass, not three and three (a
        # logistic regression's gradient is mostly these)
        return torch.nn.functional.logsigmoid((2 * x - 1) * logits)
    return lp


def bernoulli_probs(p: Any) -> Callable[[Any], Any]:
    def lp(x: Any) -> Any:
        if isinstance(p, (int, float)):
            return x * _log(p) + (1 - x) * _log1p(-p)
        # xlogy(0, p) is 0 for any p: a probability outside [0, 1] is guarded
        return torch.where((p >= 0) & (p <= 1), torch.xlogy(x, p) + torch.xlogy(1 - x, 1 - p),
                           -math.inf)
    return lp


def poisson_rate(rate: Any) -> Callable[[Any], Any]:
    return lambda x: torch.xlogy(x, torch.as_tensor(rate)) - rate - torch.lgamma(x + 1)


def poisson_log_rate(log_rate: Any) -> Callable[[Any], Any]:
    return lambda x: x * log_rate - torch.exp(torch.as_tensor(log_rate)) - torch.lgamma(x + 1)
