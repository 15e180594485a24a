"""Index and range checks that need the data: what `check` cannot decide symbolically.

shapes.py decides every index it can at compile time (`x[0]`, `x[N + 1]` of `x: real[N]`)
and records here what depends on data sizes: `b[i]` for `i in 1..N` of `b: real[2]` reads
past `b` exactly when N > 2. The generated module checks each recorded rule once the data
is loaded (`check_sizes`), so a read past a declared size, an index below 1 or a loop
range running backwards is a located error before any fitting, never a silent wrap-around
of a negative Python index or a torch error.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.sizes import Size
from dsl.spans import Span


@dataclass(frozen=True)
class IndexRule:
    """`index` must lie in 1..size (size None: only >= 1) whenever every loop lo..hi in
    `loops` is non-empty (an empty loop reads nothing)."""

    index: Size
    size: Size | None
    loops: tuple[tuple[Size, Size], ...]
    span: Span
    text: str  # what is read and at which iteration, for the message


@dataclass(frozen=True)
class LoopRule:
    """The range `lo..hi` of a loop must not run backwards: hi >= lo - 1 (lo - 1 is the
    empty range, as for t in 2..T with T = 1)."""

    lo: Size
    hi: Size
    span: Span
    text: str


@dataclass(frozen=True)
class ValueRule:
    """Every value of the int data `name` lies in 1..size: it indexes a dimension of that
    size (`mu[z[i]]`), and index 0 would silently read the last element."""

    name: str
    size: Size
    span: Span
    text: str  # the variable it indexes


def record(rules: dict[tuple[object, ...], object],
           rule: IndexRule | LoopRule | ValueRule) -> None:
    """Keep one rule per place and content (shapes.py types some statements twice), and
    none that the loops around it already imply (y[i] for i in 1..N of y: real[N])."""
    if isinstance(rule, IndexRule) and _implied(rule):
        return
    rules.setdefault((type(rule).__name__, rule.span, rule), rule)


def _implied(rule: IndexRule) -> bool:
    """Whether lo <= hi for every loop already gives 1 <= index <= size: the index is
    lo + c or hi + c of some loop, and lo + c >= 1 (lo constant), and the size is hi + d
    with the index at most d past lo or hi."""
    low = rule.index.constant is not None and rule.index.constant >= 1
    high = rule.size is None
    for lo, hi in rule.loops:
        for end in (lo, hi):
            c = (rule.index - end).constant
            if c is None:
                continue
            low = low or (lo.constant is not None and lo.constant + c >= 1)
            d = None if rule.size is None else (rule.size - hi).constant
            high = high or (d is not None and c <= d)
    return low and high


@dataclass(frozen=True)
class SizeMatch:
    """Two sizes the data decides must agree: the inner dimensions of '@' or 'dot', or
    two dimensions broadcast together (`broadcast`: one of them may also be 1)."""

    a: Size
    b: Size
    broadcast: bool
    span: Span
    text: str


@dataclass(frozen=True)
class ExprValueRule:
    """An index computed from data alone (`3 * k[i]`) lies in 1..size at every element:
    `node` is the index expression (by id), compiled in `scopes` (its loops)."""

    node: int
    scopes: tuple[object, ...]
    size: Size
    span: Span
    text: str
