"""Small traversals of expression trees that several passes share."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dsl import nodes as n


def children(e: Any) -> Iterator[Any]:
    """The direct sub-expressions of an expression or index item, in source order."""
    if isinstance(e, (n.Unary,)):
        yield e.operand
    elif isinstance(e, (n.Binary, n.Compare)):
        yield e.left
        yield e.right
    elif isinstance(e, n.Call):
        yield from e.args
        yield from (k.value for k in e.kwargs)
    elif isinstance(e, n.Generator):
        yield e.range.lo
        yield e.range.hi
        yield e.body
    elif isinstance(e, n.Index):
        yield e.base
        yield from e.items
    elif isinstance(e, n.Vector):
        yield from e.items
    elif isinstance(e, n.Slice):
        yield e.range.lo
        yield e.range.hi


def free_names(e: Any, bound: frozenset[str] = frozenset()) -> Iterator[n.Name]:
    """Every Name read by `e` that a generator inside it does not bind."""
    if isinstance(e, n.Name):
        if e.id not in bound:
            yield e
        return
    if isinstance(e, n.Generator):
        yield from free_names(e.range.lo, bound)
        yield from free_names(e.range.hi, bound)
        yield from free_names(e.body, bound | {e.var.id})
        return
    for child in children(e):
        yield from free_names(child, bound)


def calls(e: Any) -> Iterator[n.Call | n.Generator]:
    """Every call (and generator reduction) inside `e`, outermost first."""
    if isinstance(e, (n.Call, n.Generator)):
        yield e
    for child in children(e):
        yield from calls(child)


def type_exprs(t: n.Type | None) -> Iterator[Any]:
    """The expressions inside a type: bounds and dims."""
    if t is None:
        return
    if t.lower is not None:
        yield t.lower
    if t.upper is not None:
        yield t.upper
    yield from t.dims


def target_exprs(target: n.Target) -> Iterator[Any]:
    for item in target.items:
        if isinstance(item, n.Slice):
            yield item.range.lo
            yield item.range.hi
        elif not isinstance(item, n.FullSlice):
            yield item
