"""The log-density accumulator generated code adds terms to.

One object decides what a term means for the method at hand: priors are dropped for
MLE (rule 23), Jacobians are added only when sampling the posterior (MAP is the mode on
the constrained space), and pointwise log-likelihoods and deterministic nodes are kept
only when asked for (output files, LOO).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Mode:
    jacobian: bool
    priors: bool

    @staticmethod
    def for_method(method: str) -> Mode:
        if method == "mle":
            return Mode(jacobian=False, priors=False)
        if method == "map":
            return Mode(jacobian=False, priors=True)
        return Mode(jacobian=True, priors=True)


def _sum_last(t: Any, ndims: int) -> Any:
    if not isinstance(t, torch.Tensor) or ndims <= 0:
        return t
    return t.sum(dim=tuple(range(-ndims, 0)))


class Accumulator:
    def __init__(self, mode: Mode, batch_ndim: int, record: bool = False):
        self.mode = mode
        self.batch_ndim = batch_ndim
        self.record = record
        self.total: Any = 0.0
        self.pointwise: dict[str, torch.Tensor] = {}
        self.deterministics: dict[str, torch.Tensor] = {}
        self.terms: dict[str, Any] = {}

    def _add(self, key: str, value: Any) -> None:
        self.total = self.total + value
        if self.record:
            self.terms[key] = self.terms.get(key, 0.0) + value

    def constrain(self, name: str, u: torch.Tensor, transform: Any,
                  jacobian: bool = True) -> torch.Tensor:
        """Map an unknown onto its support; a point parameter (`param`, jacobian=False) is
        never integrated, so it never gets the log-Jacobian, whatever the mode."""
        x = transform(u)
        if jacobian and self.mode.jacobian:
            ladj = transform.log_abs_det_jacobian(u, x)
            batch = u.shape[:self.batch_ndim]
            self._add(f"jacobian {name}", ladj.reshape(tuple(batch) + (-1,)).sum(-1))
        return x

    def prior(self, name: str, log_prob: torch.Tensor, ndims: int) -> None:
        if self.mode.priors:
            self._add(f"prior {name}", _sum_last(log_prob, ndims))

    def likelihood(self, name: str, log_prob: torch.Tensor, ndims: int) -> None:
        if self.record:
            self.pointwise[name] = log_prob
        self._add(f"likelihood {name}", _sum_last(log_prob, ndims))

    def factor(self, value: Any, ndims: int) -> None:
        self._add("factor", _sum_last(value, ndims))

    def deterministic(self, name: str, value: torch.Tensor) -> None:
        if self.record:
            self.deterministics[name] = value
