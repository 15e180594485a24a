"""Ragged loops at run time: `for t in lo..x[n]` runs to a different end per element of
its plates (sequences of different lengths, padded to the longest in the data).

The generated code lays tensors over the loop out to the largest x (`x__max`, computed
here once when the data is loaded) and masks every log-density term past x[n] to exactly
0 with `torch.where`, so padded values never enter the density or its gradient. Masks are
built here so generated code stays one call per term.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from runtime.errors import DataError


def ragged_ends(sizes: Mapping[str, tuple[str, int]], values: Mapping[str, Any],
                specs: Iterable[Any]) -> dict[str, int]:
    """Each ragged size (`x__max`): the largest value of its int data vector x, after
    checking that every value is a loop end the language can mean: at least the loop's
    start minus 1 (lo - 1 is an empty loop; anything below would run backwards)."""
    where = {s.name: s.where for s in specs}
    out: dict[str, int] = {}
    for size, (vector, lo) in sizes.items():
        if vector not in values:  # a missing vector is reported by the loader
            continue
        x = np.asarray(values[vector]).reshape(-1)
        low = np.flatnonzero(x < lo - 1)
        if low.size:
            i = int(low[0])
            index = np.unravel_index(i, np.shape(values[vector]))
            at = ", ".join(str(int(k) + 1) for k in index)
            place = f" ({where[vector]})" if where.get(vector) else ""
            raise DataError(f"data '{vector}'{place}: {vector}[{at}] = {int(x[i])} ends a loop "
                            f"starting at {lo}; a loop end must be at least {lo - 1} "
                            f"({lo - 1} runs no iteration)")
        out[size] = int(x.max()) if x.size else lo - 1
    return out


def ragged_mask(ends: Any, lo: int, size: int) -> torch.Tensor:
    """[..., L] booleans: iteration lo + i (i < L = size - lo + 1) of each element's loop
    runs, that is lo + i <= ends[...]."""
    ends = torch.as_tensor(ends)
    steps = torch.arange(lo, size + 1, device=ends.device)
    return steps <= ends[..., None]


def masked(log_prob: Any, mask: torch.Tensor) -> Any:
    """A log-density term with the iterations past each ragged loop's end set to exactly 0
    (a `where`, not a product: a padded value that gives -inf or NaN stays out, and so
    does its gradient)."""
    log_prob = torch.as_tensor(log_prob, device=mask.device)
    return torch.where(mask, log_prob, torch.zeros((), dtype=log_prob.dtype,
                                                   device=log_prob.device))
