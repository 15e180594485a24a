"""Checks on the left sides of `~` and `=` (rules 10 and 16).

Contract: every defining statement indexes its target by each enclosing loop's variable
(so each iteration defines its own element), left-side indices are loop variables plus
or minus a constant, constants or slices, and a variable's definitions do not overlap
where that can be seen at compile time.
"""
from __future__ import annotations

from typing import Any

from compiler.indexing import classify, element_range, left_index_diagnostic
from compiler.ir import GraphicalModel, Statement
from compiler.sizes import Size, int_env
from dsl.diagnostics import BgmError, Diagnostic, Note
from dsl.printer import format_expr


def check_targets(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    ints = int_env(model)
    for stmt in model.statements:
        if stmt.target is None:
            continue
        scopes = tuple(model.scopes[lp.id] for lp in stmt.loops)
        forms = [classify(i, scopes, ints) for i in stmt.node.target.items]
        errors += [left_index_diagnostic(f.node) for f in forms
                   if f.kind in ("gather", "prefix")]
        used = {f.loop.key for f in forms if f.kind == "loop" and f.loop is not None}
        for loop in stmt.loops:
            if loop.id not in used:
                errors.append(Diagnostic(
                    f"'{stmt.target}' is defined in every iteration of 'for {loop.var}' "
                    f"but not indexed by '{loop.var}'", stmt.node.target.span,
                    f"write {stmt.target}[{loop.var}] (each iteration defines its own "
                    "element)"))
    errors += _overlaps(model, ints)
    errors += _gaps(model, ints)
    if errors:
        raise BgmError(errors, model.source)


def _overlaps(model: GraphicalModel, ints: dict[str, Any]) -> list[Diagnostic]:
    """Rule 10: two definitions of one variable that provably share an element."""
    errors = []
    for v in model.variables.values():
        statements = [model.statements[i] for i in v.defs]
        boxes = [(_box(stmt, model, ints), stmt) for stmt in statements]
        for j, (box2, s2) in enumerate(boxes):
            first = next((s1 for box1, s1 in boxes[:j] if _meet(box1, box2)), None)
            if first is not None:
                what = "for the same elements" if box2 else ""
                errors.append(Diagnostic(
                    f"'{v.name}' is defined twice {what}".rstrip(), s2.node.target.span,
                    "every element is defined by exactly one statement (rule 10)",
                    (Note("first defined here", first.node.target.span),)))
    return errors


def _gaps(model: GraphicalModel, ints: dict[str, Any]) -> list[Diagnostic]:
    """Rule 10, the other half: an element of a latent or `=` node that no statement
    defines would silently be a flat, improper unknown (`beta[L] ~ Normal(0, 1)` with
    L = 2 defines beta[2] only, yet beta is 1..2). Reported where the statement just
    above the gap provably leaves it (the element before its first index)."""
    errors = []
    for v in model.variables.values():
        if v.role not in ("latent", "deterministic"):
            continue
        boxes = [(_box(model.statements[i], model, ints), model.statements[i])
                 for i in v.defs]
        for box, stmt in boxes:
            gap = next(((p, before) for p, before in enumerate(_before(r) for r in box)
                        if before is not None
                        and not any(_may_hold(other, box, p, before)
                                    for other, s in boxes if s is not stmt)), None)
            if gap is None:
                continue
            p, missing = gap
            items = stmt.node.target.items
            where = ", ".join(str(missing) if q == p else _fixed(box[q])
                              for q in range(len(items)))
            errors.append(Diagnostic(
                f"{v.name}[{where}] is defined by no statement", stmt.node.target.span,
                _gap_hint(v.name, stmt, p, len(items))))
            break
    return errors


def _fixed(r: tuple[Size, Size] | None) -> str:
    """A position's index when one constant, else an ellipsis."""
    if r is not None and r[0].constant is not None and r[0].constant == r[1].constant:
        return str(r[0].constant)
    return "…"


def _gap_hint(name: str, stmt: Statement, p: int, rank: int) -> str:
    """`beta[L] ~ …` most often means 'beta has L elements'; say how to write that."""
    item = format_expr(stmt.node.target.items[p])
    if rank == 1 and not stmt.loops:
        return (f"{name}[{item}] defines the single element {item}; to define all of "
                f"{name}, write 'for i in 1..{item}: {name}[i] ~ …' or "
                f"'{name}: real[{item}] ~ …' (every element is defined exactly once, "
                "rule 10)")
    return "every element of a latent is defined exactly once (rule 10)"


def _before(r: tuple[Size, Size] | None) -> Size | None:
    """The element just before a range, when it provably exists (is at least 1 for any
    sizes, which are never negative): 1 for 2..T, N + 1 for N + 2, not L for L + 1..T."""
    if r is None:
        return None
    before = r[0] - Size.const(1)
    above_one = before - Size.const(1)
    return before if all(c >= 0 for _, c in above_one.terms) else None


def _may_hold(other: _Box, box: _Box, p: int, at: Size) -> bool:
    """Could the statement with box `other` define the element `at` in position p (and
    inside `box` elsewhere)? False only when the ranges provably exclude it."""
    if p < len(other) and other[p] is not None:
        lo, hi = other[p]  # type: ignore[misc]
        if (at - hi).constant is not None and (at - hi).constant > 0:  # type: ignore[operator]
            return False
        if (lo - at).constant is not None and (lo - at).constant > 0:  # type: ignore[operator]
            return False
    for q in range(min(len(box), len(other))):
        a, b = box[q], other[q]
        if q == p or a is None or b is None:
            continue
        apart = ((b[0] - a[1]).constant, (a[0] - b[1]).constant)
        if any(g is not None and g > 0 for g in apart):
            return False
    return True


_Box = list[tuple[Size, Size] | None]


def _box(stmt: Statement, model: GraphicalModel, ints: dict[str, Any]) -> _Box:
    """The range each left-side index of `stmt` covers (None where not known)."""
    scopes = tuple(model.scopes[lp.id] for lp in stmt.loops)
    return [element_range(classify(item, scopes, ints)) for item in stmt.node.target.items]


def _meet(a: _Box, b: _Box) -> bool:
    """Do two boxes provably share an element? Ranges starting or ending at the same
    place meet (an empty range is not a useful definition); others when the constant
    gaps between them say so."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if ra is None or rb is None:
            return False
        (lo1, hi1), (lo2, hi2) = ra, rb
        if lo1 == lo2 or hi1 == hi2:
            continue
        gaps = ((lo2 - hi1).constant, (lo1 - hi2).constant)
        if gaps[0] is None or gaps[1] is None or gaps[0] > 0 or gaps[1] > 0:
            return False
    return True
