"""Helpers generated code calls by name: the data namespace, assembling variables defined
in parts or step by step, gathers, reductions over element dims, draws and data checks.

Each helper works on tensors laid out as [batch...] + [loop dims] + [element dims] and
never needs to know how many batch dims there are: it counts from the right.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from runtime.errors import DataError, ModelError


class Data(dict):  # type: ignore[type-arg]
    """The loaded data as tensors on the model's device, plus constructors that put new
    tensors on the same device and dtype (so generated code never builds a CPU tensor by
    accident)."""

    def __init__(self, values: Mapping[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.device, self.dtype = device, dtype
        for name, value in values.items():
            self[name] = self.convert(value)

    def convert(self, value: Any) -> Any:
        """Int scalars stay Python ints (they are sizes: ranges, shapes); every other
        value becomes a tensor, so real scalars have the model's dtype."""
        if isinstance(value, (bool, int)):
            return int(value)
        arr = np.asarray(value)
        dtype = torch.int64 if arr.dtype.kind in "iub" else self.dtype
        return torch.as_tensor(arr, dtype=dtype, device=self.device)

    def replaced(self, updates: Mapping[str, Any]) -> Data:
        """A copy with some entries replaced as they are (a minibatch's rows and size)."""
        out = Data({}, self.device, self.dtype)
        out.update(self)
        out.update(updates)
        return out

    def tensor(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(value, dtype=self.dtype, device=self.device)

    def real(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.to(self.dtype)
        return self.tensor(float(value))

    def iota(self, lo: int, hi: int) -> torch.Tensor:
        return torch.arange(lo, hi + 1, device=self.device)

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    def ones(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.ones(shape, dtype=self.dtype, device=self.device)

    def eye(self, k: int) -> torch.Tensor:
        return torch.eye(k, dtype=self.dtype, device=self.device)

    def linspace(self, a: Any, b: Any, k: int) -> torch.Tensor:
        """k points from a to b; bounds that are tensors (batched draws) give a batch of
        them, one row per batch element."""
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            a, b = (torch.as_tensor(x, dtype=self.dtype, device=self.device) for x in (a, b))
            steps = torch.linspace(0, 1, k, dtype=self.dtype, device=self.device)
            return a[..., None] + (b - a)[..., None] * steps
        return torch.linspace(float(a), float(b), k, dtype=self.dtype, device=self.device)


def as_tensors(values: list[Any]) -> list[torch.Tensor]:
    """Tensors for values some of which may be Python numbers (`z[1] = 0.1`): numbers take
    the dtype and device of the floating tensors among them, as torch.as_tensor alone
    would make 0.1 a float32 and lose precision when it meets float64."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    like = next((t for t in tensors if t.is_floating_point()), None)
    device = tensors[0].device if tensors else None
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (bool, int)) and like is None:
            out.append(torch.as_tensor(v, device=device))
        else:
            out.append(torch.as_tensor(v, dtype=like.dtype if like is not None else
                                       torch.float64, device=device))
    return out


def size_expr(text: str, fn: Callable[[Mapping[str, Any]], int]) -> Callable[..., int]:
    """A size computed from the data, with its source text for error messages."""
    fn.text = text  # type: ignore[attr-defined]
    return fn


def fill(value: Any, shape: tuple[int, ...], data: Data) -> torch.Tensor:
    """Broadcast a value (laid out with size-1 dims where it does not vary) to the full
    trailing shape, keeping its batch dims."""
    if not isinstance(value, torch.Tensor):
        return torch.full(shape, float(value), dtype=data.dtype, device=data.device)
    batch = value.shape[:value.dim() - len(shape)]
    return value.expand(*batch, *shape)


class Parts:
    """A variable defined by several statements on disjoint index sets (rule 10)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)
        self.pieces: list[tuple[tuple[Any, ...], torch.Tensor, int]] = []

    def put(self, index: tuple[Any, ...], value: Any, ndim: int) -> None:
        self.pieces.append((index, value, ndim))

    def build(self) -> torch.Tensor:
        values = as_tensors([v for _, v, _ in self.pieces])
        batch = torch.broadcast_shapes(*(v.shape[:v.dim() - k] for v, (_, _, k) in
                                         zip(values, self.pieces, strict=True)))
        dtype = values[0].dtype
        for v in values[1:]:
            dtype = torch.promote_types(dtype, v.dtype)
        out = torch.zeros(batch + self.shape, dtype=dtype, device=values[0].device)
        for (index, _, _), value in zip(self.pieces, values, strict=True):
            out[(..., *index)] = value
        return out


class Steps:
    """A variable computed one iteration at a time (a deterministic recursion or an
    ancestral chain), addressed with 1-based indices along its first dimension.

    `given` (the observed data, when sampling) supplies the elements no statement
    generates, such as the first K values of an AR(K) (rule 24)."""

    def __init__(self, name: str, length: int, given: Any = None, after: int | None = None):
        """`after`: the number of dims after the step dim when it is not the first (`y[n,
        t]`, a chain per element of a plate: the given data is read along that dim)."""
        from runtime.decoding import fixed_length  # noqa: PLC0415
        self.name = name
        self.after = after
        self.items: list[Any] = [None] * length
        self.given = given
        self.keep = fixed_length(name)  # a prompt, or the observed part of a forecast

    def __setitem__(self, index: int, value: Any) -> None:
        if index <= self.keep:  # fixed: the draw is discarded, the given value stays
            return
        self.items[index - 1] = value

    def __getitem__(self, index: int) -> Any:
        value = self.items[index - 1]
        if value is None:
            return self._given(index)
        return value

    def _given(self, index: int) -> Any:
        if self.given is None:
            raise ModelError(f"{self.name}[{index}] is read but no statement generates it: "
                             "supply it in the data")
        if self.after is not None:
            return self.given.select(-1 - self.after, index - 1)
        return self.given[index - 1]

    def gather(self, index: torch.Tensor, elem_rank: int) -> torch.Tensor:
        """The elements at a tensor of 1-based indices, laid out as [batch] + index dims
        + element dims (`y[t - k]` for k in 1..K, read while y is computed)."""
        items = as_tensors([self[int(i)] for i in index.reshape(-1).tolist()])
        stacked = torch.stack(torch.broadcast_tensors(*items), dim=-1 - elem_rank)
        head = stacked.shape[:stacked.dim() - elem_rank - 1]
        return stacked.reshape(*head, *index.shape, *stacked.shape[stacked.dim() - elem_rank:])

    def stack(self, elem_rank: int) -> torch.Tensor:
        tensors = as_tensors([v if v is not None else self._given(i + 1)
                              for i, v in enumerate(self.items)])
        tensors = list(torch.broadcast_tensors(*tensors))
        return torch.stack(tensors, dim=-1 - elem_rank)


def index(value: Any) -> Any:
    """A 1-based integer index (tensor or int) as a 0-based one."""
    if isinstance(value, torch.Tensor):
        return value.long() - 1
    return int(value) - 1


def take(x: torch.Tensor, rank: int, items: tuple[Any, ...], gathered: int) -> torch.Tensor:
    """x[items] on the last `rank` dims of x, where tensor items are advanced indices laid
    out over loops; the `gathered` dims they produce are moved in front of kept dims."""
    trailing = rank - len(items)
    key = (...,) + tuple(items) + (slice(None),) * trailing
    tensor_positions = [i for i, it in enumerate(items) if isinstance(it, torch.Tensor)]
    if not tensor_positions:
        return x[key]
    basic = [i for i, it in enumerate(items) if isinstance(it, slice)]
    if not basic or all(b > max(tensor_positions) for b in basic):
        return x[key]
    # move the tensor-indexed dims to the end, index there, then move the result forward
    nb = x.dim() - rank
    order = [p for p in range(rank) if p not in tensor_positions] + tensor_positions
    moved = x.permute(*range(nb), *(nb + p for p in order))
    new_items = [items[p] for p in order if p not in tensor_positions] + \
        [items[p] for p in tensor_positions]
    out = moved[(...,) + tuple(new_items)]
    kept = out.dim() - nb - gathered
    return out.movedim(tuple(range(out.dim() - gathered, out.dim())),
                       tuple(range(nb, nb + gathered))) if kept else out


def take_batched(x: torch.Tensor, rank: int, items: tuple[Any, ...],
                 gathered: int) -> torch.Tensor:
    """take() where an index tensor carries batch dims of its own (a discrete latent's
    draws or enumerated values): their batch dims broadcast against x's instead of being
    multiplied out. Layout of the result as for take(): [batch..., gathered..., kept...]."""
    nb = x.dim() - rank
    items = tuple(items) + (slice(None),) * (rank - len(items))
    tensor_pos = [i for i, it in enumerate(items) if isinstance(it, torch.Tensor)]
    order = tensor_pos + [p for p in range(rank) if p not in tensor_pos]
    moved = x.permute(*range(nb), *(nb + p for p in order))
    rest = tuple(items[p] for p in order[len(tensor_pos):])
    moved = moved[(slice(None),) * (nb + len(tensor_pos)) + rest]  # ints drop dims
    sizes = moved.shape[nb:nb + len(tensor_pos)]
    kept = tuple(moved.shape[nb + len(tensor_pos):])
    flat = moved.reshape(tuple(moved.shape[:nb]) + (1,) * gathered + (-1,) + kept)
    linear: Any = 0
    for p, size in zip(tensor_pos, sizes, strict=True):
        linear = linear * size + items[p]
    linear = torch.as_tensor(linear, device=x.device)
    idx = linear.reshape(tuple(linear.shape) + (1,) * (1 + len(kept)))
    dims = max(flat.dim(), idx.dim())
    flat = flat.reshape((1,) * (dims - flat.dim()) + tuple(flat.shape))
    idx = idx.reshape((1,) * (dims - idx.dim()) + tuple(idx.shape))
    return torch.take_along_dim(flat, idx, dim=-(1 + len(kept))).squeeze(-(1 + len(kept)))


def stack_last(items: list[Any], rank: int) -> torch.Tensor:
    """[a, b, c] as a vector along a new last dim (after broadcasting the items)."""
    tensors = list(torch.broadcast_tensors(*as_tensors(items)))
    return torch.stack(tensors, -1 - rank)


def _flat(x: torch.Tensor, rank: int) -> torch.Tensor:
    return x.flatten(-rank) if rank > 0 else x.unsqueeze(-1)


def reduce_sum(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).sum(-1)


def reduce_prod(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).prod(-1)


def reduce_mean(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).mean(-1)


def reduce_sd(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).std(-1, correction=1)


def reduce_variance(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).var(-1, correction=1)


def reduce_max(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).amax(-1)


def reduce_min(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).amin(-1)


def reduce_logsumexp(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).logsumexp(-1)


def reduce_norm(x: torch.Tensor, rank: int) -> torch.Tensor:
    return _flat(x, rank).norm(dim=-1)


def one_hot(k: Any, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(k).long() - 1, size)


def Phi(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))


def draw(d: Any, shape: tuple[int, ...], where: str, lower: Any = None,
         upper: Any = None, ordered: bool = False) -> torch.Tensor:
    """One draw of shape `shape` (batch + loops + element) from d, rejecting draws outside
    a declared (truncated) support; `ordered` restricts the last dim to increasing order."""
    if d.__class__.__name__ == "_Improper":
        raise ModelError("improper prior (Flat/HalfFlat): it has no prior draws", where)
    _check_arguments(d, where)
    batch = torch.Size(shape[:len(shape) - len(d.event_shape)])
    d = d.expand(batch)
    x = d.sample()
    if ordered:
        return _ordered(d, x, where)
    if lower is None and upper is None:
        return x
    for _ in range(1000):
        bad = torch.zeros_like(x, dtype=torch.bool)
        if lower is not None:
            bad |= x < lower
        if upper is not None:
            bad |= x > upper
        if not bad.any():
            return x
        x = torch.where(bad, d.sample(), x)
    raise ModelError("could not draw inside the declared bounds (truncation too narrow)", where)


def _check_arguments(d: Any, where: str) -> None:
    """The arguments of a distribution about to be drawn from lie in their supports: a
    scale that is negative at some draw (`Normal(0, -1 - a^2)`) is a located error naming
    the term, not a torch failure or a silent draw. (The log density instead treats such
    a point as rejected: runtime/distributions.py.)"""
    d = getattr(d, "twin", d)  # runtime.lpdf.Fast: its torch distribution holds them
    for name, constraint in getattr(d, "arg_constraints", {}).items():
        value = d.__dict__.get(name)  # arguments given; derived ones (probs from logits)
        if not isinstance(value, torch.Tensor) or value.device.type == "meta":
            continue
        ok = constraint.check(value)
        if not bool(ok.all()):
            bad = value[~ok] if ok.shape == value.shape else value.reshape(-1)
            raise ModelError(f"{type(d).__name__} {name} is {float(bad.reshape(-1)[0]):g} at "
                             "a draw, outside its support", where)


def _ordered(d: Any, x: torch.Tensor, where: str) -> torch.Tensor:
    """A draw of an `ordered` vector whose prior is a density on unordered vectors: the
    prior restricted to increasing vectors (as Stan reads `ordered[K] ~ ...`). When the
    elements are iid, sorting an iid draw samples exactly that; otherwise reject."""
    params = [getattr(d, name) for name in getattr(d, "arg_constraints", {})
              if isinstance(getattr(d, name, None), torch.Tensor)]
    if all(bool((p == p[..., :1]).all()) for p in params if p.dim() > 0):
        return x.sort(-1).values
    for _ in range(1000):
        bad = (x[..., 1:] <= x[..., :-1]).any(-1, keepdim=True)
        if not bad.any():
            return x
        x = torch.where(bad, d.sample(), x)
    raise ModelError("could not draw an ordered vector from this prior (its elements are "
                     "not exchangeable and rarely come out in order)", where)


def check_support(name: str, value: Any, lower: Any, upper: Any, integer: bool,
                  where: str) -> None:
    """Observed data must lie in its distribution's support (checked once, at loading).
    On the meta device data has shapes but no values: there is nothing to check."""
    v = torch.as_tensor(value)
    if v.device.type == "meta":
        return
    bad = torch.zeros(v.shape, dtype=torch.bool, device=v.device)
    if integer:
        bad |= v != torch.round(v)
    if lower is not None:
        bad |= v < torch.as_tensor(lower, device=v.device)
    if upper is not None:
        bad |= v > torch.as_tensor(upper, device=v.device)
    if bad.any():
        first = tuple(int(i) + 1 for i in torch.nonzero(bad)[0])
        at = f"{name}[{', '.join(map(str, first))}]" if first else name
        got = v[tuple(i - 1 for i in first)].item() if first else v.item()
        span = f"{'integers ' if integer else ''}" \
            f"{'' if lower is None else f'>= {_show(lower, first)}'}" \
            f"{' and ' if lower is not None and upper is not None else ''}" \
            f"{'' if upper is None else f'<= {_show(upper, first)}'}"
        raise DataError(f"data '{at}' = {got:g} is outside the support of its distribution "
                        f"({span.strip()}) at {where}")


def _show(bound: Any, index: tuple[int, ...]) -> str:
    t = torch.as_tensor(bound)
    if t.dim() == 0:
        return f"{t.item():g}"
    return f"{t.expand(*t.shape)[tuple(i - 1 for i in index[-t.dim():])].item():g}"


def rdraw(d: Any, shape: tuple[int, ...], where: str, acc: Any, name: str) -> torch.Tensor:
    """A reparameterised draw of a guide's latent (gradients flow to the guide's nets and
    params through it), with log q of the draw added to the accumulator `acc`."""
    batch = torch.Size(shape[:len(shape) - len(d.event_shape)])
    d = d.expand(batch)
    if not d.has_rsample:
        raise ModelError(f"the guide draws '{name}' from {type(d).__name__}, which has no "
                         "reparameterised sampler; the ELBO's gradient needs one (use a "
                         "continuous distribution such as Normal or LogNormal)", where)
    x = d.rsample()
    acc.prior(name, d.log_prob(x), len(batch) - acc.batch_ndim)
    return x


# ---- linear algebra that rejects a point instead of raising ----------------------------


def cholesky_failed(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, failed): the lower Cholesky factor of every matrix in the batch `a` [..., K, K]
    and a mask [...] of the matrices that are not positive definite (in floating point).

    Where a matrix fails, L is the factor of the identity, so neither the value nor the
    gradient of the other batch elements (the other chains) is touched by the failure:
    torch.linalg.cholesky would raise for the whole batch.
    """
    if a.device.type == "meta":  # shapes only: nothing to factorise
        return torch.linalg.cholesky(a), torch.zeros(a.shape[:-2], dtype=torch.bool,
                                                     device=a.device)
    L, info = torch.linalg.cholesky_ex(a)  # one factorisation on the usual path
    failed = info != 0
    if bool(failed.any()):
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        safe = torch.where(failed[..., None, None], eye, a)  # no gradient through failures
        L = torch.linalg.cholesky(safe)
    return L, failed


def cholesky(a: Any) -> torch.Tensor:
    """The DSL's `cholesky(A)`: the lower Cholesky factor, NaN in every entry of a matrix
    that is not positive definite. A NaN log density is a rejected point (NUTS records a
    divergence, the optimisers backtrack), for that batch element (chain) only, where
    torch.linalg.cholesky would raise and stop every chain. Stan rejects such a point."""
    a = torch.as_tensor(a)
    L, failed = cholesky_failed(a)
    if a.device.type == "meta" or not bool(failed.any()):
        return L
    return torch.where(failed[..., None, None], torch.full_like(L, math.nan), L)
