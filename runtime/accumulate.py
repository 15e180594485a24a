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

from runtime.errors import ModelError


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


# Enumerating a discrete latent holds all its values in one tensor dimension; past this
# many values per element the tensors it makes would not fit in memory.
MAX_ENUMERATED_VALUES = 100_000


def _identity_past(phi: torch.Tensor, lengths: Any) -> torch.Tensor:
    """phi [..., T, K, K] with the steps at and past each sequence's length [...] replaced
    by the identity of the (logsumexp, +) semiring: 0 on the diagonal, -inf off it."""
    steps, k = phi.shape[-3], phi.shape[-1]
    lengths = torch.as_tensor(lengths, device=phi.device)
    valid = torch.arange(steps, device=phi.device) < lengths[..., None]  # [plates..., T]
    eye = torch.eye(k, dtype=torch.bool, device=phi.device)
    identity = torch.full((k, k), float("-inf"), dtype=phi.dtype,
                          device=phi.device).masked_fill(eye, 0.0)
    return torch.where(valid[..., None, None], phi, identity)


class Accumulator:
    def __init__(self, mode: Mode, batch_ndim: int, record: bool = False,
                 given: dict[str, torch.Tensor] | None = None,
                 scales: dict[str, float] | None = None,
                 locations: dict[str, str] | None = None):
        """`given`: constrained values that `constrain` returns as they are (no transform,
        no Jacobian): the latents a variational guide drew. `scales`: a factor per term's
        name, N / batch for the terms of a subsampled plate (runtime/svi.py)."""
        self.mode = mode
        self.batch_ndim = batch_ndim
        self.record = record
        self.given = given or {}
        self.scales = scales or {}
        self.locations = locations or {}  # variable -> "model.bgm:7", for messages
        self.total: Any = 0.0
        self._empty = True
        self.pointwise: dict[str, torch.Tensor] = {}
        self.deterministics: dict[str, torch.Tensor] = {}
        self.terms: dict[str, Any] = {}
        self.enumerated: dict[str, list[Any]] = {}  # discrete latent -> its terms
        self.conditionals: dict[str, torch.Tensor] = {}  # recorded: log p(z = k | rest)
        self.values: dict[str, torch.Tensor] = {}  # each enumerated latent's values
        self.chain_length: dict[str, int] = {}
        self.chains: dict[str, torch.Tensor] = {}  # recorded: a chain's log potentials
        self.windows: torch.Tensor | None = None  # a minibatch of causal-net windows

    def select(self, first: int, count: int, context: int) -> torch.Tensor | None:
        """The iterations of a causal factor whose prefixes fall in this minibatch's
        windows (None: every iteration; runtime/seqnets.py)."""
        if self.windows is None:
            return None
        from runtime.seqnets import iterations_in  # noqa: PLC0415
        return iterations_in(self.windows, first, count, context)

    def _add(self, key: str, value: Any) -> None:
        # the first term is the total as it is: adding it to 0.0 would cost an operation
        # and a node of the backward pass at every gradient (NUTS makes thousands)
        self.total = value if self._empty else self.total + value
        self._empty = False
        if self.record:
            self.terms[key] = self.terms.get(key, 0.0) + value

    def _scaled(self, name: str, value: Any) -> Any:
        scale = self.scales.get(name)
        return value if scale is None else value * scale

    def constrain(self, name: str, u: torch.Tensor, transform: Any,
                  jacobian: bool = True) -> torch.Tensor:
        """Map an unknown onto its support; a point parameter (`param`, jacobian=False) is
        never integrated, so it never gets the log-Jacobian, whatever the mode."""
        if name in self.given:
            return self.given[name]
        x = transform(u)
        if jacobian and self.mode.jacobian:
            ladj = transform.log_abs_det_jacobian(u, x)
            batch = u.shape[:self.batch_ndim]
            self._add(f"jacobian {name}", ladj.reshape(tuple(batch) + (-1,)).sum(-1))
        return x

    def prior(self, name: str, log_prob: torch.Tensor, ndims: int) -> None:
        if self.mode.priors:
            self._add(f"prior {name}", self._scaled(name, _sum_last(log_prob, ndims)))

    def likelihood(self, name: str, log_prob: torch.Tensor, ndims: int) -> None:
        if self.record:
            self.pointwise[name] = log_prob
        self._add(f"likelihood {name}", self._scaled(name, _sum_last(log_prob, ndims)))

    def factor(self, value: Any, ndims: int) -> None:
        self._add("factor", _sum_last(value, ndims))

    # ---- discrete latents summed out (compiler/passes/elimination.py plans which terms)
    def enumerate(self, name: str, values: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """All values of the discrete latent `name` at once, in a new leftmost dimension
        (left of the batch dims), the same for every element of its plate: [K, 1...,
        *shape]. What is computed from it carries that dimension until `sum_out`."""
        k = int(values.shape[0])
        if k > MAX_ENUMERATED_VALUES:
            raise ModelError(f"summing out the discrete latent '{name}' means enumerating "
                             f"{k} values per element, more than the limit of "
                             f"{MAX_ENUMERATED_VALUES}; narrow its bounds",
                             self.locations.get(name))
        if k < 1:
            raise ModelError(f"the discrete latent '{name}' has no possible value (its "
                             "upper bound is below its lower bound)", self.locations.get(name))
        self.enumerated[name] = []
        self.values[name] = values
        ones = (1,) * self.batch_ndim
        return values.reshape((k,) + ones + (1,) * len(shape)).expand((k,) + ones + tuple(shape))

    def enum_term(self, name: str, log_prob: Any, ndims: int) -> None:
        """A term depending on the enumerated `name`: [K, batch..., plate..., rest...];
        the trailing `ndims` dims (all but the plate's) are summed now."""
        self.enumerated[name].append(_sum_last(log_prob, ndims))

    def sum_out(self, name: str, keep: int, observed: tuple[str, ...] = (),
                mask: Any = None) -> None:
        """log sum_k exp(sum of the terms at value k), per element of the plate (the last
        `keep` dims), then the sum over the plate. Recorded: the conditional posterior
        log p(name = k | everything else) and, for a single observed variable, its
        pointwise marginal log-likelihood (for LOO). `mask` [plate...]: the elements that
        exist (a ragged loop); the others add exactly 0."""
        terms = self.enumerated.pop(name)
        joint = terms[0]
        for t in terms[1:]:
            joint = joint + t
        marginal = torch.logsumexp(joint, 0)
        if mask is not None:
            marginal = torch.where(mask, marginal, torch.zeros((), dtype=marginal.dtype,
                                                               device=marginal.device))
        if self.record:
            self.conditionals[name] = joint - marginal
            if len(observed) == 1 and keep > 0:
                self.pointwise[observed[0]] = marginal
        self._add(f"summed out {name}", self._scaled(name, _sum_last(marginal, keep)))

    # ---- a chain of discrete latents (z[t] on z[t-1]): the forward algorithm
    def enumerate_chain(self, name: str, values: torch.Tensor,
                        shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The values of z[t] (dim 0) and of z[t-1] (dim 1), left of the batch dims, each
        the same at every step: [K, 1, 1..., T] and [1, K, 1..., T] (with plates before
        the steps for a chain per sequence: [K, 1, 1..., N, T])."""
        self.enumerate(name, values, shape)  # the checks, the terms' list, the values
        k = int(values.shape[0])
        ones = (1,) * (self.batch_ndim + len(shape))
        full = (1,) * self.batch_ndim + tuple(shape)
        self.chain_length[name] = int(shape[-1])
        current = values.reshape((k, 1) + ones).expand((k, 1) + full)
        previous = values.reshape((1, k) + ones).expand((1, k) + full)
        return current, previous

    def chain_term(self, name: str, log_prob: Any, ndims: int, start: int,
                   timed: bool) -> None:
        """A factor of the chain: [K|1, K|1, batch..., steps] over steps start.. (timed)
        or [K|1, K|1, batch...] at step `start`; its other trailing `ndims` are summed."""
        t = _sum_last(log_prob, ndims)
        if not timed:
            t = t.unsqueeze(-1)
        self.enumerated[name].append((t, start))

    def sum_out_chain(self, name: str, plates: int = 0, lengths: Any = None) -> None:
        """log sum over all paths, by the parallel forward algorithm (runtime/hmm.py),
        one chain per element of the `plates` dims before the steps, summed over them.
        `lengths` [plates...]: sequences of different lengths (a ragged loop); the steps
        past each one's length are identity steps (the state stays, nothing is added),
        so the padding changes neither the sum nor, later, the paths' valid steps."""
        from runtime import hmm  # noqa: PLC0415
        length = self.chain_length[name]
        total: Any = 0.0
        for t, start in self.enumerated.pop(name):
            total = total + torch.nn.functional.pad(t, (start, length - start - t.shape[-1]))
        k = int(self.values[name].shape[0])
        total = total.expand((k, k) + tuple(total.shape[2:]))
        phi = total.permute(*range(2, total.dim()), 1, 0)  # [batch..., T, K(t-1), K(t)]
        if lengths is not None:
            phi = _identity_past(phi, lengths)
        if self.record:
            self.chains[name] = phi
        self._add(f"summed out {name}", _sum_last(hmm.log_likelihood(phi), plates))

    def deterministic(self, name: str, value: torch.Tensor) -> None:
        if self.record:
            self.deterministics[name] = value
