"""Checks on the left sides of `~` and `=` (rules 10 and 16).

Contract: every defining statement indexes its target by each enclosing loop's variable
(so each iteration defines its own element), left-side indices are loop variables plus
or minus a constant, constants or slices, and a variable's definitions do not overlap
where that can be seen at compile time.
"""
from __future__ import annotations

from compiler.indexing import classify
from compiler.ir import GraphicalModel
from compiler.shapes import int_env
from dsl.diagnostics import BgmError, Diagnostic, Note


def check_targets(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    ints = int_env(model)
    for stmt in model.statements:
        if stmt.target is None:
            continue
        scopes = tuple(model.scopes[lp.id] for lp in stmt.loops)  # type: ignore[attr-defined]
        forms = [classify(i, scopes, ints) for i in stmt.node.target.items]
        for f in forms:
            if f.kind in ("gather", "prefix"):
                errors.append(Diagnostic(
                    "a left-side index must be a loop variable plus or minus a constant, a "
                    "constant, or a slice", f.node.span))
        used = {f.loop.key for f in forms if f.kind == "loop" and f.loop is not None}
        for loop in stmt.loops:
            if loop.id not in used:
                errors.append(Diagnostic(
                    f"'{stmt.target}' is defined in every iteration of 'for {loop.var}' "
                    f"but not indexed by '{loop.var}'", stmt.node.target.span,
                    f"write {stmt.target}[{loop.var}] (each iteration defines its own "
                    "element)"))
    errors += _overlaps(model, ints)
    if errors:
        raise BgmError(errors, model.source)


def _overlaps(model: GraphicalModel, ints: dict) -> list[Diagnostic]:
    """Two definitions of a 1-index variable covering the same constant position."""
    errors = []
    for v in model.variables.values():
        if len(v.defs) < 2:
            continue
        ranges = []
        for i in v.defs:
            stmt = model.statements[i]
            items = stmt.node.target.items
            if len(items) != 1:
                continue
            scopes = tuple(model.scopes[lp.id] for lp in stmt.loops)  # type: ignore[attr-defined]
            f = classify(items[0], scopes, ints)
            if f.kind == "scalar":
                lo = hi = f.lo
            elif f.kind == "loop" and f.loop is not None and f.offset is not None:
                lo, hi = f.loop.lo + f.offset, f.loop.hi + f.offset
            else:
                continue
            ranges.append((lo, hi, stmt))
        for a in range(len(ranges)):
            for b in range(a + 1, len(ranges)):
                lo1, hi1, s1 = ranges[a]
                lo2, hi2, s2 = ranges[b]
                d1, d2 = (lo2 - hi1).constant, (lo1 - hi2).constant
                if d1 is not None and d2 is not None and d1 <= 0 and d2 <= 0:
                    errors.append(Diagnostic(
                        f"'{v.name}' is defined twice for the same elements",
                        s2.node.target.span, notes=(Note("also defined here", s1.node.target.span),)))
    return errors
