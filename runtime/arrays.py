"""The few array operations of NUTS's per-step bookkeeping: numpy on a CPU, torch elsewhere.

Why two: NUTS does about a hundred small operations per leapfrog step on [chains, dim]
arrays (the energy error, the multinomial choice, the U-turn checks, the merges), and an
eager torch operation costs 2 to 5 microseconds whatever its size, a numpy one about a
third of that. On a CPU the bookkeeping therefore runs in numpy, on zero-copy views of
the same memory as the tensors the density reads; on a GPU the arrays stay on the device
as torch tensors. The sampler is written once, against this interface, in the subset of
operations whose spelling numpy and torch share (`where`, `stack(xs, axis)`, `@`,
`swapaxes`, `reshape`, `sum(-1)`, ...); the log density and its gradient are always torch.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class ArrayOps:
    """numpy or torch, for arrays of one dtype on one device."""

    def __init__(self, dtype: torch.dtype, device: torch.device | str = "cpu",
                 use_numpy: bool | None = None):
        self.device = torch.device(device)
        self.dtype = dtype
        self.numpy = self.device.type == "cpu" if use_numpy is None else use_numpy
        self.np_dtype = torch.empty(0, dtype=dtype).numpy().dtype if self.numpy else None
        xp: Any = np if self.numpy else torch
        self.xp = xp
        self.where, self.logaddexp, self.exp, self.log = xp.where, xp.logaddexp, xp.exp, xp.log
        self.minimum, self.nan_to_num = xp.minimum, xp.nan_to_num
        self.broadcast_to = xp.broadcast_to
        self.stack = _stack if self.numpy else torch.stack

    # conversions (zero-copy on a CPU)
    def array(self, t: torch.Tensor) -> Any:
        t = t.detach()
        return t.numpy() if self.numpy else t

    def tensor(self, a: Any) -> torch.Tensor:
        return torch.from_numpy(a) if self.numpy else a

    # construction
    def full(self, shape: tuple[int, ...], value: float, kind: str = "float") -> Any:
        t = torch.full(shape, value, dtype={"float": self.dtype, "int": torch.long,
                                            "bool": torch.bool}[kind], device=self.device)
        return self.array(t)

    def arange(self, n: int) -> Any:
        return self.array(torch.arange(n, device=self.device))

    def real(self, a: Any) -> Any:
        """`a` in the floating dtype (numpy promotes float32 / int64 to float64)."""
        return a.astype(self.np_dtype, copy=False) if self.numpy else a.to(self.dtype)

    def copy(self, a: Any) -> Any:
        return a.copy() if self.numpy else a.clone()

    # in place, and reductions to Python
    def copyto(self, dst: Any, src: Any, mask: Any) -> None:
        """dst = where(mask, src, dst), in place (views of dst stay valid)."""
        if self.numpy:
            np.copyto(dst, src, where=mask)
        else:
            torch.where(mask, src, dst, out=dst)

    def nonzero(self, mask: Any) -> Any:
        """The indices where a 1-D mask is True."""
        return np.flatnonzero(mask) if self.numpy else torch.nonzero(mask).flatten()


def _stack(arrays: tuple[Any, ...], axis: int) -> Any:
    """np.stack of arrays of one shape, without np.stack's generality (a third of its
    cost on small arrays: it is called a few times per leapfrog step)."""
    first = arrays[0]
    axis = axis % (first.ndim + 1)
    out = np.empty(first.shape[:axis] + (len(arrays),) + first.shape[axis:], first.dtype)
    index: list[Any] = [slice(None)] * axis
    for i, a in enumerate(arrays):
        out[(*index, i)] = a
    return out
