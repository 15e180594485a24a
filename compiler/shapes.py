"""Shape inference: the shape of every variable and every expression, with symbolic sizes.

Contract: after `infer_shapes(model)`, every variable has `shape` (a tuple of Size),
`model.types[id(expr)]` holds the element type of every expression in a statement, and
`model.bindings[stmt.id]` the bound parameterisation of every distribution; mistakes
(wrong arity, unknown keyword, too many indices, constant index out of range, rank or
constant-size mismatch) are raised together as one BgmError.
Variables are visited in dependency order so a read always sees a known shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from compiler.distributions import DISTRIBUTIONS, Param, bind, binding_error
from compiler.functions import FUNCTIONS, GENERATOR_REDUCTIONS
from compiler.indexing import IndexForm, LoopScope, classify
from compiler.ir import GraphicalModel, Statement, Variable
from compiler.sizes import NotASize, Size, shape_text, size_of
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic
from dsl.printer import format_expr

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
    def __init__(self, message: str, node: Any, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, getattr(node, "span", None), hint)


def int_env(model: GraphicalModel) -> dict[str, Any]:
    """Names allowed in sizes: int scalar data (value unknown) and integer consts."""
    env: dict[str, Any] = {}
    for v in model.variables.values():
        if v.role in ("data", "observed") and v.declared_type is not None \
                and v.declared_type.base == "int" and not v.declared_type.dims:
            env[v.name] = None
        elif v.role == "const" and isinstance(v.value, int):
            env[v.name] = v.value
    return env


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
        model.types = {}  # type: ignore[attr-defined]
        model.bindings = {}  # type: ignore[attr-defined]
        model.scopes = {}  # type: ignore[attr-defined]

    def fail(self, exc: ShapeError | NotASize, hint: str | None = None) -> None:
        if isinstance(exc, NotASize):
            self.errors.append(Diagnostic(str(exc), getattr(exc.node, "span", None), hint))
        else:
            self.errors.append(exc.diagnostic)

    # ---- driver
    def run(self) -> None:
        for loop in self.model.loops.values():
            try:
                lo = size_of(loop.range.lo, self.ints)
                hi = size_of(loop.range.hi, self.ints)
            except NotASize as exc:
                self.fail(exc, "loop bounds are built from integers, int data and consts")
                lo = hi = ONE
            self.model.scopes[loop.id] = LoopScope(loop.id, loop.var, lo, hi)
        for v in self.model.variables.values():
            if v.decl is not None and v.role in ("data", "observed", "param"):
                self._declared_shape(v)
            elif v.role in ("const", "net"):
                v.shape = ()
        if self.errors:
            return
        for name in self._order():
            v = self.model.variables[name]
            if v.defs:
                self._defined_shape(v)
        for stmt in self.model.statements:
            if stmt.target is None or self.model.variables[stmt.target].role in (
                    "observed", "transformed_data"):
                self._statement(stmt)

    def _order(self) -> list[str]:
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

    def _defined_shape(self, v: Variable) -> None:
        """Positions come from the targets' indices, elements from the right sides; a
        variable read by its own definition (a chain) first gets a provisional shape."""
        statements = [self.model.statements[i] for i in v.defs]
        if v.role == "observed":
            return
        positions = self._positions(v, statements)
        if positions is None:
            return
        declared = statements[0].node.type if statements[0].kind == "sample" else None
        try:
            guess = type_shape(declared, self.ints) if declared is not None else ()
        except NotASize as exc:
            self.fail(exc)
            return
        for _ in range(2):
            v.shape = positions + guess
            elems: list[Shape] = []
            for stmt in statements:
                try:
                    elems.append(self._statement(stmt, provisional=True))
                except ShapeError as exc:
                    self.fail(exc)
                    v.shape = None
                    return
            if any(e != elems[0] for e in elems[1:]):
                other = next(e for e in elems if e != elems[0])
                self.fail(ShapeError(
                    f"the definitions of '{v.name}' give elements of different shapes "
                    f"{shape_text(elems[0])} and {shape_text(other)}",
                    statements[0].node.target))
                return
            if elems[0] == guess:
                return
            guess = elems[0]
        v.shape = positions + guess

    def _positions(self, v: Variable, statements: list[Statement]) -> Shape | None:
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
                    self.fail(ShapeError(
                        f"cannot tell the size of '{v.name}' from this index; "
                        "index the left side by loop variables or constants",
                        stmt.node.target.items[position]))
                    return None
                uppers.append(upper)
            best = _max_size(uppers)
            if best is None:
                self.fail(ShapeError(f"cannot tell the size of '{v.name}': its definitions "
                                     f"reach {', '.join(map(str, uppers))}",
                                     statements[0].node.target))
                return None
            dims.append(best)
        return tuple(dims)

    # ---- statements
    def _statement(self, stmt: Statement, provisional: bool = False) -> Shape:
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
            if target_type is not None:
                _check_fits(value.shape, target_type, stmt.node.value, "the value")
            return value.shape
        binding = ex.distribution(stmt.node.dist, stmt)
        self.model.bindings[stmt.id] = binding
        if target_type is not None:
            _check_fits(binding.shape, target_type, stmt.node.dist, "a draw",
                        binding.event_rank)
            return target_type
        declared = stmt.node.type
        if declared is not None:
            try:
                elem = type_shape(declared, self.ints)
            except NotASize as exc:
                raise ShapeError(str(exc), exc.node) from None
            _check_fits(binding.shape, elem, stmt.node.dist, "a draw", binding.event_rank)
            return elem
        return binding.shape

    def _target_type(self, stmt: Statement, ex: _Expr) -> Shape:
        """The element shape of the target, whose variable's shape is known."""
        v = self.model.variables[stmt.target]  # type: ignore[index]
        return ex.index(v.name, v.shape or (), stmt.node.target.items, stmt.node.target).shape


