"""What an index means: the one analysis shared by loop classification, shape inference
and code generation.

An index item inside loops is one of
  loop     `t + c`: the loop variable plus a constant size (a slice over the loop)
  scalar   a size known when data is loaded (`1`, `K`, `K + 1`)
  slice    `a..b` with sizes a and b
  prefix   `a..t - c`: everything before iteration t (prefix-conditioned factors)
  full     `:`
  gather   anything else: an integer array computed per iteration (`group[n]`, `t - k`)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler.sizes import NotASize, Size, size_of
from dsl import nodes as n
from dsl.diagnostics import Diagnostic
from dsl.printer import format_expr, format_range


@dataclass(frozen=True)
class LoopScope:
    """A loop or generator variable visible to an index: name, range sizes, identity."""

    key: int  # Loop.id for loops; negative ids for generator variables
    var: str
    lo: Size
    hi: Size

    @property
    def length(self) -> Size:
        return self.hi - self.lo + Size.const(1)


@dataclass(frozen=True)
class IndexForm:
    kind: str  # loop | scalar | slice | prefix | full | gather
    node: Any
    loop: LoopScope | None = None
    offset: Size | None = None  # loop: index = var + offset; prefix: hi = var + offset
    lo: Size | None = None  # scalar (lo only) and slice / prefix bounds
    hi: Size | None = None

    @property
    def keeps_dim(self) -> bool:
        return self.kind in ("slice", "full", "prefix")


def classify(item: Any, scopes: tuple[LoopScope, ...], ints: dict[str, Any]) -> IndexForm:
    """The form of one index item in a context with the given loop scopes."""
    if isinstance(item, n.FullSlice):
        return IndexForm("full", item)
    by_var = {s.var: s for s in scopes}
    if isinstance(item, n.Slice):
        return _slice(item, by_var, ints)
    try:
        size = size_of(item, {**ints, **{v: None for v in by_var}})
    except NotASize:
        return IndexForm("gather", item)
    loop_vars = [v for v in size.names() if v in by_var]
    if not loop_vars:
        return IndexForm("scalar", item, lo=size)
    if len(loop_vars) == 1:
        var = loop_vars[0]
        rest = size - Size.name(var)
        if var not in rest.names():
            return IndexForm("loop", item, loop=by_var[var], offset=rest)
    return IndexForm("gather", item)


def _slice(item: n.Slice, by_var: dict[str, LoopScope], ints: dict[str, Any]) -> IndexForm:
    env = {**ints, **{v: None for v in by_var}}
    try:
        lo, hi = size_of(item.range.lo, env), size_of(item.range.hi, env)
    except NotASize:
        return IndexForm("gather", item)
    hi_loops = [v for v in hi.names() if v in by_var]
    if any(v in by_var for v in lo.names()):
        return IndexForm("gather", item)
    if not hi_loops:
        return IndexForm("slice", item, lo=lo, hi=hi)
    if len(hi_loops) == 1:
        var = hi_loops[0]
        rest = hi - Size.name(var)
        if var not in rest.names():
            return IndexForm("prefix", item, loop=by_var[var], offset=rest, lo=lo, hi=hi)
    return IndexForm("gather", item)


def element_range(form: IndexForm) -> tuple[Size, Size] | None:
    """The positions a left-side index covers along its dimension, lo..hi, when the form
    says (a constant, a loop variable plus a constant, a slice); None otherwise."""
    if form.kind == "scalar" and form.lo is not None:
        return form.lo, form.lo
    if form.kind == "loop" and form.loop is not None and form.offset is not None:
        return form.loop.lo + form.offset, form.loop.hi + form.offset
    if form.kind == "slice" and form.lo is not None and form.hi is not None:
        return form.lo, form.hi
    return None


def lag_of(form: IndexForm) -> int | None:
    """For a loop or prefix form: how many iterations back it reaches (0 = same iteration),
    None when that is not a constant."""
    if form.kind not in ("loop", "prefix") or form.offset is None:
        return None
    c = form.offset.constant
    return None if c is None else -c


def gather_lag(item: Any, loop: LoopScope, scopes: tuple[LoopScope, ...],
               ints: dict[str, Any]) -> int | None:
    """For `t - k` with generator k over a..b (a a positive constant): the smallest lag."""
    by_var = {s.var: s for s in scopes}
    try:
        size = size_of(item, {**ints, **{v: None for v in by_var}})
    except NotASize:
        return None
    terms = dict(size.terms)
    if terms.get((loop.var,)) != 1:
        return None
    lag = 0
    for mono, coef in terms.items():
        if mono == (loop.var,):
            continue
        if mono == ():
            lag -= coef
            continue
        if len(mono) != 1 or mono[0] not in by_var or coef >= 0:
            return None
        lo = by_var[mono[0]].lo.constant
        if lo is None:
            return None
        lag += -coef * lo
    return lag


def index_text(item: Any) -> str:
    """An index item as written: an expression, a slice a..b, or ':'."""
    if isinstance(item, n.Slice):
        return format_range(item.range)
    return ":" if isinstance(item, n.FullSlice) else format_expr(item)


def left_index_diagnostic(item: Any) -> Diagnostic:
    """Rule 16 for an index on the left of `~` or `=` that is none of the allowed forms
    (shapes and checks both meet it; one wording)."""
    text = index_text(item)
    return Diagnostic(f"the left side cannot be indexed by '{text}'", item.span,
                      "left-side indices are loop variables plus or minus a constant "
                      "(x[t], x[t - 1]), constants (x[1]) or slices (x[1..K])")
