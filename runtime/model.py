"""CompiledModel: the base class of every generated model class.

It binds a model to its data (loaded, checked, transformed, on a device), packs the
latent variables' unconstrained coordinates into one flat vector per batch element,
and offers the log density and the samplers that inference engines call. Engines see
only `log_prob(theta)` with theta of shape [..., dim]: one call evaluates every chain.

A point where the density is undefined (a Cholesky factorisation of a matrix that is not
positive definite, a singular solve, a distribution argument outside its support) is a
rejected point, as in Stan: `log_prob` is -inf there with a zero gradient, for the batch
elements (chains) concerned only. torch raises for the whole batch in some of these
cases; `log_prob` then evaluates the batch elements one by one (`per_point`).
"""
from __future__ import annotations

import dis
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any

import torch

from runtime.accumulate import Accumulator, Mode
from runtime.data import load_data
from runtime.device import default_dtype, resolve_device
from runtime.errors import ModelError
from runtime.memory import return_freed_memory
from runtime.ops import Data
from runtime.ragged import ragged_ends
from runtime.transforms import unconstrained_shape

# ---- numerical failures: rejected points, not errors -------------------------------------

# What torch (or Python's math) raises at a point where a density is undefined, as opposed
# to a bug: torch.linalg's factorisations and solves, torch.distributions' argument checks
# (distributions torch builds internally validate their arguments), math.log(-1).
_FAILURE_MESSAGES = ("to satisfy the constraint", "within the support", "math domain error")

# Accumulator methods whose first argument names the term's variable.
_TERM_METHODS = frozenset({"prior", "likelihood", "enum_term", "chain_term", "constrain",
                           "deterministic"})


def numerical_failure(exc: BaseException) -> bool:
    """Whether `exc` says the log density is undefined at the point, not that it is wrong."""
    if isinstance(exc, torch.linalg.LinAlgError):
        return True
    return isinstance(exc, ValueError) and any(m in str(exc) for m in _FAILURE_MESSAGES)


def rejected(theta: torch.Tensor) -> torch.Tensor:
    """-inf for each point of theta [..., dim], connected to theta with a zero gradient (so
    that autograd.grad of a batch containing it still works)."""
    return (theta * 0).sum(-1) - math.inf


def per_point(log_prob: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
              failure: BaseException) -> torch.Tensor:
    """log_prob(theta) [...] evaluated one batch element at a time after the batched call
    raised `failure` (a numerical failure): the elements that raise one too are rejected
    points (-inf, zero gradient); the others keep their value and gradient."""
    if theta.dim() < 2:
        return rejected(theta)
    flat = theta.reshape(-1, theta.shape[-1])
    out = []
    for i in range(flat.shape[0]):
        row = flat[i:i + 1]
        try:
            lp = log_prob(row)
        except Exception as exc:
            if not numerical_failure(exc):
                raise
            lp = rejected(row)
        if tuple(lp.shape) != (1,):  # the density does not evaluate rows on their own
            raise failure
        out.append(lp)
    return torch.cat(out).reshape(theta.shape[:-1])


@functools.lru_cache(maxsize=256)
def _statement_name(code: CodeType, line: int) -> str | None:
    """The variable the generated statement on `line` defines or adds a term for: the
    first argument of `acc__.prior('a', ...)`, else the target of `L = ...`."""
    ins = [i for i in dis.get_instructions(code)
           if i.positions is not None and i.positions.lineno == line]
    for k, i in enumerate(ins[:-1]):
        after = ins[k + 1]
        if i.opname in ("LOAD_METHOD", "LOAD_ATTR") and i.argval in _TERM_METHODS \
                and after.opname == "LOAD_CONST" and isinstance(after.argval, str):
            return after.argval
    stores = [i.argval for i in ins if i.opname in ("STORE_FAST", "STORE_NAME", "STORE_DEREF")]
    return stores[0] if stores else None


def failure_site(exc: BaseException, locations: dict[str, str]) -> str | None:
    """'model.bgm:6 (L)': the statement of the generated model code where `exc` was raised
    (its innermost generated method, as the traceback gives it)."""
    tb: TracebackType | None = exc.__traceback__
    site: tuple[CodeType, int] | None = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("<bgmc:") and not code.co_name.startswith("<"):
            site = (code, tb.tb_lineno)
        tb = tb.tb_next
    if site is None:
        return None
    name = _statement_name(*site)
    if name is None:
        return None
    where = locations.get(name)
    return f"{where} ({name})" if where else f"'{name}'"


