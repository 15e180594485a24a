"""The rules of shape inference that more than one of its parts applies: the error a
shape mistake raises, NumPy broadcasting, a value fitting its target, the shape a declared
type describes, a range's length, and the limit on a variable's size.

Separate so that the driver (shapes.py), the fixpoint (shape_fixpoint.py) and the typers
(expr_types.py, distribution_types.py), all in compiler/passes/, share one wording of each
rule and import it without importing each other.
"""
from __future__ import annotations

from typing import Any

from compiler.ir import GraphicalModel
from compiler.passes.ranges import LoopRule, SizeMatch, record
from compiler.sizes import NotASize, Size, shape_text, size_diagnostic, size_of
from dsl import nodes as n
from dsl.diagnostics import Diagnostic, Note
from dsl.printer import format_expr, format_range, format_target

Shape = tuple[Size, ...]
ONE = Size.const(1)


class ShapeError(Exception):
    def __init__(self, message: str, node: Any, hint: str | None = None,
                 notes: tuple[Note, ...] = ()):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, getattr(node, "span", None), hint, notes)


def size_error(exc: NotASize, model: GraphicalModel) -> ShapeError:
    d = size_diagnostic(exc, model.variables)
    return ShapeError(d.message, exc.node, d.hint)


class UnknownShape(Exception):
    """A read of a variable whose shape could not be found: its own error is reported,
    so this read is skipped rather than reported a second time."""

    def __init__(self, name: n.Name):
        super().__init__(name.id)
        self.name = name


# The largest number of elements a variable with constant sizes may have, and the longest
# constant loop: beyond it, allocating the variable (or unrolling the graph) cannot work.
MAX_ELEMENTS = 10 ** 8


def too_many_elements(what: str, count: int) -> str:
    return (f"{what} has {count} elements, more than the limit of {MAX_ELEMENTS} "
            "(10**8) elements per variable")


def check_range(lo: Size, hi: Size, node: n.Range, rules: dict[Any, Any]) -> None:
    """A loop or generator range lo..hi may be empty (hi = lo - 1: `for t in 2..T` with
    T = 1) but never run backwards; what the data decides is checked when it is loaded."""
    length = (hi - lo + ONE).constant
    if length is not None and length < 0:
        raise ShapeError(f"the range {format_range(node)} runs backwards: it would have "
                         f"{length} iterations", node,
                         "ranges count up, a..b with b >= a (b = a - 1 is an empty range)")
    if length is not None and length > MAX_ELEMENTS:
        raise ShapeError(f"the range {format_range(node)} has {length} iterations, more than "
                         f"the limit of {MAX_ELEMENTS} (10**8)", node)
    if length is None:
        record(rules, LoopRule(lo, hi, node.span, f"the range {format_range(node)}"))


def type_shape(t: n.Type | None, ints: dict[str, Any]) -> Shape:
    """The full shape a declared type describes (simplex[K] is [K], cholesky_corr[K] KxK)."""
    if t is None:
        return ()
    dims = tuple(size_of(d, ints) for d in t.dims)
    total = 1
    for d, node in zip(dims, t.dims, strict=True):
        if d.constant is not None and d.constant < 0:
            raise NotASize(f"a size cannot be negative; this is {d.constant}", node)
        total *= max(d.constant or 1, 1)
        if total > MAX_ELEMENTS:
            raise NotASize(too_many_elements("this shape", total), node)
    if t.base == "cholesky_corr":
        if not dims:
            raise NotASize("cholesky_corr needs its size: cholesky_corr[K]", t)
        return dims + (dims[-1],)
    if t.base in ("simplex", "ordered") and not dims:
        raise NotASize(f"{t.base} needs its size: {t.base}[K]", t)
    return dims


def check_fits(value: Shape, target: Shape, node: Any, what: str, left: n.Target,
                event_rank: int = 0) -> None:
    """`value` must broadcast to `target`; event dims must match exactly."""
    mismatch = ShapeError(f"shape mismatch: {what} {shape_phrase(value)}, but the left side "
                          f"'{format_target(left)}' {shape_phrase(target)}", node)
    if len(value) > len(target):
        raise mismatch
    for i, (a, b) in enumerate(zip(reversed(value), reversed(target), strict=False)):
        event = i < event_rank
        if a == b:
            continue
        if not event and a.constant == 1:
            continue
        if a.constant is not None and b.constant is not None or event:
            raise mismatch


def shape_phrase(shape: Shape) -> str:
    return "is a scalar" if not shape else f"has shape {shape_text(shape)}"


def broadcast(shapes: list[Shape], node: Any, parts: list[Any] | None = None,
              rules: dict[Any, Any] | None = None) -> Shape:
    """NumPy broadcasting of element shapes; only provable mismatches are errors, and
    what the data decides (N against 2) is recorded in `rules` when given.
    `parts`, the expressions with these shapes, name the operands in the message."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Size] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        chosen = ONE
        for d in dims:
            if d.constant == 1:
                continue
            if chosen.constant == 1:
                chosen = d
            elif d != chosen and d.constant is not None and chosen.constant is not None:
                raise _broadcast_error(shapes, node, parts)
            elif d != chosen and rules is not None and getattr(node, "span", None):
                record(rules, SizeMatch(chosen, d, True, node.span,
                                        f"the shapes combined in '{format_expr(node)}'"))
        out.append(chosen)
    return tuple(out)


def _broadcast_error(shapes: list[Shape], node: Any, parts: list[Any] | None) -> ShapeError:
    if parts is None:
        what = " and ".join(shape_text(s) for s in shapes)
    else:
        what = " and ".join(operand_phrase(p, s) for p, s in zip(parts, shapes, strict=True))
    return ShapeError(f"shape mismatch: {what}, which do not broadcast", node,
                      "elementwise operations need equal sizes, or size 1, in each "
                      "dimension (NumPy broadcasting)")


def operand_phrase(e: Any, shape: Shape) -> str:
    text = format_expr(e)
    return f"'{text}' {shape_phrase(shape)}" if len(text) <= 30 else shape_text(shape)
