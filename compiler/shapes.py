"""Shape inference: the shape of every variable and every expression, with symbolic sizes.

Contract: after `infer_shapes(model)`, every variable has `shape` (a tuple of Size),
`model.types[id(expr)]` holds the element type of every expression in a statement, and
`model.bindings[stmt.id]` the bound parameterisation of every distribution (and the
bounds of latents' declared types), and `Variable.discrete` says which are integer-valued;
mistakes (wrong arity, unknown keyword, too many indices, constant index out of range,
rank or constant-size mismatch, sizes that are not fixed) are raised together as one
BgmError. Defined variables' shapes are settled by a fixpoint (see _Settle), and a
variable whose shape failed is reported once, never again through its readers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from compiler.diffusion import diffusion_call
from compiler.distributions import DISTRIBUTIONS, Param, bind, binding_problem
from compiler.functions import FUNCTIONS, GENERATOR_REDUCTIONS
from compiler.indexing import (
    IndexForm,
    LoopScope,
    classify,
    index_text,
    left_index_diagnostic,
)
from compiler.ir import GraphicalModel, Statement, Variable
from compiler.nets import signature
from compiler.ranges import (
    ExprValueRule,
    IndexRule,
    LoopRule,
    SizeMatch,
    ValueRule,
    record,
)
from compiler.sizes import NotASize, Size, int_env, shape_text, size_diagnostic, size_of
from compiler.walk import calls, free_names
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, InternalError, Note, Problem
from dsl.printer import format_expr, format_range, format_target

Shape = tuple[Size, ...]
ONE = Size.const(1)


@dataclass(frozen=True)
class ExprType:
    shape: Shape
    integer: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class Binding:
    """A distribution call bound to one parameterisation (rule 18)."""

    name: str
    form: int
    params: tuple[Param, ...]  # in argument order: positional, then keywords
    args: tuple[Any, ...]  # the argument expressions, same order
    shape: Shape  # batch + event shape of one draw in the statement's context
    event_rank: int


class ShapeError(Exception):
    def __init__(self, message: str, node: Any, hint: str | None = None,
                 notes: tuple[Note, ...] = ()):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, getattr(node, "span", None), hint, notes)


def _size_error(exc: NotASize, model: GraphicalModel) -> ShapeError:
    d = size_diagnostic(exc, model.variables)
    return ShapeError(d.message, exc.node, d.hint)


class _Unknown(Exception):
    """A read of a variable whose shape could not be found: its own error is reported,
    so this read is skipped rather than reported a second time."""

    def __init__(self, name: n.Name):
        super().__init__(name.id)
        self.name = name


def infer_shapes(model: GraphicalModel) -> None:
    ctx = _Context(model)
    ctx.run()
    if ctx.errors:
        raise BgmError(ctx.errors, model.source)


class _Context:
    def __init__(self, model: GraphicalModel):
        self.model = model
        self.ints = int_env(model)
        self.errors: list[Diagnostic] = []
        self.unknown: list[n.Name] = []  # reads of variables whose shape failed (no cascade)
        self.generator_keys = 0  # negative LoopScope keys handed to generator variables
        model.types = {}
        model.bindings = {}
        model.diffusions = {}  # compiler/diffusion.py
        model.scopes = {}

    def fail(self, exc: ShapeError | NotASize) -> None:
        if isinstance(exc, NotASize):
            self.errors.append(size_diagnostic(exc, self.model.variables))
        else:
            self.errors.append(exc.diagnostic)

    # ---- driver
    def run(self) -> None:
        for loop in self.model.loops.values():
            try:
                lo = size_of(loop.range.lo, self.ints)
                hi = size_of(loop.range.hi, self.ints)
            except NotASize as exc:
                self.fail(exc)
                lo = hi = ONE
            self.model.scopes[loop.id] = LoopScope(loop.id, loop.var, lo, hi)
            try:
                check_range(lo, hi, loop.range, self.model.range_rules)
            except ShapeError as exc:
                self.fail(exc)
        self._sizes_not_drawn()
        for v in self.model.variables.values():
            if v.decl is not None and v.role in ("data", "observed", "param"):
                self._declared_shape(v)
            elif v.role in ("const", "net"):
                v.shape = ()
        if self.errors:
            return
        _Settle(self).run()
        for stmt in self.model.statements:
            if stmt.target is None or self.model.variables[stmt.target].role in (
                    "observed", "transformed_data"):
                self._checked(stmt)
            else:
                self._target_in_range(stmt)
        for v in self.model.of_role("param"):
            self._param_bounds(v)
        if self.unknown and not self.errors:
            raise InternalError(f"no shape for '{self.unknown[0].id}' and no error reported")

    def _sizes_not_drawn(self) -> None:
        """Int data that gives a size (a loop's range, a declared dimension) is fixed by
        the data: drawing it too would make shapes random."""
        sizes: set[str] = set()
        for scope in self.model.scopes.values():
            sizes |= scope.lo.names() | scope.hi.names()
        types = [v.declared_type for v in self.model.variables.values()]
        types += [getattr(s.node, "type", None) for s in self.model.statements]
        for t in types:
            for d in getattr(t, "dims", None) or ():
                try:
                    sizes |= size_of(d, self.ints).names()
                except NotASize:
                    pass
        for stmt in self.model.statements:
            if stmt.kind == "sample" and stmt.target in sizes:
                self.errors.append(Diagnostic(
                    f"'{stmt.target}' is a size; modelling it with '~' is not supported yet",
                    stmt.node.target.span,
                    "a size comes from the data and fixes the model's shapes; draw another "
                    "variable, or observe a copy of it"))

    def _target_in_range(self, stmt: Statement) -> None:
        """The elements a statement defines lie inside its variable's shape: `t[j]` for j
        in 0..N would otherwise define t[N] through Python's index -1."""
        v = self.model.variables[stmt.target]  # type: ignore[index]
        if v.shape is None:
            return
        try:
            _Expr(self, self.scopes_of(stmt)).index(v.name, v.shape, stmt.node.target.items,
                                                    stmt.node.target)
        except ShapeError as exc:
            self.fail(exc)
        except _Unknown as exc:
            self.unknown.append(exc.name)

    def _checked(self, stmt: Statement) -> None:
        """Type a statement whose target's shape is settled, reporting what is wrong."""
        try:
            self.statement(stmt)
        except _Unknown as exc:
            self.unknown.append(exc.name)
        except ShapeError as exc:
            self.fail(exc)

    def order(self) -> list[str]:
        g = nx.DiGraph()
        g.add_nodes_from(self.model.variables)
        for stmt in self.model.statements:
            if stmt.target is not None:
                g.add_edges_from((r, stmt.target) for r in stmt.reads if r != stmt.target)
        try:
            return list(nx.lexicographical_topological_sort(g))
        except nx.NetworkXUnfeasible:
            return list(self.model.variables)  # cycles are reported by checks.py

    def scopes_of(self, stmt: Statement) -> tuple[LoopScope, ...]:
        return tuple(self.model.scopes[loop.id] for loop in stmt.loops)

    # ---- variables
    def _declared_shape(self, v: Variable) -> None:
        try:
            v.shape = type_shape(v.declared_type, self.ints)
        except NotASize as exc:
            self.fail(exc)
            v.shape = ()

    def _param_bounds(self, v: Variable) -> None:
        """The bounds of a point parameter's declared type (rule 5: they may read data,
        consts and other unknowns) are typed and must fit its shape."""
        t = v.declared_type
        if t is None or v.shape is None:
            return
        ex = _Expr(self, ())
        for bound in (t.lower, t.upper):
            if bound is None:
                continue
            try:
                _check_fits(ex.type(bound).shape, v.shape, bound, "the bound",
                            n.Target(v.decl.name, (), span=v.decl.name.span))
            except _Unknown as exc:
                self.unknown.append(exc.name)
            except ShapeError as exc:
                self.fail(exc)

    def statements_of(self, v: Variable) -> list[Statement]:
        return [self.model.statements[i] for i in v.defs]

    def declared_element(self, v: Variable) -> Shape | None:
        """The element shape the first typed `~` of `v` declares (None: a bad type)."""
        typed = [s for s in self.statements_of(v) if s.kind == "sample" and s.node.type]
        try:
            return type_shape(typed[0].node.type, self.ints) if typed else ()
        except NotASize as exc:
            self.fail(exc)
            return None

    def positions(self, v: Variable, statements: list[Statement]) -> Shape | None:
        counts = {len(s.node.target.items) for s in statements}
        if len(counts) != 1:
            self.fail(ShapeError(f"'{v.name}' is indexed with different numbers of indices "
                                 "in its definitions", statements[-1].node.target))
            return None
        dims: list[Size] = []
        for position in range(counts.pop()):
            uppers = []
            for stmt in statements:
                form = classify(stmt.node.target.items[position], self.scopes_of(stmt),
                                self.ints)
                upper = _upper(form)
                if upper is None:
                    self.errors.append(left_index_diagnostic(stmt.node.target.items[position]))
                    return None
                uppers.append(upper)
            best = _max_size(uppers)
            if best is None:
                self.fail(ShapeError(f"cannot tell the size of '{v.name}': its definitions "
                                     f"reach {', '.join(map(str, uppers))}",
                                     statements[0].node.target))
                return None
            dims.append(best)
        total = 1
        for d in dims:
            total *= max(d.constant or 1, 1)
        if total > MAX_ELEMENTS:
            self.fail(ShapeError(_too_many(f"'{v.name}'", total), statements[0].node.target))
            return None
        return tuple(dims)

    # ---- statements
    def statement(self, stmt: Statement, provisional: bool = False) -> Shape:
        """The element shape a statement defines (and all its expression types); with
        `provisional`, the target's current shape is a guess and is not checked."""
        scopes = self.scopes_of(stmt)
        ex = _Expr(self, scopes)
        if stmt.kind == "factor":
            try:
                ex.type(stmt.node.expr)
            except ShapeError as exc:
                self.fail(exc)
            return ()
        target_type = None if provisional else self._target_type(stmt, ex)
        if provisional:
            for item in stmt.node.target.items:
                if not isinstance(item, (n.Slice, n.FullSlice)):
                    ex.type(item)
        if stmt.kind == "assign":
            value = ex.type(stmt.node.value)
            if provisional:  # integer-valued only if every definition is
                v = self.model.variables[stmt.target]  # type: ignore[index]
                v.discrete = value.integer and (stmt.id == v.defs[0] or v.discrete)
            if target_type is not None:
                _check_fits(value.shape, target_type, stmt.node.value, "the value",
                            stmt.node.target)
            return value.shape
        binding = ex.distribution(stmt.node.dist, stmt)
        self.model.bindings[stmt.id] = binding
        v = self.model.variables[stmt.target]  # type: ignore[index]
        if provisional:  # a discrete latent is integer-valued (it may index: mu[z[i]])
            v.discrete = DISTRIBUTIONS[binding.name].discrete
        if target_type is not None:
            _check_fits(binding.shape, target_type, stmt.node.dist,
                        f"a draw of {binding.name}", stmt.node.target, binding.event_rank)
            return target_type
        if stmt.node.type is None:
            return binding.shape
        elem = self._declared(stmt.node.type, stmt.node.target, ex)
        _check_fits(binding.shape, elem, stmt.node.dist, f"a draw of {binding.name}",
                    stmt.node.target, binding.event_rank)
        return elem

    def _declared(self, t: n.Type, left: n.Target, ex: _Expr) -> Shape:
        """The element shape a latent's declared type gives; its bounds, which may read
        other variables (rule 5), are typed and must fit that shape."""
        try:
            elem = type_shape(t, self.ints)
        except NotASize as exc:
            raise _size_error(exc, self.model) from None
        for bound in (t.lower, t.upper):
            if bound is not None:
                _check_fits(ex.type(bound).shape, elem, bound, "the bound", left)
        return elem

    def _target_type(self, stmt: Statement, ex: _Expr) -> Shape:
        """The element shape of the target, whose variable's shape is known. A `~` on
        transformed data observes elements the `=` statements define (rule 13); one
        reaching past them is the mistake of defining a variable both ways."""
        v = self.model.variables[stmt.target]  # type: ignore[index]
        target = stmt.node.target
        try:
            return ex.index(v.name, v.shape or (), target.items, target).shape
        except ShapeError:
            if stmt.kind != "sample" or v.role != "transformed_data":
                raise
        first = self.model.statements[v.defs[0]].node.target
        raise ShapeError(f"'{v.name}' is defined by '=' for some elements and by '~' for "
                         "others", target.name,
                         "a variable is either random ('~') or computed ('='); give the "
                         "'=' part its own name",
                         (Note("'=' defines it here", first.name.span),))


# The largest number of elements a variable with constant sizes may have, and the longest
# constant loop: beyond it, allocating the variable (or unrolling the graph) cannot work.
MAX_ELEMENTS = 10 ** 8


def _too_many(what: str, count: int) -> str:
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
            raise NotASize(_too_many("this shape", total), node)
    if t.base == "cholesky_corr":
        if not dims:
            raise NotASize("cholesky_corr needs its size: cholesky_corr[K]", t)
        return dims + (dims[-1],)
    if t.base in ("simplex", "ordered") and not dims:
        raise NotASize(f"{t.base} needs its size: {t.base}[K]", t)
    return dims


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


def _check_fits(value: Shape, target: Shape, node: Any, what: str, left: n.Target,
                event_rank: int = 0) -> None:
    """`value` must broadcast to `target`; event dims must match exactly."""
    mismatch = ShapeError(f"shape mismatch: {what} {_has(value)}, but the left side "
                          f"'{format_target(left)}' {_has(target)}", node)
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


def _has(shape: Shape) -> str:
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
        what = " and ".join(_operand(p, s) for p, s in zip(parts, shapes, strict=True))
    return ShapeError(f"shape mismatch: {what}, which do not broadcast", node,
                      "elementwise operations need equal sizes, or size 1, in each "
                      "dimension (NumPy broadcasting)")


def _operand(e: Any, shape: Shape) -> str:
    text = format_expr(e)
    return f"'{text}' {_has(shape)}" if len(text) <= 30 else shape_text(shape)


class _Settle:
    """Shapes of the variables defined by statements.

    Positions come from the targets' indices and need no reads, so they are fixed first;
    element shapes start from the declared types and are recomputed until nothing
    changes. The fixpoint also settles variables that read each other across iterations
    (a[t] reads b[t-1] and b[t] reads a[t-1]), which no order of visits can. Only the
    last round's problems are real; a variable reading one that failed is not reported
    (its shape rests on a guess) and gets no shape, so later reads of it stay silent.
    """

    def __init__(self, ctx: _Context):
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
            positions = self.ctx.positions(v, self.ctx.statements_of(v))
            element = self.ctx.declared_element(v) if positions is not None else None
            if positions is None or element is None:
                self.failed.add(name)
                v.shape = None
                continue
            self.positions[name] = positions
            v.shape = positions + element

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
            except _Unknown:
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


def _unsettled(v: Variable, ctx: _Context) -> Diagnostic:
    target = ctx.statements_of(v)[0].node.target
    return Diagnostic(f"the shape of '{v.name}' depends on itself", target.span,
                      f"build '{v.name}' from its earlier elements ({v.name}[t - 1]), not "
                      "from its whole value")


class _Expr:
    """Types of expressions in one statement's loop context."""

    def __init__(self, ctx: _Context, scopes: tuple[LoopScope, ...]):
        self.ctx = ctx
        self.scopes = scopes

    def record(self, e: Any, t: ExprType) -> ExprType:
        self.ctx.model.types[id(e)] = t
        return t

    def type(self, e: Any) -> ExprType:
        return self.record(e, self._type(e))

    def _type(self, e: Any) -> ExprType:
        if isinstance(e, n.Number):
            return ExprType((), isinstance(e.value, int))
        if isinstance(e, n.String):
            raise ShapeError("a string can only be the value of a keyword argument", e)
        if isinstance(e, n.Name):
            return self._name(e)
        if isinstance(e, n.Unary):
            return self.type(e.operand)
        if isinstance(e, n.Binary):
            return self._binary(e)
        if isinstance(e, n.Compare):
            a, b = self.type(e.left), self.type(e.right)
            return ExprType(broadcast([a.shape, b.shape], e, [e.left, e.right]), True)
        if isinstance(e, n.Vector):
            items = [self.type(i) for i in e.items]
            inner = broadcast([i.shape for i in items], e, list(e.items))
            return ExprType((Size.const(len(items)),) + inner, all(i.integer for i in items))
        if isinstance(e, n.Index):
            return self._index(e)
        if isinstance(e, n.Generator):
            return self._generator(e)
        if isinstance(e, n.Call):
            return self._call(e)
        raise InternalError(f"no shape rule for {type(e).__name__}")  # pragma: no cover

    def _name(self, e: n.Name) -> ExprType:
        if any(s.var == e.id for s in self.scopes):
            return ExprType((), True)
        v = self.ctx.model.variables[e.id]
        if v.role == "net":
            raise ShapeError(f"the net '{e.id}' must be called: {e.id}(...)", e)
        if v.shape is None:
            raise _Unknown(e)
        return ExprType(v.shape, _integer(v))

    def _binary(self, e: n.Binary) -> ExprType:
        a, b = self.type(e.left), self.type(e.right)
        if e.op != "@":
            integer = a.integer and b.integer and e.op in "+-*"
            return ExprType(broadcast([a.shape, b.shape], e, [e.left, e.right],
                                      self.ctx.model.range_rules), integer)
        ranks = (a.rank, b.rank)
        if ranks in ((2, 1), (1, 2), (2, 2), (1, 1)):
            inner = [a.shape[-1], b.shape[0]]
            if inner[0] != inner[1] and (inner[0] - inner[1]).constant is not None:
                raise ShapeError(f"shape mismatch in '@': {_operand(e.left, a.shape)} and "
                                 f"{_operand(e.right, b.shape)}, so the inner dimensions "
                                 f"{inner[0]} and {inner[1]} differ", e)
            if inner[0] != inner[1]:
                record(self.ctx.model.range_rules, SizeMatch(
                    inner[0], inner[1], False, e.span,
                    f"the inner dimensions of '{format_expr(e)}'"))
            return ExprType(a.shape[:-1] + b.shape[1:])
        side, t = (e.left, a) if a.rank not in (1, 2) else (e.right, b)
        what = "is a scalar" if t.rank == 0 else f"has {t.rank} dimensions"
        raise ShapeError(f"'@' multiplies vectors and matrices, but '{format_expr(side)}' "
                         f"{what}", side,
                         "to multiply by a scalar, use '*'" if t.rank == 0 else None)

    def _index(self, e: n.Index) -> ExprType:
        base = e.base
        items = list(e.items)
        while isinstance(base, n.Index):  # x[i][j] is x[i, j] (rule 16)
            items = list(base.items) + items
            base = base.base
        if isinstance(base, n.Name) and base.id in self.ctx.model.variables:
            v = self.ctx.model.variables[base.id]
            self.type(base)
            return self.index(v.name, v.shape or (), tuple(items), e)
        inner = self.type(base)
        return self.index(format_expr(base), inner.shape, tuple(items), e, inner.integer)

    def index(self, what: str, shape: Shape, items: tuple[Any, ...], node: Any,
              integer: bool | None = None) -> ExprType:
        if len(items) > len(shape):
            raise ShapeError(f"'{what}' has {len(shape)} dimension"
                             f"{'' if len(shape) == 1 else 's'} but is indexed with "
                             f"{len(items)}", node, f"'{what}' {_has(shape)}")
        out: list[Size] = []
        for dim, item in zip(shape, items, strict=False):
            form = classify(item, self.scopes, self.ctx.ints)
            out += self._index_item(what, dim, form, item)
        out += list(shape[len(items):])
        if integer is None:
            v = self.ctx.model.variables.get(what)
            integer = v is not None and _integer(v)
        return ExprType(tuple(out), integer)

    def _index_item(self, what: str, dim: Size, form: IndexForm, item: Any) -> list[Size]:
        if form.kind == "full":
            return [dim]
        rules, guards = self.ctx.model.range_rules, tuple((s.lo, s.hi) for s in self.scopes)
        if form.kind == "slice":
            _check_static_range(what, dim, form.lo, item, None, rules)  # type: ignore[arg-type]
            _check_static_range(what, dim, form.hi, item, None, rules)  # type: ignore[arg-type]
            return [form.hi - form.lo + ONE]  # type: ignore[operator]
        if form.kind == "prefix":
            raise ShapeError("prefix slices (x[1..t-1]) are for causal nets, which are not "
                             "supported yet", item)
        if form.kind in ("scalar", "loop") and not isinstance(item, (n.Slice, n.FullSlice)):
            self.type(item)  # codegen reads the types of its parts (i + N)
        if form.kind == "scalar":
            _check_static_range(what, dim, form.lo, item, None, rules,  # type: ignore[arg-type]
                                guards)
            return []
        if form.kind == "loop":
            assert form.loop is not None and form.offset is not None
            loop = form.loop
            _check_static_range(what, dim, loop.lo + form.offset, item,
                                f"the first iteration ({loop.var} = {loop.lo})", rules, guards)
            _check_static_range(what, dim, loop.hi + form.offset, item,
                                f"the last iteration ({loop.var} = {loop.hi})", rules, guards)
            return []
        if isinstance(item, n.Slice):
            raise self._slice_error(item)
        t = self.type(item)  # gather: an integer array
        if not t.integer:
            raise ShapeError(f"an index must be an integer; '{format_expr(item)}' is real", item,
                             "indices are loop variables, int data, consts or discrete "
                             "values")
        source = self.ctx.model.variables.get(getattr(item, "id", ""))
        if isinstance(item, n.Name) and source is not None and \
                source.role in ("data", "observed"):  # every value of it is read
            record(self.ctx.model.range_rules, ValueRule(source.name, dim, item.span, what))
        elif self._from_data(item):  # exactly the elements read: `z[i]`, `3 * k[i] - 2`
            record(self.ctx.model.range_rules, ExprValueRule(
                id(item), self.scopes, dim, item.span,
                f"the index '{format_expr(item)}' of '{what}'"))
        return list(t.shape)

    def _from_data(self, item: Any) -> bool:
        """Whether `item` reads only `data` (always present), consts and loop variables,
        and some data: its values are known once the data is loaded."""
        loop_vars = {s.var for s in self.scopes}
        roles = []
        for name in free_names(item):
            if name.id in loop_vars:
                continue
            v = self.ctx.model.variables.get(name.id)
            if v is None or v.role not in ("data", "const"):
                return False
            roles.append(v.role)
        calls_ok = all(isinstance(c, n.Generator) or c.func.id not in
                       self.ctx.model.variables for c in calls(item))
        return "data" in roles and calls_ok

    def _slice_error(self, item: n.Slice) -> ShapeError:
        """A slice whose bounds are not sizes, or that starts at a loop variable."""
        loop_vars = {s.var: None for s in self.scopes}
        try:
            for bound in (item.range.lo, item.range.hi):
                size_of(bound, {**self.ctx.ints, **loop_vars})
        except NotASize as exc:
            return _size_error(exc, self.ctx.model)
        return ShapeError(f"the slice '{format_range(item.range)}' cannot start at a loop "
                          "variable", item,
                          "slices are a..b with fixed sizes, or a prefix such as 1..t - 1")

    def _generator(self, e: n.Generator) -> ExprType:
        if e.func.id not in GENERATOR_REDUCTIONS:
            raise ShapeError(f"'{e.func.id}' does not take a generator", e.func,
                             "a generator is the sole argument of "
                             f"{', '.join(GENERATOR_REDUCTIONS)}")
        try:
            lo = size_of(e.range.lo, self.ctx.ints)
            hi = size_of(e.range.hi, self.ctx.ints)
        except NotASize as exc:
            raise _size_error(exc, self.ctx.model) from None
        check_range(lo, hi, e.range, self.ctx.model.range_rules)
        self.ctx.generator_keys -= 1  # one key per generator, nested ones included
        key = self.ctx.generator_keys
        inner = _Expr(self.ctx, self.scopes + (LoopScope(key, e.var.id, lo, hi),))
        body = inner.type(e.body)
        self.ctx.model.scopes[id(e)] = inner.scopes[-1]
        return ExprType(body.shape, body.integer and e.func.id in ("sum", "prod", "max", "min"))

    def _call(self, e: n.Call) -> ExprType:
        name = e.func.id
        v = self.ctx.model.variables.get(name)
        if v is not None and v.role == "net":
            return self._net_call(v, e)
        spec = FUNCTIONS.get(name)
        if spec is None:  # resolve reports distributions, nets and variables called
            raise InternalError(f"shapes met a call of '{name}', which is not a function")
        if e.kwargs:
            raise ShapeError(f"'{name}' takes no keyword arguments", e.kwargs[0])
        too_many = spec.max_args is not None and len(e.args) > spec.max_args
        if len(e.args) < spec.min_args or too_many:
            raise _arity_error(e, spec.min_args, spec.max_args)
        args = [self.type(a) for a in e.args]
        return self._call_shape(name, spec.kind, args, e, spec.integer)

    def _net_call(self, v: Variable, e: n.Call) -> ExprType:
        """`f(x)`: x's last dimension is the net's input size; the output replaces it."""
        try:
            sig = signature(self.ctx.model, v, self.ctx.ints)
        except Problem as exc:  # at the declaration, where the mistake is
            raise ShapeError(exc.diagnostic.message, exc.diagnostic, exc.diagnostic.hint) \
                from None
        if len(e.args) != 1 or e.kwargs:
            raise ShapeError(f"the net '{v.name}' takes one argument", e.func)
        if sig.sequence:
            self._prefix_argument(v, e.args[0], sig)
            return ExprType((sig.outputs,))
        arg = self.type(e.args[0])
        if arg.rank == 0:
            raise ShapeError(f"the net '{v.name}' takes a vector of {sig.inputs} inputs, "
                             "not a scalar", e.args[0])
        last = arg.shape[-1]
        if last != sig.inputs and last.constant is not None and sig.inputs.constant is not None:
            raise ShapeError(f"the net '{v.name}' takes {sig.inputs} inputs, but its argument "
                             f"has {last}", e.args[0],
                             f"declared {v.decl.kind.id}"
                             f"({', '.join(str(x) for x in sig.sizes)})")
        if last != sig.inputs and (last.constant is None) != (sig.inputs.constant is None):
            raise ShapeError(f"the net '{v.name}' takes {sig.inputs} inputs, but its argument "
                             f"has {last}", e.args[0])
        return ExprType(arg.shape[:-1] + (sig.outputs,))

    def _prefix_argument(self, v: Variable, arg: Any, sig: Any) -> None:
        """A causal net reads a prefix of a vector of tokens: `x[a..t-c]`, x int data
        with values 1..vocab, in a loop over t."""
        hint = f"write {v.name}(x[1..t - 1]) inside 'for t in ...:', x a vector of int data"
        if not isinstance(arg, n.Index) or len(arg.items) != 1:
            raise ShapeError(f"the causal net '{v.name}' reads a prefix of a sequence", arg,
                             hint)
        form = classify(arg.items[0], self.scopes, self.ctx.ints)
        ends_before = form.offset is not None and form.offset.constant is not None and \
            form.offset.constant <= -1
        if form.kind != "prefix" or form.loop is None or not ends_before or \
                form.loop.key != self.scopes[-1].key:
            raise ShapeError(f"the causal net '{v.name}' reads a prefix such as "
                             f"{format_expr(arg.base)}[1..t - 1] that ends before the "
                             "innermost loop's iteration", arg.items[0], hint)
        if len(self.scopes) != 1:
            raise ShapeError("a causal net inside nested loops is not supported yet", arg,
                             "read one long sequence in a single loop")
        target = self.ctx.model.variables.get(format_expr(arg.base))
        if target is None or target.role not in ("data", "observed") or not _integer(target) \
                or len(target.shape or ()) != 1:
            raise ShapeError(f"the causal net '{v.name}' reads tokens: a vector of int data "
                             f"with values 1..{sig.option('vocab')}", arg.base, hint)
        _check_static_range(target.name, target.shape[0], form.lo, arg.items[0])
        first = form.loop.lo + form.offset - form.lo + ONE  # the first prefix's length
        if first.constant is not None and first.constant < 0:
            raise ShapeError(f"the first prefix ({target.name}[{form.lo}..{form.loop.lo} + "
                             f"{form.offset}]) would end before it starts", arg.items[0])

    def _call_shape(self, name: str, kind: str, args: list[ExprType], e: n.Call,
                    integer: bool) -> ExprType:
        if kind == "elementwise":
            return ExprType(broadcast([a.shape for a in args], e, list(e.args),
                                      self.ctx.model.range_rules), integer)
        if kind == "reduce":
            return ExprType((), args[0].integer and name in ("sum", "prod", "max", "min"))
        if kind == "vector":
            if args[0].rank < 1:
                raise ShapeError(f"'{name}' needs a vector", e)
            return ExprType(args[0].shape, name == "cumsum" and args[0].integer)
        if kind == "dot":
            if args[0].rank != 1 or args[1].rank != 1:
                raise ShapeError("'dot' takes two vectors", e)
            _same_dim(args[0].shape[0], args[1].shape[0], e)
            if args[0].shape[0] != args[1].shape[0]:
                record(self.ctx.model.range_rules, SizeMatch(
                    args[0].shape[0], args[1].shape[0], False, e.span,
                    f"the lengths of the vectors in '{format_expr(e)}'"))
            return ExprType(())
        if kind == "build":
            return ExprType(tuple(self._size_arg(a) for a in e.args))
        return self._special(name, args, e)

    def _size_arg(self, a: Any) -> Size:
        try:
            return size_of(a, self.ctx.ints)
        except NotASize as exc:
            raise _size_error(exc, self.ctx.model) from None

    def _special(self, name: str, args: list[ExprType], e: n.Call) -> ExprType:
        if name == "eye":
            k = self._size_arg(e.args[0])
            return ExprType((k, k))
        if name == "linspace":
            return ExprType((self._size_arg(e.args[2]),))
        if name == "one_hot":
            return ExprType(args[0].shape + (self._size_arg(e.args[1]),), True)
        if name == "length":
            if args[0].rank < 1:
                raise ShapeError("'length' takes a vector (or an array: its last "
                                 f"dimension); '{format_expr(e.args[0])}' is a scalar",
                                 e.args[0])
            return ExprType((), True)
        if name == "diag":
            if args[0].rank != 1:
                raise ShapeError("'diag' takes a vector", e)
            return ExprType((args[0].shape[0], args[0].shape[0]))
        if args[0].rank != 2:  # cholesky, transpose
            raise ShapeError(f"'{name}' takes a matrix", e)
        shape = args[0].shape
        return ExprType((shape[1], shape[0]) if name == "transpose" else shape)

    # ---- distributions
    def distribution(self, e: Any, stmt: Statement) -> Binding:
        if not isinstance(e, n.Call) or e.func.id not in DISTRIBUTIONS:
            raise ShapeError("expected a distribution after '~', such as Normal(0, 1)", e,
                             "'~' draws from a distribution; to give a fixed value, use '='")
        if e.func.id == "Diffusion":
            return self._diffusion(e, stmt)
        spec = DISTRIBUTIONS[e.func.id]
        keywords = [k.name for k in e.kwargs]
        bound = bind(spec, len(e.args), keywords)
        if bound is None:
            raise _binding_error(e, spec.name, len(e.args), keywords)
        form, params = bound
        args = tuple(e.args) + tuple(k.value for k in e.kwargs)
        batch: list[Shape] = []
        event: Shape = ()
        for param, arg in zip(params, args, strict=True):
            if isinstance(arg, n.String):
                raise ShapeError(f"{spec.name}'s {param.name} must be a number, not a string",
                                 arg)
            t = self.type(arg)
            if t.rank < param.rank:
                need = "a vector" if param.rank == 1 else "a matrix"
                raise ShapeError(f"{spec.name}'s parameter {param.name} must be {need}; "
                                 f"'{format_expr(arg)}' has shape {shape_text(t.shape)}", arg)
            batch.append(t.shape[:t.rank - param.rank])
            if spec.event_from == param.name:
                event = t.shape[t.rank - param.rank:]
        shape = broadcast(batch, e, list(args)) + event
        if spec.name == "DiscreteUniform":
            self._uniform_order(e, args)
        if spec.name == "LKJCholesky":
            for arg, b in zip(args, batch, strict=True):
                if b:  # one correlation matrix per draw: eta is one number
                    raise ShapeError(f"LKJCholesky's parameter eta must be a number; "
                                     f"'{format_expr(arg)}' has shape {shape_text(b)}", arg,
                                     "LKJCholesky(eta) draws one cholesky_corr[K] from one "
                                     "concentration eta > 0")
            shape = self._lkj_shape(stmt, e)
        return Binding(spec.name, form, tuple(params), args, shape, spec.event_rank)

    def _uniform_order(self, e: n.Call, args: tuple[Any, ...]) -> None:
        """DiscreteUniform(lower, upper) needs lower <= upper: decided here when the
        difference is a constant, else checked when the data is loaded."""
        try:
            lo, hi = (size_of(a, self.ctx.ints) for a in args)
        except NotASize:
            return  # reads loop variables or unknowns: nothing to decide before sampling
        count = hi - lo + ONE
        text = f"the number of values of {format_expr(e)} (upper - lower + 1)"
        if count.constant is not None:
            if count.constant < 1:
                raise ShapeError(f"{format_expr(e)} has its lower bound above its upper "
                                 "bound", e, "write DiscreteUniform(lower, upper) with "
                                 "lower <= upper")
            return
        if all(c > 0 for mono, c in count.terms if mono):
            return  # grows with the sizes (DiscreteUniform(1, T)): only T = 0 is empty
        record(self.ctx.model.range_rules, IndexRule(
            count, None, tuple((s.lo, s.hi) for s in self.scopes), e.span, text))

    def _diffusion(self, e: n.Call, stmt: Statement) -> Binding:
        """Diffusion(eps, steps=, schedule=): checked by compiler/diffusion.py, recorded on
        model.diffusions; an event of the net's output width, no value arguments."""
        try:
            call, width = diffusion_call(self.ctx.model, e, stmt, self.ctx.ints)
        except Problem as exc:
            raise ShapeError(exc.diagnostic.message, exc.diagnostic, exc.diagnostic.hint) \
                from None
        self.ctx.model.diffusions[stmt.id] = call
        return Binding("Diffusion", 0, (), (), (width,), 1)

    def _lkj_shape(self, stmt: Statement, e: Any) -> Shape:
        """LKJCholesky(eta) takes K from the declared type (rule 18)."""
        v = self.ctx.model.variables[stmt.target]  # type: ignore[index]
        declared = stmt.node.type or v.declared_type
        if declared is None or declared.base != "cholesky_corr":
            name = format_expr(stmt.node.target.name)
            raise ShapeError("LKJCholesky takes its size from the declared type", e.func,
                             f"declare it: {name}: cholesky_corr[K] ~ LKJCholesky(eta)")
        try:
            return type_shape(declared, self.ctx.ints)[-2:]
        except NotASize as exc:
            raise _size_error(exc, self.ctx.model) from None


def _binding_error(call: n.Call, name: str, n_args: int, keywords: list[str]) -> ShapeError:
    """Point at the argument at fault (an unknown or repeated keyword, the first extra
    argument), else at the distribution's name."""
    problem = binding_problem(DISTRIBUTIONS[name], n_args, keywords)
    if problem is None:
        raise InternalError(f"{name} binds these arguments but bind() said it does not")
    items = list(call.args) + list(call.kwargs)
    at = items[problem.argument] if problem.argument is not None else call.func
    return ShapeError(problem.message, at, problem.hint)


def _arity_error(call: n.Call, low: int, high: int | None) -> ShapeError:
    """Point at the first extra argument, or at the function when some are missing."""
    want = str(low) if high == low else f"at least {low}" if high is None else \
        f"{low} to {high}"
    plural = "" if want == "1" else "s"
    extra = high is not None and len(call.args) > high
    return ShapeError(f"'{call.func.id}' takes {want} argument{plural}, got {len(call.args)}",
                      call.args[high] if extra and high is not None else call.func)


def _integer(v: Variable) -> bool:
    """Integer-valued: int data, an integer const, or a discrete latent."""
    if v.role == "const":
        return isinstance(v.value, int)
    return v.discrete or (v.declared_type is not None and v.declared_type.base == "int")


def _same_dim(a: Size, b: Size, node: Any) -> None:
    if a != b and a.constant is not None and b.constant is not None:
        raise ShapeError(f"shape mismatch: the inner dimensions {a} and {b} differ", node)


def _check_static_range(what: str, dim: Size, index: Size, node: Any,
                        where: str | None = None, rules: dict[Any, Any] | None = None,
                        guards: tuple[tuple[Size, Size], ...] = ()) -> None:
    """Compile-time range check of one index (rule 16); `where` says at which loop
    iteration the index takes this value. What only the data decides is recorded in
    `rules` (compiler/ranges.py) and checked when the data is loaded."""
    value = index.constant
    hint = f"at {where}, '{index_text(node)}' is {index}" if where else None
    if value is None:
        diff = (index - dim).constant
        if diff is not None and diff > 0:
            raise ShapeError(f"index {index} is out of range for '{what}' of size {dim}",
                             node, hint)
        _defer(rules, what, index, None if diff is not None else dim, node, where, guards)
        return
    if value < 1:
        raise ShapeError(f"index {value} is out of range: indices start at 1", node,
                         hint or "bgm counts from 1, as in the maths and in Stan")
    if dim.constant is not None and value > dim.constant:
        raise ShapeError(f"index {value} is out of range for '{what}' of size {dim}", node,
                         hint)
    if dim.constant is None:
        _defer(rules, what, index, dim, node, where, guards)


def _defer(rules: dict[Any, Any] | None, what: str, index: Size, dim: Size | None, node: Any,
           where: str | None, guards: tuple[tuple[Size, Size], ...]) -> None:
    """Record a range rule that only the data decides (compiler/ranges.py)."""
    if rules is not None and getattr(node, "span", None) is not None:
        text = f"the index '{index_text(node)}' of '{what}'" + (f" at {where}" if where else "")
        record(rules, IndexRule(index, dim, guards, node.span, text))
