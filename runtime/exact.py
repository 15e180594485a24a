"""Closed-form posteriors of conjugate models (`--method exact`).

The compiler finds the conjugate pairs (compiler/passes/conjugacy.py); the application layer
hands them over as the plan declared here (ConjugateUpdate, LikelihoodTerm and the known
values), the runtime's own types, so no compiler object reaches the runtime. This module
computes the posterior's parameters from the data and draws from it, in the same output
format as NUTS.

A likelihood term uses only the observations its loops range over (Term.ranges): the
leading dimensions of the observed variable, and of data read at the loop indices, are
cut to those ranges before the sufficient statistics are summed (summing the whole
variable counted elements no `~` generates, or counted some twice).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.evaluate import inference_data, log_prob_in_chunks


@dataclass(frozen=True)
class DataValue:
    """A data variable read whole, or cut to the term's loop ranges (`at_loops`)."""

    name: str
    at_loops: bool = False


@dataclass(frozen=True)
class VectorValue:
    items: tuple[Value, ...]


@dataclass(frozen=True)
class OnesValue:
    """`ones(size)`."""

    size: Value


Value = float | DataValue | VectorValue | OnesValue
# a size as plain terms, the sum of coefficient * product(data sizes named)
SizeTerms = tuple[tuple[tuple[str, ...], int], ...]


@dataclass(frozen=True)
class LikelihoodTerm:
    """One likelihood statement: `observed` ~ family(latent, others...), observing the
    elements of the leading dimensions inside `ranges` (inclusive, 1-based, outer loop
    first; empty: the whole variable)."""

    observed: str
    family: str
    others: dict[str, Value]
    ranges: tuple[tuple[SizeTerms, SizeTerms], ...] = ()


@dataclass(frozen=True)
class ConjugateUpdate:
    """A latent with a conjugate prior and the likelihood terms it enters."""

    latent: str
    prior: str
    prior_args: dict[str, Value]
    terms: tuple[LikelihoodTerm, ...]


def _value(spec: Value, data: Any, window: tuple[slice, ...] = ()) -> np.ndarray:
    """A number, data (cut to `window` when read at the loop indices), a vector literal
    or ones(size)."""
    if isinstance(spec, DataValue):
        value = _array(data[spec.name])
        return value[window] if spec.at_loops else value
    if isinstance(spec, VectorValue):
        return np.array([float(_value(item, data)) for item in spec.items])
    if isinstance(spec, OnesValue):
        return np.ones(int(_value(spec.size, data)))
    return np.asarray(float(spec))


def _array(value: Any) -> np.ndarray:
    return np.asarray(torch.as_tensor(value).cpu(), dtype=float)


def _size(terms: SizeTerms, data: Any) -> int:
    """A size given as plain terms (((names...), coefficient), ...), evaluated on data."""
    total = 0
    for names, coefficient in terms:
        product = coefficient
        for name in names:
            product *= int(data[name])
        total += product
    return total


def _window(ranges: tuple[tuple[SizeTerms, SizeTerms], ...], data: Any) -> tuple[slice, ...]:
    """1-based inclusive loop ranges as slices of the leading dimensions (empty when
    hi < lo, as an empty loop)."""
    out = []
    for lo, hi in ranges:
        a, b = _size(lo, data), _size(hi, data)
        out.append(slice(a - 1, max(b, a - 1)))
    return tuple(out)


def posterior_parameters(plan: list[ConjugateUpdate],
                         data: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """For each latent: (family, parameters) of its exact posterior."""
    out = {}
    for c in plan:
        prior = {k: _value(v, data) for k, v in c.prior_args.items()}
        stats = []
        for t in c.terms:
            window = _window(t.ranges, data)
            stats.append((t.family, _array(data[t.observed])[window],
                          {k: _value(v, data, window) for k, v in t.others.items()}))
        out[c.latent] = _update(c.prior, prior, stats)
    return out


def _update(prior: str, p: dict[str, np.ndarray], stats: list[Any]) -> tuple[str, dict]:
    if prior == "Beta":
        a, b = float(p["alpha"]), float(p["beta"])
        for family, y, other in stats:
            trials = np.broadcast_to(other["n"], y.shape) if family == "Binomial" else 1.0
            a += float(y.sum())
            b += float((trials - y).sum())
        return "Beta", {"alpha": a, "beta": b}
    if prior == "Gamma":
        a, b = float(p["alpha"]), float(p["beta"])
        for _, y, _ in stats:
            a += float(y.sum())
            b += float(y.size)
        return "Gamma", {"alpha": a, "beta": b}
    if prior == "Normal":
        precision = 1.0 / float(p["sigma"]) ** 2
        weighted = float(p["mu"]) * precision
        for _, y, other in stats:
            tau = np.broadcast_to(1.0 / other["sigma"] ** 2, y.shape)
            precision += float(tau.sum())
            weighted += float((tau * y).sum())
        return "Normal", {"mu": weighted / precision, "sigma": precision ** -0.5}
    alpha = np.array(p["alpha"], dtype=float)  # Dirichlet
    for _, y, _ in stats:
        alpha = alpha + np.bincount(y.astype(int).ravel() - 1, minlength=alpha.size)
    return "Dirichlet", {"alpha": alpha.tolist()}


def describe(params: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for name, (family, args) in params.items():
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in args.items())
        lines.append(f"{name} | data ~ {family}({shown})")
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(f"{x:.6g}" for x in v) + "]"
    return f"{v:.6g}"


def _sampler(family: str, args: dict[str, Any], dtype: torch.dtype) -> Any:
    t = {k: torch.as_tensor(v, dtype=dtype) for k, v in args.items()}
    if family == "Beta":
        return torch.distributions.Beta(t["alpha"], t["beta"])
    if family == "Gamma":
        return torch.distributions.Gamma(t["alpha"], t["beta"])
    if family == "Normal":
        return torch.distributions.Normal(t["mu"], t["sigma"])
    return torch.distributions.Dirichlet(t["alpha"])


def run_exact(model: Any, plan: list[ConjugateUpdate], draws: int, chains: int, seed: int,
              log_likelihood: str = "auto") -> Any:
    """Exact draws of every latent, written like NUTS output (unconstrained internally)."""
    params = posterior_parameters(plan, model.data)
    torch.manual_seed(seed)
    values = {name: _sampler(fam, args, model.dtype).sample((chains, draws))
              for name, (fam, args) in params.items()}
    theta = model.unconstrain(values, batch_ndim=2)
    attrs = {"model": model.name, "method": "exact", "seed": seed,
             "posterior": "; ".join(describe(params))}
    lp = log_prob_in_chunks(model, theta)
    return inference_data(model, theta, {"lp": lp}, attrs, log_likelihood), params