def type_shape(t: n.Type | None, ints: dict[str, Any]) -> Shape:
    """The full shape a declared type describes (simplex[K] is [K], cholesky_corr[K] KxK)."""
    if t is None:
        return ()
    dims = tuple(size_of(d, ints) for d in t.dims)
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


def _check_fits(value: Shape, target: Shape, node: Any, what: str, event_rank: int = 0) -> None:
    """`value` must broadcast to `target`; event dims must match exactly."""
    if len(value) > len(target):
        raise ShapeError(f"shape mismatch: {what} has shape {shape_text(value)} but the left "
                         f"side has shape {shape_text(target)}", node)
    for i, (a, b) in enumerate(zip(reversed(value), reversed(target), strict=False)):
        event = i < event_rank
        if a == b:
            continue
        if not event and a.constant == 1:
            continue
        if a.constant is not None and b.constant is not None or event:
            raise ShapeError(f"shape mismatch: {what} has shape {shape_text(value)} but the "
                             f"left side has shape {shape_text(target)}", node)


def broadcast(shapes: list[Shape], node: Any) -> Shape:
    """NumPy broadcasting of element shapes; only provable mismatches are errors."""
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
                raise ShapeError("shape mismatch: " + " and ".join(shape_text(s) for s in shapes)
                                 + " do not broadcast", node)
        out.append(chosen)
    return tuple(out)