def describe_failure(exc: BaseException, locations: dict[str, str]) -> str:
    """A numerical failure for a message: where in the model, and torch's reason."""
    text = re.sub(r"\(Batch element \d+\): ", "", str(exc)).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    site = failure_site(exc, locations)
    return f"{site}: {reason}" if site else reason


@dataclass(frozen=True)
class Latent:
    """A latent variable, or a point parameter (`param`), as the generated code declares
    it: both are coordinates of the unconstrained vector."""

    name: str
    shape: tuple[int, ...]
    kind: str  # real | bounded | simplex | ordered | cholesky_corr | net
    init_scale: Any = None  # half-widths of the initial uniform draw (a net's fan-in)
    init_centre: Any = None  # centres of that draw (a LayerNorm's weights start at 1)

    @property
    def unconstrained_shape(self) -> tuple[int, ...]:
        return unconstrained_shape(self.kind, self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.unconstrained_shape:
            n *= d
        return n


class Packer:
    """Flat unconstrained vectors [..., dim] <-> dicts of per-latent tensors."""

    def __init__(self, latents: tuple[Latent, ...]):
        self.latents = latents
        self.slices: dict[str, slice] = {}
        start = 0
        for lat in latents:
            self.slices[lat.name] = slice(start, start + lat.size)
            start += lat.size
        self.dim = start

    def unpack(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = theta.shape[:-1]
        return {lat.name: theta[..., self.slices[lat.name]].reshape(
            tuple(batch) + lat.unconstrained_shape) for lat in self.latents}

    def pack(self, parts: dict[str, torch.Tensor], batch_ndim: int) -> torch.Tensor:
        flat = [parts[lat.name].reshape(tuple(parts[lat.name].shape[:batch_ndim]) + (-1,))
                for lat in self.latents]
        return torch.cat(flat, -1)


class _KeepingConstrained(Accumulator):
    """An accumulator that also keeps each constrained value (for `constrain`). A subclass,
    not a wrapper patched onto an instance: that closure made a reference cycle which held
    every recorded data-sized tensor until the cycle collector ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kept: dict[str, torch.Tensor] = {}

    def constrain(self, name: str, u: torch.Tensor, transform: Any,
                  jacobian: bool = True) -> torch.Tensor:
        x = super().constrain(name, u, transform, jacobian)
        self.kept[name] = x
        return x


class CompiledModel:
    """Generated subclasses set the class attributes and define the model's functions."""

    name = "Model"
    source = "<model>"
    data_specs: tuple[Any, ...] = ()
    latent_names: tuple[str, ...] = ()
    observed_names: tuple[str, ...] = ()
    deterministic_names: tuple[str, ...] = ()
    transformed_data_names: tuple[str, ...] = ()
    param_names: tuple[str, ...] = ()
    discrete_names: tuple[str, ...] = ()  # summed out in the log density, drawn by samplers
    net_names: tuple[str, ...] = ()  # nets: their weights are among the param_names
    latents_without_likelihood: tuple[str, ...] = ()
    has_factor_statements = False
    locations: dict[str, str] = {}
    ragged_sizes: dict[str, tuple[str, int]] = {}  # x__max -> (x, lowest loop start)

    def __init__(self, data: Any, device: str | torch.device = "auto",
                 dtype: torch.dtype | None = None, simulate: bool = False):
        return_freed_memory()  # before data-sized tensors come and go (runtime/memory.py)
        self.device = resolve_device(device)
        self.dtype = dtype or default_dtype(self.device)
        optional = self.observed_names if simulate else ()
        self.inferred_sizes: dict[str, str] = {}  # sizes the data left out: how they were found
        values = load_data(data, self.data_specs, optional=optional,
                           inferred_sizes=self.inferred_sizes)
        self.values = values  # as loaded and checked: a guide binds to the same values
        self.data = Data({**values, **ragged_ends(self.ragged_sizes, values, self.data_specs)},
                         self.device, self.dtype)
        self.simulate = simulate
        if hasattr(self, "check_sizes"):  # indices and ranges the data sizes decide
            self.check_sizes(self.data)
        missing_observed = [n for n in self.observed_names if n not in self.data]
        if hasattr(self, "transformed_data"):  # skips what reads missing observed data
            self.transformed_data(self.data)
        if hasattr(self, "check_data") and not missing_observed:
            self.check_data(self.data)
        self.latents = tuple(self.latent_specs(self.data))
        self.packer = Packer(self.latents)

    # ---- to be generated
    def latent_specs(self, data__: Data) -> tuple[Latent, ...]:  # pragma: no cover
        raise NotImplementedError

    def log_density(self, data__: Data, u__: dict[str, torch.Tensor],
                    acc__: Accumulator) -> None:  # pragma: no cover
        raise NotImplementedError

    # ---- what engines call
    @property
    def dim(self) -> int:
        return self.packer.dim

    def accumulate(self, theta: torch.Tensor, mode: Mode, record: bool = False) -> Accumulator:
        acc = Accumulator(mode, theta.dim() - 1, record, locations=self.locations)
        self.log_density(self.data, self.packer.unpack(theta), acc)
        return acc

    def log_prob(self, theta: torch.Tensor, mode: Mode | None = None) -> torch.Tensor:
        """The log density at unconstrained theta [..., dim] (posterior by default); -inf
        at a point where it is undefined (NaN, or a numerical failure torch raises: see
        numerical_failure), for that point only."""
        mode = mode or Mode(jacobian=True, priors=True)
        try:
            total = self._log_prob(theta, mode)
        except Exception as exc:
            if not numerical_failure(exc):
                raise
            self.last_failure = describe_failure(exc, self.locations)
            total = per_point(lambda row: self._log_prob(row, mode), theta, exc)
        # NaN -> -inf, only when there is a NaN: nan_to_num's backward node costs more than
        # this check at each of the thousands of gradients a sampler takes
        if total.is_meta or bool(torch.isnan(total).any()):
            total = torch.nan_to_num(total, nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        return total

    # The most recent numerical failure (for messages), as describe_failure gives it.
    last_failure: str | None = None

    def _log_prob(self, theta: torch.Tensor, mode: Mode) -> torch.Tensor:
        acc = self.accumulate(theta, mode)
        total = acc.total
        if not isinstance(total, torch.Tensor):
            total = torch.as_tensor(total, dtype=self.dtype, device=self.device)
        return total.expand(theta.shape[:-1]) if total.dim() < theta.dim() - 1 else total

    # The name the course and the issues use for the same function: log p(data, latents)
    # over unconstrained coordinates, Jacobians included.
    log_joint = log_prob

    def constrain(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latent, point-parameter and deterministic values (constrained, named as in the
        model)."""
        u = self.packer.unpack(theta)
        acc = _KeepingConstrained(Mode(False, True), theta.dim() - 1, record=True,
                                  locations=self.locations)
        values = acc.kept
        if not getattr(self, "implicit_names", ()):  # an implicit model's unknowns: nets
            try:
                self.log_density(self.data, u, acc)
            except Exception as exc:
                if not numerical_failure(exc):
                    raise
                raise ModelError("the model cannot be evaluated at these values of its "
                                 f"unknowns: {describe_failure(exc, self.locations)}"
                                 ) from None
        for lat in self.latents:
            values.setdefault(lat.name, u[lat.name])
        values.update(acc.deterministics)
        return values

    def unconstrain(self, values: dict[str, Any], batch_ndim: int = 0) -> torch.Tensor:
        """The inverse of constrain for the latents and params (used for user-given inits)."""
        from runtime.transforms import (  # noqa: PLC0415
            cholesky_corr,
            ordered,
            real,
            simplex,
        )
        parts: dict[str, torch.Tensor] = {}
        for lat in self.latents:
            if lat.name not in values:
                raise ModelError(f"the initial values do not give '{lat.name}'")
            x = torch.as_tensor(values[lat.name], dtype=self.dtype, device=self.device)
            maker = {"simplex": simplex, "ordered": ordered, "cholesky_corr": cholesky_corr}
            if lat.kind in maker:
                parts[lat.name] = maker[lat.kind]().inv(x)
            elif lat.kind in ("real", "net"):
                parts[lat.name] = real().inv(x)
            else:
                parts[lat.name] = self._bounded_inverse(lat.name, x, values, batch_ndim)
        return self.packer.pack(parts, batch_ndim)

    def _bounded_inverse(self, name: str, x: torch.Tensor, values: dict[str, Any],
                         batch_ndim: int = 0) -> torch.Tensor:
        """Invert a bounded latent's transform by solving constrain(u) = x numerically-free:
        the transform is found by running the density once with the other values."""
        batch = tuple(x.shape[:batch_ndim])
        theta = torch.zeros(batch + (self.dim,), dtype=self.dtype, device=self.device)
        transforms: dict[str, Any] = {}
        acc = Accumulator(Mode(False, True), batch_ndim, locations=self.locations)

        def grab(n: str, u_: torch.Tensor, transform: Any, **_: Any) -> torch.Tensor:
            transforms[n] = transform
            return torch.as_tensor(values[n], dtype=self.dtype, device=self.device) \
                if n in values else transform(u_)
        acc.constrain = grab  # type: ignore[method-assign]
        self.log_density(self.data, self.packer.unpack(theta), acc)
        return transforms[name].inv(x)

    def initial_point(self, generator: torch.Generator, radius: float = 2.0,
                      batch: tuple[int, ...] = ()) -> torch.Tensor:
        """Stan's default: uniform(-radius, radius) on every unconstrained coordinate."""
        u = torch.rand((*batch, self.dim), generator=generator, dtype=self.dtype)
        scale = torch.cat([torch.full((lat.size,), float(radius), dtype=self.dtype)
                           if lat.init_scale is None else
                           torch.as_tensor(lat.init_scale, dtype=self.dtype)
                           for lat in self.latents]) if self.latents else 1.0
        centre = torch.cat([torch.zeros(lat.size, dtype=self.dtype)
                            if lat.init_centre is None else
                            torch.as_tensor(lat.init_centre, dtype=self.dtype)
                            for lat in self.latents]) if self.latents else 0.0
        return ((2 * u - 1) * scale + centre).to(self.device)

    def draws(self, n: int, seed: int) -> dict[str, torch.Tensor]:
        """n ancestral draws from the prior (prior predictive included)."""
        if self.net_names:  # a net has no prior to draw its weights from: fit them first
            raise ModelError(self._unfitted_nets(), self.locations.get(self.net_names[0]))
        torch.manual_seed(seed)
        return self.sample_prior(self.data, (n,))

    def _unfitted_nets(self) -> str:
        """Why prior draws of a model with nets need a fit, and the commands making one."""
        nets = ", ".join(self.net_names)
        what = "is a net" if len(self.net_names) == 1 else "are nets"
        params = [p for p in self.param_names if p not in self.net_names]
        also = ""
        if params:
            also = (f" ({', '.join(params)} {'is a' if len(params) == 1 else 'are'} point "
                    f"parameter{'' if len(params) == 1 else 's'} ('param'), fitted with them)")
        model = self.source if str(self.source).endswith(".bgm") else "MODEL.bgm"
        return (f"cannot draw from the prior: {nets} {what}, whose weights have no prior: "
                f"fit them first{also} ('bgmc fit {model} --data DATA -o fit.json', or "
                "'--method svi -o fit.nc'), then draw at the fitted weights ('bgmc sample "
                f"{model} --data DATA --fit fit.json --prior')")

    def prior_draws_at(self, params: dict[str, torch.Tensor], n: int,
                       seed: int) -> dict[str, torch.Tensor]:
        """n ancestral draws from the prior at fitted point parameters and nets (a VAE's
        samples: z from its prior, x through the fitted decoder)."""
        torch.manual_seed(seed)
        given = {k: torch.as_tensor(v, dtype=self.dtype, device=self.device)
                 for k, v in params.items()}
        return self.sample_prior(self.data, (n,), given)

    def predictive(self, given: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """Posterior (or any) predictive draws given latent (and param) draws with one
        batch dim."""
        missing = [lat.name for lat in self.latents if lat.name not in given]
        if missing:
            what = "point parameter" if missing[0] in self.param_names else "latent"
            raise ModelError(f"the fit gives no value of the {what} '{missing[0]}': was it "
                             "made by a different model?", self.locations.get(missing[0]))
        torch.manual_seed(seed)
        lat = self.latents[0] if self.latents else None
        n = given[lat.name].shape[0] if lat is not None else 1
        given = {k: torch.as_tensor(v, dtype=self.dtype, device=self.device)
                 for k, v in given.items()}
        return self.sample_predictive(self.data, given, (n,))
