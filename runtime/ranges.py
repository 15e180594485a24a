"""The index and loop-range rules the compiler could not decide without the data
(compiler/passes/ranges.py), checked once the data is loaded: a read past a declared size, an
index below 1 or a range running backwards is a located error before any fitting."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from runtime.errors import DataError


def check_index(index: int, size: int | None, guards: Sequence[int], where: str,
                text: str) -> None:
    """`index` (an index, or a size such as a layer width) must lie in 1..size, unless a
    loop around the read is empty (then nothing is read)."""
    if any(int(g) <= 0 for g in guards):
        return
    if int(index) < 1:
        raise DataError(f"{where}: {text} is {int(index)} given the data, but must be at "
                        "least 1")
    if size is not None and int(index) > int(size):
        raise DataError(f"{where}: {text} is {int(index)} given the data, but must be at "
                        f"most {int(size)}")


def check_loop(lo: int, hi: int, where: str, text: str) -> None:
    """A range lo..hi may be empty (hi = lo - 1) but not run backwards."""
    if int(hi) < int(lo) - 1:
        raise DataError(f"{where}: {text} is {int(lo)}..{int(hi)} given the data: it runs "
                        "backwards (a range a..b needs b >= a - 1)")


def check_values(values: Any, size: int, where: str, name: str, what: str) -> None:
    """Int data used as an index holds values in 1..size (absent data: nothing to check)."""
    if values is None:
        return
    flat = torch.as_tensor(values).reshape(-1)
    bad = ((flat < 1) | (flat > int(size))).nonzero()
    if len(bad):
        first = int(bad[0, 0])
        index = list(np.unravel_index(first, tuple(torch.as_tensor(values).shape)))
        at = "[" + ", ".join(str(int(i) + 1) for i in index) + "]" if index else ""
        raise DataError(f"{where}: '{name}' indexes '{what}' here, but {name}{at} = "
                        f"{int(flat[first])} is not an index from 1 to {int(size)}")


def check_same(a: int, b: int, broadcast: bool, where: str, text: str) -> None:
    """Two sizes that must agree given the data (or be 1, where they broadcast)."""
    a, b = int(a), int(b)
    if a != b and not (broadcast and 1 in (a, b)):
        raise DataError(f"{where}: {text} are {a} and {b} given the data, but must be "
                        "equal" + (" (or one of them 1)" if broadcast else ""))


def check_index_values(index: Any, size: int, where: str, text: str) -> None:
    """An index computed from the data (`3 * k[i]`) lies in 1..size everywhere."""
    flat = torch.as_tensor(index).reshape(-1)
    bad = ((flat < 1) | (flat > int(size))).nonzero()
    if len(bad):
        raise DataError(f"{where}: {text} is {int(flat[int(bad[0, 0])])} for some element "
                        f"given the data, but must be an index from 1 to {int(size)}")