class _Expr:
    """Types of expressions in one statement's loop context."""

    def __init__(self, ctx: _Context, scopes: tuple[LoopScope, ...]):
        self.ctx = ctx
        self.scopes = scopes

    def record(self, e: Any, t: ExprType) -> ExprType:
        self.ctx.model.types[id(e)] = t  # type: ignore[attr-defined]
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
            return ExprType(broadcast([a.shape, b.shape], e), True)
        if isinstance(e, n.Vector):
            items = [self.type(i) for i in e.items]
            inner = broadcast([i.shape for i in items], e)
            return ExprType((Size.const(len(items)),) + inner, all(i.integer for i in items))
        if isinstance(e, n.Index):
            return self._index(e)
        if isinstance(e, n.Generator):
            return self._generator(e)
        if isinstance(e, n.Call):
            return self._call(e)
        raise ShapeError(f"unexpected expression {format_expr(e)}", e)  # pragma: no cover

    def _name(self, e: n.Name) -> ExprType:
        if any(s.var == e.id for s in self.scopes):
            return ExprType((), True)
        v = self.ctx.model.variables[e.id]
        if v.role == "net":
            raise ShapeError(f"the net '{e.id}' must be called: {e.id}(...)", e)
        if v.shape is None:
            raise ShapeError(f"the shape of '{e.id}' is not known here", e)
        integer = v.declared_type is not None and v.declared_type.base == "int"
        if v.role == "const":
            integer = isinstance(v.value, int)
        return ExprType(v.shape, integer)

    def _binary(self, e: n.Binary) -> ExprType:
        a, b = self.type(e.left), self.type(e.right)
        if e.op != "@":
            integer = a.integer and b.integer and e.op in "+-*"
            return ExprType(broadcast([a.shape, b.shape], e), integer)
        ranks = (a.rank, b.rank)
        if ranks == (2, 1):
            _same_dim(a.shape[1], b.shape[0], e)
            return ExprType((a.shape[0],))
        if ranks == (1, 2):
            _same_dim(a.shape[0], b.shape[0], e)
            return ExprType((b.shape[1],))
        if ranks == (2, 2):
            _same_dim(a.shape[1], b.shape[0], e)
            return ExprType((a.shape[0], b.shape[1]))
        if ranks == (1, 1):
            _same_dim(a.shape[0], b.shape[0], e)
            return ExprType(())
        raise ShapeError(f"'@' needs vectors or matrices; got shapes {shape_text(a.shape)} "
                         f"and {shape_text(b.shape)}", e)

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
                             f"{len(items)}", node)
        out: list[Size] = []
        for dim, item in zip(shape, items, strict=False):
            form = classify(item, self.scopes, self.ctx.ints)
            out += self._index_item(what, dim, form, item)
        out += list(shape[len(items):])
        if integer is None:
            v = self.ctx.model.variables.get(what)
            integer = v is not None and v.declared_type is not None and \
                v.declared_type.base == "int"
        return ExprType(tuple(out), integer)

    def _index_item(self, what: str, dim: Size, form: IndexForm, item: Any) -> list[Size]:
        if form.kind == "full":
            return [dim]
        if form.kind == "slice":
            _check_static_range(what, dim, form.lo, item)  # type: ignore[arg-type]
            _check_static_range(what, dim, form.hi, item)  # type: ignore[arg-type]
            return [form.hi - form.lo + ONE]  # type: ignore[operator]
        if form.kind == "prefix":
            raise ShapeError("prefix slices (x[1..t-1]) are for causal nets, which are not "
                             "supported yet", item)
        if form.kind == "scalar":
            _check_static_range(what, dim, form.lo, item)  # type: ignore[arg-type]
            return []
        if form.kind == "loop":
            assert form.loop is not None and form.offset is not None
            _check_static_range(what, dim, form.loop.lo + form.offset, item)
            _check_static_range(what, dim, form.loop.hi + form.offset, item)
            return []
        t = self.type(item)  # gather: an integer array
        if not t.integer:
            raise ShapeError(f"an index must be an integer; '{format_expr(item)}' is real", item)
        return list(t.shape)

    def _generator(self, e: n.Generator) -> ExprType:
        if e.func.id not in GENERATOR_REDUCTIONS:
            raise ShapeError(f"'{e.func.id}' does not take a generator", e.func,)
        try:
            lo = size_of(e.range.lo, self.ctx.ints)
            hi = size_of(e.range.hi, self.ctx.ints)
        except NotASize as exc:
            raise ShapeError(str(exc), exc.node) from None
        key = -1 - len(self.ctx.model.types)  # type: ignore[attr-defined]
        inner = _Expr(self.ctx, self.scopes + (LoopScope(key, e.var.id, lo, hi),))
        body = inner.type(e.body)
        self.ctx.model.scopes[id(e)] = inner.scopes[-1]  # type: ignore[attr-defined]
        return ExprType(body.shape, body.integer and e.func.id in ("sum", "prod", "max", "min"))

    def _call(self, e: n.Call) -> ExprType:
        name = e.func.id
        if name in DISTRIBUTIONS:
            raise ShapeError(f"the distribution '{name}' can only appear on the right of '~'",
                             e.func)
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise ShapeError(f"calling the net '{name}' is not supported yet "
                             "(neural factors arrive with a later version)", e.func)
        if e.kwargs:
            raise ShapeError(f"'{name}' takes no keyword arguments", e.kwargs[0])
        if len(e.args) < spec.min_args or (spec.max_args is not None and
                                           len(e.args) > spec.max_args):
            want = str(spec.min_args) if spec.max_args == spec.min_args else \
                f"at least {spec.min_args}"
            raise ShapeError(f"'{name}' takes {want} argument"
                             f"{'' if spec.min_args == 1 else 's'}, got {len(e.args)}", e)
        args = [self.type(a) for a in e.args]
        return self._call_shape(name, spec.kind, args, e, spec.integer)

    def _call_shape(self, name: str, kind: str, args: list[ExprType], e: n.Call,
                    integer: bool) -> ExprType:
        if kind == "elementwise":
            return ExprType(broadcast([a.shape for a in args], e), integer)
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
            return ExprType(())
        if kind == "build":
            return ExprType(tuple(self._size_arg(a) for a in e.args))
        return self._special(name, args, e)

    def _size_arg(self, a: Any) -> Size:
        try:
            return size_of(a, self.ctx.ints)
        except NotASize as exc:
            raise ShapeError(str(exc), exc.node) from None

    def _special(self, name: str, args: list[ExprType], e: n.Call) -> ExprType:
        if name == "eye":
            k = self._size_arg(e.args[0])
            return ExprType((k, k))
        if name == "linspace":
            return ExprType((self._size_arg(e.args[2]),))
        if name == "one_hot":
            return ExprType(args[0].shape + (self._size_arg(e.args[1]),), True)
        if name == "length":
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
            raise ShapeError("expected a distribution after '~', such as Normal(0, 1)", e)
        spec = DISTRIBUTIONS[e.func.id]
        keywords = [k.name for k in e.kwargs]
        bound = bind(spec, len(e.args), keywords)
        if bound is None:
            raise ShapeError(binding_error(spec, len(e.args), keywords) or "bad arguments", e)
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
        shape = broadcast(batch, e) + event
        if spec.name == "LKJCholesky":
            shape = self._lkj_shape(stmt, e)
        return Binding(spec.name, form, tuple(params), args, shape, spec.event_rank)

    def _lkj_shape(self, stmt: Statement, e: Any) -> Shape:
        declared = stmt.node.type
        if declared is None or declared.base != "cholesky_corr":
            v = self.ctx.model.variables[stmt.target]  # type: ignore[index]
            if v.declared_type is None:
                raise ShapeError("LKJCholesky takes its size from the declared type: write "
                                 "'L: cholesky_corr[K] ~ LKJCholesky(eta)'", e)
        try:
            return type_shape(declared, self.ctx.ints)[-2:]
        except NotASize as exc:
            raise ShapeError(str(exc), exc.node) from None


def _same_dim(a: Size, b: Size, node: Any) -> None:
    if a != b and a.constant is not None and b.constant is not None:
        raise ShapeError(f"shape mismatch: inner dimensions {a} and {b} differ", node)


def _check_static_range(what: str, dim: Size, index: Size, node: Any) -> None:
    value = index.constant
    if value is None:
        diff = (index - dim).constant
        if diff is not None and diff > 0:
            raise ShapeError(f"index {index} is out of range for '{what}' of size {dim}", node)
        return
    if value < 1:
        raise ShapeError(f"index {value} is out of range: indices start at 1", node,
                         "bgm counts from 1, as in the maths and in Stan")
    if dim.constant is not None and value > dim.constant:
        raise ShapeError(f"index {value} is out of range for '{what}' of size {dim}", node)
