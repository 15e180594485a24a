"""Masks for the log-density terms of statements inside ragged loops (`for t in 1..x[n]`,
compiler/passes/ragged.py): the iterations past x[n] are padding, and their terms are set
to exactly 0 (`rt.masked`), so the padded data is never read into the density."""
from __future__ import annotations

from compiler.codegen.context import ModuleContext
from compiler.codegen.exprs import Scope, Unsupported, Value
from compiler.ir import Statement


def ragged_mask(ctx: ModuleContext, stmt: Statement, scope: Scope, rank: int) -> str | None:
    """Code for the booleans [loops..., 1 x rank] saying which iterations of the
    statement's ragged loops run, laid out over its vectorised loops; None if it is in
    no ragged loop."""
    ex = ctx.exprs()
    masks: list[str] = []
    for loop in stmt.loops:
        ragged = ctx.model.ragged_loops.get(loop.id)
        if ragged is None:
            continue
        if loop.var in scope.sequential:
            raise Unsupported("a loop ending at a data value (a ragged loop) cannot run step "
                              "by step in the log density yet", loop.range.hi)
        ends = ex.expr(ragged.bound, scope)
        size = ex.size(ctx.model.scopes[loop.id].hi, scope)
        mask = Value(f"rt.ragged_mask({ends.code}, {ex.size(ragged.lo, scope)}, {size})",
                     ends.loops + (loop.id,), 0)
        masks.append(ex.align(mask, scope.keys(), rank))
    if not masks:
        return None
    return " & ".join(masks) if len(masks) == 1 else " & ".join(f"({m})" for m in masks)


def masked_code(ctx: ModuleContext, stmt: Statement, scope: Scope, code: str,
                rank: int) -> str:
    """`code`, a term with the statement's loop dims and `rank` more, masked to 0 past the
    ends of its ragged loops (unchanged outside them)."""
    mask = ragged_mask(ctx, stmt, scope, rank)
    return code if mask is None else f"rt.masked({code}, {mask})"
