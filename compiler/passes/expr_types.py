"""The types of expressions: the element shape and integer-ness of every expression in a
statement's loop context (names, arithmetic, indexing, generators, function and net
calls), recorded on `model.types`; and `ExprType` and `Binding`, the types later passes
read.

Separate from the driver (compiler/passes/shapes.py), which decides which statements to type
and when, because typing one expression needs only the shared context and the rules of
compiler/passes/shape_rules.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compiler.indexing import IndexForm, LoopScope, classify, index_text
from compiler.ir import Variable
from compiler.passes.nets import signature
from compiler.passes.ranges import ExprValueRule, IndexRule, SizeMatch, ValueRule, record
from compiler.passes.shape_rules import (
    ONE,
    Shape,
    ShapeError,
    UnknownShape,
    broadcast,
    check_range,
    operand_phrase,
    shape_phrase,
    size_error,
)
from compiler.sizes import NotASize, Size, size_of
from compiler.tables.distributions import Param
from compiler.tables.functions import FUNCTIONS, GENERATOR_REDUCTIONS
from compiler.walk import calls, free_names
from dsl import nodes as n
from dsl.diagnostics import InternalError, Problem
from dsl.printer import format_expr, format_range

if TYPE_CHECKING:
    from compiler.passes.shapes import ShapeContext


@dataclass(frozen=True)
class ExprType:
    """The type of an expression: the shape of one element (in its statement's loop
    context) and whether its values are integers."""

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


class ExprTyper:
    """Types of expressions in one statement's loop context."""

    def __init__(self, ctx: ShapeContext, scopes: tuple[LoopScope, ...]):
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
            raise UnknownShape(e)
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
                raise ShapeError(f"shape mismatch in '@': {operand_phrase(e.left, a.shape)} and "
                                 f"{operand_phrase(e.right, b.shape)}, so the inner dimensions "
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
                             f"{len(items)}", node, f"'{what}' {shape_phrase(shape)}")
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
            return size_error(exc, self.ctx.model)
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
            raise size_error(exc, self.ctx.model) from None
        check_range(lo, hi, e.range, self.ctx.model.range_rules)
        self.ctx.generator_keys -= 1  # one key per generator, nested ones included
        key = self.ctx.generator_keys
        inner = ExprTyper(self.ctx, self.scopes + (LoopScope(key, e.var.id, lo, hi),))
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
        with values 1..vocab, in a loop over t; or of one document of many, `x[d, a..t-c]`
        inside `for d` (each index before the prefix the variable of a loop around, in
        order, over all of its dim)."""
        hint = f"write {v.name}(x[1..t - 1]) inside 'for t in ...:', x a vector of int data"
        if not isinstance(arg, n.Index) or not arg.items:
            raise ShapeError(f"the causal net '{v.name}' reads a prefix of a sequence", arg,
                             hint)
        form = classify(arg.items[-1], self.scopes, self.ctx.ints)
        ends_before = form.offset is not None and form.offset.constant is not None and \
            form.offset.constant <= -1
        if form.kind != "prefix" or form.loop is None or not ends_before or \
                form.loop.key != self.scopes[-1].key:
            raise ShapeError(f"the causal net '{v.name}' reads a prefix such as "
                             f"{format_expr(arg.base)}[1..t - 1] that ends before the "
                             "innermost loop's iteration", arg.items[-1], hint)
        target = self.ctx.model.variables.get(format_expr(arg.base))
        if target is None or target.role not in ("data", "observed") or not _integer(target) \
                or len(target.shape or ()) != len(arg.items):
            raise ShapeError(f"the causal net '{v.name}' reads tokens: a vector of int data "
                             f"with values 1..{sig.option('vocab')}, or one row of a matrix "
                             "of documents", arg.base, hint)
        self._document_items(v, arg, target)
        _check_static_range(target.name, target.shape[-1], form.lo, arg.items[-1])
        first = form.loop.lo + form.offset - form.lo + ONE  # the first prefix's length
        if first.constant is not None and first.constant < 0:
            raise ShapeError(f"the first prefix ({target.name}[{form.lo}..{form.loop.lo} + "
                             f"{form.offset}]) would end before it starts", arg.items[-1])

    def _document_items(self, v: Variable, arg: Any, target: Variable) -> None:
        """The indices before a prefix pick the document: the loops around the one over t,
        each by its own variable over all of its dim, outer first."""
        docs = arg.items[:-1]
        if len(self.scopes) != len(docs) + 1:
            raise ShapeError("a causal net reads one document per iteration of the loops "
                             "around its loop over t", arg,
                             f"write {v.name}(x[d, 1..t - 1]) inside 'for d in 1..D:' and "
                             "'for t in ...:'")
        for k, item in enumerate(docs):
            f = classify(item, self.scopes, self.ctx.ints)
            scope = self.scopes[k]
            if f.kind != "loop" or f.loop is None or f.loop.key != scope.key or \
                    f.offset is None or f.offset.constant != 0 or scope.lo.constant != 1 \
                    or scope.hi != target.shape[k]:  # type: ignore[index]
                raise ShapeError(f"the document a causal net reads must be picked by the "
                                 f"variable of a loop over all of '{target.name}''s dim "
                                 f"{k + 1} ({scope.var} in 1..{target.shape[k]})", item)  # type: ignore[index]

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
            raise size_error(exc, self.ctx.model) from None

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
    `rules` (compiler/passes/ranges.py) and checked when the data is loaded."""
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
    """Record a range rule that only the data decides (compiler/passes/ranges.py)."""
    if rules is not None and getattr(node, "span", None) is not None:
        text = f"the index '{index_text(node)}' of '{what}'" + (f" at {where}" if where else "")
        record(rules, IndexRule(index, dim, guards, node.span, text))
