"""The shapes of the variables defined by statements (`=` and `~` on indexed targets),
settled by a fixpoint over their definitions.

Separate from the driver (compiler/passes/shapes.py) because it is the one part that iterates:
positions are read off the targets' indices, element shapes are recomputed until nothing
changes, and only the last round's problems are reported.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from compiler.indexing import IndexForm, classify, left_index_diagnostic
from compiler.ir import Statement, Variable
from compiler.passes.shape_rules import (
    MAX_ELEMENTS,
    Shape,
    ShapeError,
    UnknownShape,
    too_many_elements,
    type_shape,
)
from compiler.sizes import NotASize, Size, shape_text
from dsl.diagnostics import Diagnostic

if TYPE_CHECKING:
    from compiler.passes.shapes import ShapeContext


class ShapeFixpoint:
    """Shapes of the variables defined by statements.

    Positions come from the targets' indices and need no reads, so they are fixed first;
    element shapes start from the declared types and are recomputed until nothing
    changes. The fixpoint also settles variables that read each other across iterations
    (a[t] reads b[t-1] and b[t] reads a[t-1]), which no order of visits can. Only the
    last round's problems are real; a variable reading one that failed is not reported
    (its shape rests on a guess) and gets no shape, so later reads of it stay silent.
    """

    def __init__(self, ctx: ShapeContext):
        self.ctx = ctx
        self.positions: dict[str, Shape] = {}
        self.failed: set[str] = set()

    def run(self) -> None:
        self._start()
        problems: dict[str, Diagnostic | None] = {}
        for _ in range(len(self.positions) + 2):
            changed, problems = self._round()
            if not changed:
                break
        else:
            problems = {name: _unsettled(self.ctx.model.variables[name], self.ctx)
                        for name in changed}
        self._finish(problems)

    def _start(self) -> None:
        for name in self.ctx.order():
            v = self.ctx.model.variables[name]
            if not v.defs or v.role == "observed":
                continue
            positions = self._position_dims(v, self.ctx.statements_of(v))
            element = self._declared_element(v) if positions is not None else None
            if positions is None or element is None:
                self.failed.add(name)
                v.shape = None
                continue
            self.positions[name] = positions
            v.shape = positions + element

    def _declared_element(self, v: Variable) -> Shape | None:
        """The element shape the first typed `~` of `v` declares (None: a bad type)."""
        typed = [s for s in self.ctx.statements_of(v) if s.kind == "sample" and s.node.type]
        try:
            return type_shape(typed[0].node.type, self.ctx.ints) if typed else ()
        except NotASize as exc:
            self.ctx.fail(exc)
            return None

    def _position_dims(self, v: Variable, statements: list[Statement]) -> Shape | None:
        """The dimensions the targets' indices reach, one per index (None: reported)."""
        counts = {len(s.node.target.items) for s in statements}
        if len(counts) != 1:
            self.ctx.fail(ShapeError(f"'{v.name}' is indexed with different numbers of "
                                     "indices in its definitions",
                                     statements[-1].node.target))
            return None
        dims: list[Size] = []
        for position in range(counts.pop()):
            uppers = []
            for stmt in statements:
                form = classify(stmt.node.target.items[position], self.ctx.scopes_of(stmt),
                                self.ctx.ints)
                upper = _upper(form)
                if upper is None:
                    self.ctx.errors.append(
                        left_index_diagnostic(stmt.node.target.items[position]))
                    return None
                uppers.append(upper)
            best = _max_size(uppers)
            if best is None:
                self.ctx.fail(ShapeError(f"cannot tell the size of '{v.name}': its "
                                         f"definitions reach {', '.join(map(str, uppers))}",
                                         statements[0].node.target))
                return None
            dims.append(best)
        total = 1
        for d in dims:
            total *= max(d.constant or 1, 1)
        if total > MAX_ELEMENTS:
            self.ctx.fail(ShapeError(too_many_elements(f"'{v.name}'", total),
                                     statements[0].node.target))
            return None
        return tuple(dims)

    def _round(self) -> tuple[set[str], dict[str, Diagnostic | None]]:
        """One pass over every variable; returns those whose shape changed and the
        problems found (None: a read of a variable without a shape)."""
        changed: set[str] = set()
        problems: dict[str, Diagnostic | None] = {}
        for name, positions in self.positions.items():
            v = self.ctx.model.variables[name]
            was_integer = v.discrete
            try:
                element = self._element(v)
            except ShapeError as exc:
                problems[name] = exc.diagnostic
                continue
            except UnknownShape:
                problems[name] = None
                continue
            if positions + element != v.shape or v.discrete != was_integer:
                v.shape = positions + element
                changed.add(name)
        return changed, problems

    def _element(self, v: Variable) -> Shape:
        statements = self.ctx.statements_of(v)
        elements = [self.ctx.statement(s, provisional=True) for s in statements]
        for s, e in zip(statements[1:], elements[1:], strict=True):
            if e != elements[0]:
                raise ShapeError(f"the definitions of '{v.name}' give elements of different "
                                 f"shapes {shape_text(elements[0])} and {shape_text(e)}",
                                 s.node.target)
        return elements[0]

    def _finish(self, problems: dict[str, Diagnostic | None]) -> None:
        broken = self._downstream(self.failed | set(problems))
        found = [p for p in problems.values() if p is not None]
        for name, problem in problems.items():
            reads = {r for s in self.ctx.statements_of(self.ctx.model.variables[name])
                     for r in s.reads if r != name}
            if problem is not None and not reads & broken:
                self.ctx.errors.append(problem)
        if found and not self.ctx.errors:  # variables failing in a circle: report one
            self.ctx.errors.append(min(found, key=_position))
        for name in broken:
            self.ctx.model.variables[name].shape = None

    def _downstream(self, roots: set[str]) -> set[str]:
        """`roots` and every defined variable that reads one of them, transitively."""
        found = set(roots)
        grew = True
        while grew:
            grew = False
            for name in self.positions:
                v = self.ctx.model.variables[name]
                if name not in found and any(r in found for s in self.ctx.statements_of(v)
                                             for r in s.reads):
                    found.add(name)
                    grew = True
        return found


def _position(d: Diagnostic) -> tuple[int, int]:
    return (d.span.line, d.span.column) if d.span else (0, 0)


def _unsettled(v: Variable, ctx: ShapeContext) -> Diagnostic:
    target = ctx.statements_of(v)[0].node.target
    return Diagnostic(f"the shape of '{v.name}' depends on itself", target.span,
                      f"build '{v.name}' from its earlier elements ({v.name}[t - 1]), not "
                      "from its whole value")


def _upper(form: IndexForm) -> Size | None:
    if form.kind == "loop" and form.loop is not None and form.offset is not None:
        return form.loop.hi + form.offset
    if form.kind == "scalar":
        return form.lo
    if form.kind == "slice":
        return form.hi
    return None


def _max_size(sizes: list[Size]) -> Size | None:
    best = sizes[0]
    for s in sizes[1:]:
        diff = (s - best).constant
        if diff is not None:
            best = s if diff > 0 else best
        elif best.constant is not None:
            best = s
        elif s.constant is None:
            return None
    return best
