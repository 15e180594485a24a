"""Expressions to vectorised PyTorch source.

Every value has a layout: [batch...] + [one dim per vectorised loop it varies over, in
loop order] + [its element dims]. Batch dims (chains, particles, draws) are never named:
code indexes from the right with `...`. Combining two values aligns them by inserting
size-1 dims (`mu[..., None]`), so a plate never becomes a Python loop. Loops run step by
step (`sequential`) appear as Python ints instead of dims.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from compiler.indexing import IndexForm, LoopScope, classify
from compiler.ir import GraphicalModel
from compiler.passes.expr_types import ExprType
from compiler.passes.nets import FLOW_FUNCTIONS, INVERTIBLE, SEQUENCE, signature
from compiler.sizes import Size
from compiler.tables.functions import FUNCTIONS
from dsl import nodes as n
from dsl.diagnostics import Diagnostic, InternalError
from dsl.printer import format_expr


@dataclass(frozen=True)
class Value:
    code: str
    loops: tuple[int, ...]  # LoopScope keys of the loop dims present, in context order
    rank: int  # element rank
    integer: bool = False
    number: bool = False  # a Python number literal: broadcasts without reshaping
    atomic: bool = True  # can be indexed or called on without parentheses
    prec: int = 100  # Python precedence of the outermost operator (when not atomic)
    tensor: bool = False  # certainly a torch tensor (made by data__.real / data__.tensor)
    batched: bool = True  # may carry batch dims; data never does (and a scalar int data
    # value is a Python int, which cannot be indexed: it broadcasts as it is)

    @property
    def python_scalar(self) -> bool:
        """Possibly a Python number at run time (a literal or scalar data)."""
        return not self.tensor and (self.number or (not self.batched and not self.loops
                                                    and self.rank == 0))


class Unsupported(Exception):
    def __init__(self, message: str, node: Any):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, getattr(node, "span", None))


# DSL function -> (torch call template, argument conversion); `{0}` is the argument.
_ELEMENTWISE = {
    "exp": "torch.exp({0})", "log": "torch.log({0})", "log1p": "torch.log1p({0})",
    "expm1": "torch.expm1({0})", "sqrt": "torch.sqrt({0})", "square": "torch.square({0})",
    "abs": "torch.abs({0})", "sigmoid": "torch.sigmoid({0})", "inv_logit": "torch.sigmoid({0})",
    "logit": "torch.logit({0})", "softplus": "torch.nn.functional.softplus({0})",
    "tanh": "torch.tanh({0})", "sin": "torch.sin({0})", "cos": "torch.cos({0})",
    "lgamma": "torch.lgamma({0})", "digamma": "torch.digamma({0})", "erf": "torch.erf({0})",
    "Phi": "rt.Phi({0})", "log_sigmoid": "torch.nn.functional.logsigmoid({0})",
    "floor": "torch.floor({0})", "ceil": "torch.ceil({0})", "round": "torch.round({0})",
    "pow": "torch.pow({0}, {1})", "fmin": "torch.minimum({0}, {1})",
    "fmax": "torch.maximum({0}, {1})",
}
_REDUCE = {"sum": "rt.reduce_sum", "prod": "rt.reduce_prod", "mean": "rt.reduce_mean",
           "sd": "rt.reduce_sd", "variance": "rt.reduce_variance", "max": "rt.reduce_max",
           "min": "rt.reduce_min", "log_sum_exp": "rt.reduce_logsumexp",
           "norm": "rt.reduce_norm"}
_VECTOR = {"softmax": "torch.softmax({0}, -1)", "log_softmax": "torch.log_softmax({0}, -1)",
           "cumsum": "torch.cumsum({0}, -1)"}
_DATA = ("data", "observed", "transformed_data")
# Python precedence of the operators generated code writes (higher binds tighter)
_PREC = {"+": 11, "-": 11, "*": 12, "/": 12, "@": 12, "^": 14}
_UNARY_PREC = 13
_GENERATOR = {"sum": "sum", "prod": "prod", "mean": "mean", "max": "amax", "min": "amin",
              "log_sum_exp": "logsumexp"}


@dataclass
class Scope:
    """Where an expression is evaluated: its vectorised loops and its step-by-step loops."""

    loops: tuple[LoopScope, ...]  # vectorised, outer first (generators appended)
    sequential: dict[str, str] = field(default_factory=dict)  # loop var -> Python int name
    sequential_scopes: tuple[LoopScope, ...] = ()

    def with_loop(self, scope: LoopScope) -> Scope:
        return Scope(self.loops + (scope,), self.sequential, self.sequential_scopes)

    def keys(self) -> tuple[int, ...]:
        return tuple(s.key for s in self.loops)

    def all_scopes(self) -> tuple[LoopScope, ...]:
        return self.loops + self.sequential_scopes


class ExprCompiler:
    """Compiles expressions of one model. `names` maps user names to Python locals;
    `reader(name, items, scope, node)` may take over reads of step-by-step variables."""

    def __init__(self, model: GraphicalModel, names: dict[str, str], ints: dict[str, Any],
                 reader: Any = None):
        self.model = model
        self.names = names
        self.ints = ints
        # loop key -> code of the iterations a minibatch of windows keeps (causal nets)
        self.windows: dict[int, str] = {}
        self.reader = reader

    # ---- helpers
    def size(self, s: Size, scope: Scope | None = None) -> str:
        seq = scope.sequential if scope else {}

        def name(x: str) -> str:
            return seq.get(x, self.names.get(x, x))
        return s.code(name, written=True)

    def etype(self, e: Any) -> ExprType:
        t = self.model.types.get(id(e))
        if t is None:  # pragma: no cover - shapes.py types every expression
            where = getattr(e, "span", None)
            raise InternalError(f"untyped expression {type(e).__name__} at {where}")
        return t  # type: ignore[no-any-return]

    @staticmethod
    def paren(v: Value) -> str:
        return v.code if v.atomic else f"({v.code})"

    def align(self, v: Value, loops: tuple[int, ...], rank: int) -> str:
        """Code for `v` reshaped to the layout (loops, rank) by inserting size-1 dims."""
        if v.python_scalar:
            return v.code
        entries = [":" if key in v.loops else "None" for key in loops]
        entries += ["None"] * (rank - v.rank) + [":"] * v.rank
        if all(e == ":" for e in entries):
            return v.code
        return f"{self.paren(v)}[..., {', '.join(entries)}]"

    def real(self, v: Value) -> Value:
        """The value as a real tensor (int data and 0/1 comparisons are cast)."""
        if v.number:
            if not v.integer:
                return v
            try:
                return replace(v, code=repr(float(v.code)), integer=False)  # 2 -> 2.0
            except ValueError:  # an int computed at run time: `K * 2`, `v.shape[-1]`
                return replace(v, code=f"float({v.code})", integer=False, atomic=True)
        if not v.integer:
            return v
        return replace(v, code=f"data__.real({v.code})", integer=False, atomic=True,
                       tensor=True)

    def tensor(self, v: Value) -> Value:
        """A torch tensor even for a literal (torch functions need one)."""
        if not v.number:
            return v
        try:
            code = repr(float(v.code))  # a literal, normalised: 2 -> 2.0
        except ValueError:  # arithmetic of literals, such as float(0 ** 0) * 1.0
            code = v.code
        return replace(v, code=f"data__.tensor({code})", number=False, atomic=True,
                       tensor=True)

    def as_tensor(self, v: Value) -> Value:
        """A torch tensor even for a Python number computed at run time (scalar int data,
        `N + 0.5`): torch functions take only tensors."""
        v = self.tensor(v)
        if not v.python_scalar:
            return v
        code = f"data__.tensor({v.code})" if not v.integer else \
            f"torch.as_tensor({v.code}, device=data__.device)"
        return replace(v, code=code, atomic=True, tensor=True)

    # ---- expressions
    def expr(self, e: Any, scope: Scope) -> Value:
        if isinstance(e, n.Number):
            return self.literal(e.value, isinstance(e.value, int))
        if id(e) in self.model.folded:  # constant arithmetic, evaluated at check
            return self.literal(self.model.folded[id(e)], self.etype(e).integer)
        if isinstance(e, n.Name):
            return self._name(e, scope)
        if isinstance(e, n.Unary):
            v = self.expr(e.operand, scope)
            return replace(v, code=f"-{self.paren(v)}", atomic=False, prec=_UNARY_PREC)
        if isinstance(e, n.Binary):
            return self._binary(e, scope)
        if isinstance(e, n.Compare):
            a, b = self.expr(e.left, scope), self.expr(e.right, scope)
            loops = self._union(scope, a, b)
            rank = max(a.rank, b.rank)
            code = f"data__.real({self.align(a, loops, rank)} {e.op} {self.align(b, loops, rank)})"
            if a.number and b.number:
                code = f"data__.tensor(float({a.code} {e.op} {b.code}))"
            return Value(code, loops, rank, False)
        if isinstance(e, n.Vector):
            return self._vector(e, scope)
        if isinstance(e, n.Index):
            return self._index(e, scope)
        if isinstance(e, n.Generator):
            return self._generator(e, scope)
        if isinstance(e, n.Call):
            return self._call(e, scope)
        raise Unsupported(f"cannot compile '{format_expr(e)}'", e)

    @staticmethod
    def literal(value: int | float, integer: bool) -> Value:
        """A number as a Python literal: an int only when it is one and small enough for
        torch's int64, else a finite float (folding never makes inf or nan)."""
        integer = integer and isinstance(value, int) and abs(value) < 2 ** 53
        code = repr(value) if integer else repr(float(value))
        return Value(code, (), 0, integer, number=True, atomic=value >= 0,
                     prec=100 if value >= 0 else _UNARY_PREC)

    def _union(self, scope: Scope, *values: Value) -> tuple[int, ...]:
        present = {k for v in values for k in v.loops}
        return tuple(k for k in scope.keys() if k in present)

    def _name(self, e: n.Name, scope: Scope) -> Value:
        for s in scope.loops:
            if s.var == e.id:
                code = f"data__.iota({self.size(s.lo, scope)}, {self.size(s.hi, scope)})"
                return self.picked(Value(code, (s.key,), 0, True))
        if e.id in scope.sequential:
            return Value(scope.sequential[e.id], (), 0, True, number=True)
        v = self.model.variables[e.id]
        if v.role == "const":
            return self.literal(v.value, isinstance(v.value, int))
        if self.reader is not None:
            taken = self.reader(e.id, (), scope, e)
            if taken is not None:
                return taken  # type: ignore[no-any-return]
        t = self.etype(e)
        return Value(self.names[e.id], (), t.rank, t.integer, batched=v.role not in _DATA)

    def _binary(self, e: n.Binary, scope: Scope) -> Value:
        a, b = self.expr(e.left, scope), self.expr(e.right, scope)
        if e.op == "@":
            return self._matmul(a, b, scope)
        op = "**" if e.op == "^" else e.op
        if a.number and b.number:
            value = f"({self.operand(a, a.code, e.op, False)} {op} " \
                    f"{self.operand(b, b.code, e.op, True)})"
            integer = a.integer and b.integer and e.op in "+-*"
            return Value(value if integer else f"float{value}", (), 0, integer, number=True)
        if e.op in ("/", "^"):
            a, b = self.real(a), self.real(b)
        loops = self._union(scope, a, b)
        rank = max(a.rank, b.rank)
        left = self.operand(a, self.align(a, loops, rank), e.op, False)
        right = self.operand(b, self.align(b, loops, rank), e.op, True)
        if e.op == "^" and a.number:
            left = f"data__.tensor({a.code})"
        # data and literals alone (`0.5 * N`) stay unbatched: a Python number at run time
        batched = any(x.batched and not x.number for x in (a, b))
        return Value(f"{left} {op} {right}", loops, rank, a.integer and b.integer and
                     e.op in "+-*", atomic=False, prec=_PREC[e.op], batched=batched,
                     tensor=a.tensor or b.tensor)

    @staticmethod
    def operand(v: Value, code: str, op: str, right: bool) -> str:
        """`code` (v, possibly reshaped) as an operand of `op`, parenthesised where Python's
        precedence would otherwise regroup it. Equal precedence keeps the source's
        grouping: `a - (b - c)`, `(a ^ b) ^ c` (`^` groups to the right)."""
        if code != v.code or v.atomic:
            return code  # reshaping wrapped it already: `(a + b)[..., None]`
        prec = _PREC[op]
        if v.prec < prec or (v.prec == prec and right != (op == "^")):
            return f"({code})"
        return code

    def _matmul(self, a: Value, b: Value, scope: Scope) -> Value:
        a, b = self.real(a), self.real(b)
        loops = self._union(scope, a, b)
        x = replace(a, code=self.align(a, loops, a.rank))
        y = replace(b, code=self.align(b, loops, b.rank))
        x = replace(x, atomic=x.atomic or x.code != a.code)
        y = replace(y, atomic=y.atomic or y.code != b.code)
        ranks = (a.rank, b.rank)
        if ranks == (2, 2):
            return Value(f"{self.operand(x, x.code, '@', False)} @ "
                         f"{self.operand(y, y.code, '@', True)}", loops, 2, atomic=False,
                         prec=_PREC["@"])
        if ranks == (2, 1) and not a.batched and not a.loops:
            # data matrix times a batched vector: one GEMM, v @ A^T, instead of a batched
            # matmul that copies A once per chain
            return Value(f"{self.operand(y, y.code, '@', False)} @ {self.paren(x)}.mT",
                         loops, 1, atomic=False, prec=_PREC["@"])
        if ranks == (2, 1):
            return Value(f"({self.operand(x, x.code, '@', False)} @ "
                         f"{self.paren(y)}[..., None])[..., 0]", loops, 1)
        if ranks == (1, 2):
            return Value(f"({self.paren(x)}[..., None, :] @ "
                         f"{self.operand(y, y.code, '@', True)})[..., 0, :]", loops, 1)
        return Value(f"({self.operand(x, x.code, '*', False)} * "
                     f"{self.operand(y, y.code, '*', True)}).sum(-1)", loops, 0)

    def _vector(self, e: n.Vector, scope: Scope) -> Value:
        items = [self.real(self.expr(i, scope)) for i in e.items]
        loops = self._union(scope, *items)
        rank = max(i.rank for i in items)
        if not loops and rank == 0 and all(i.number for i in items):
            return Value(f"data__.tensor([{', '.join(i.code for i in items)}])", (), 1)
        parts = ", ".join(self.align(i, loops, rank) if not i.number else i.code
                          for i in items)
        return Value(f"rt.stack_last([{parts}], {rank})", loops, rank + 1)

    # ---- indexing
    def _index(self, e: n.Index, scope: Scope) -> Value:
        base, items = e.base, list(e.items)
        while isinstance(base, n.Index):
            items = list(base.items) + items
            base = base.base
        if not isinstance(base, n.Name) or base.id not in self.model.variables or \
                any(s.var == base.id for s in scope.loops):
            raise Unsupported("only variables can be indexed", e)
        return self.read(base.id, tuple(items), scope, e)

    def read(self, name: str, items: tuple[Any, ...], scope: Scope, node: Any) -> Value:
        """The value of `name[items]` in `scope`."""
        v = self.model.variables[name]
        if v.role == "const":
            raise Unsupported("constants cannot be indexed", node)
        if self.reader is not None:
            taken = self.reader(name, items, scope, node)
            if taken is not None:
                return taken  # type: ignore[no-any-return]
        rank = len(v.shape or ())
        if id(node) in self.model.types:
            integer = self.etype(node).integer
        else:  # the left side of a `~` is not typed by shapes.py: use the declaration
            integer = v.discrete or (v.declared_type is not None and
                                     v.declared_type.base == "int")
        base = Value(self.names[name], (), rank, integer, batched=v.role not in _DATA)
        return self.picked(self.index_value(base, items, scope, node, v.shape or ()))

    def picked(self, v: Value) -> Value:
        """`v` at the iterations of a loop that a minibatch of windows keeps (a causal
        net's loop, the only loop of its statement: its dim is just before the element)."""
        keys = [k for k in v.loops if k in self.windows]
        if not keys or v.python_scalar:
            return v
        after = len(v.loops) - 1 - v.loops.index(keys[0])
        code = f"rt.pick({v.code}, {self.windows[keys[0]]}, {v.rank + after})"
        return replace(v, code=code, atomic=True, number=False)

    def index_value(self, base: Value, items: tuple[Any, ...], scope: Scope, node: Any,
                    shape: tuple[Size, ...]) -> Value:
        forms = [classify(i, scope.all_scopes(), self.ints) for i in items]
        for f in forms:
            if f.kind == "prefix":
                raise Unsupported("prefix slices are not supported yet", f.node)
            if f.loop is not None and f.loop.var in scope.sequential:
                forms[forms.index(f)] = IndexForm("scalar", f.node, lo=Size.name(f.loop.var)
                                                  + (f.offset or Size.const(0)))
        if not items:
            return base
        fast = self._basic_index(base, forms, scope, shape)
        if fast is not None:
            return fast
        return self._gather_index(base, forms, scope)

    def _loop_slice(self, f: IndexForm, dim: Size, scope: Scope) -> str:
        assert f.loop is not None and f.offset is not None
        start = f.loop.lo + f.offset - Size.const(1)
        stop = f.loop.hi + f.offset
        if start.constant == 0 and stop == dim:
            return ":"
        s = "" if start.constant == 0 else self.size(start, scope)
        t = "" if stop == dim else self.size(stop, scope)
        return f"{s}:{t}"

    def _basic_index(self, base: Value, forms: list[IndexForm], scope: Scope,
                     shape: tuple[Size, ...]) -> Value | None:
        """Plain slicing when loop indices come first and in loop order."""
        if any(f.kind == "gather" for f in forms):
            return None
        keys = scope.keys()
        order = [keys.index(f.loop.key) for f in forms if f.kind == "loop"
                 and f.loop is not None]
        if order != sorted(order) or len(set(order)) != len(order):
            return None
        seen_kept = False
        for f in forms:
            if f.kind == "loop" and seen_kept:
                return None
            seen_kept = seen_kept or f.kind in ("slice", "full")
        entries: list[str] = []
        rank = 0
        loops: list[int] = []
        for f, dim in zip(forms, shape, strict=False):
            if f.kind == "loop":
                entries.append(self._loop_slice(f, dim, scope))
                loops.append(f.loop.key)  # type: ignore[union-attr]
            elif f.kind == "scalar":
                entries.append(self._zero_based(f.lo, scope))  # type: ignore[arg-type]
            elif f.kind == "slice":
                lo = f.lo - Size.const(1)  # type: ignore[operator]
                entries.append(f"{self.size(lo, scope) if lo.constant != 0 else ''}:"
                               f"{self.size(f.hi, scope) if f.hi != dim else ''}")  # type: ignore[arg-type]
                rank += 1
            else:
                entries.append(":")
                rank += 1
        entries += [":"] * (base.rank - len(forms))
        rank += base.rank - len(forms)
        if base.loops:
            return None
        code = base.code if all(x == ":" for x in entries) else \
            f"{self.paren(base)}[..., {', '.join(entries)}]"
        return Value(code, tuple(loops), rank, base.integer, batched=base.batched)

    def _zero_based(self, s: Size, scope: Scope) -> str:
        return self.size(s - Size.const(1), scope)

    def _gather_index(self, base: Value, forms: list[IndexForm], scope: Scope) -> Value:
        """Advanced indexing with integer tensors laid out over the loops."""
        if base.loops:
            raise Unsupported("indexing this expression is not supported", forms[0].node)
        parts: list[str] = []
        loops: tuple[int, ...] = ()
        gathered: list[Value] = []
        for f in forms:
            if f.kind in ("loop", "gather"):
                v = self.expr(f.node, scope)
                gathered.append(v)
        indices = list(gathered)
        loops = self._union(scope, *gathered)
        extra = max((g.rank for g in gathered), default=0)
        kept = 0
        for f in forms:
            if f.kind in ("loop", "gather"):
                v = gathered.pop(0)
                parts.append(f"rt.index({self.align(v, loops, extra) if not v.number else v.code})")
            elif f.kind == "scalar":
                parts.append(self._zero_based(f.lo, scope))  # type: ignore[arg-type]
            elif f.kind == "slice":
                lo = f.lo - Size.const(1)  # type: ignore[operator]
                parts.append(f"slice({self.size(lo, scope)}, {self.size(f.hi, scope)})")  # type: ignore[arg-type]
                kept += 1
            else:
                parts.append("slice(None)")
                kept += 1
        rest = base.rank - len(forms)
        # an index with batch dims of its own (a discrete latent) broadcasts against the base
        take = "rt.take_batched" if any(g.batched for g in indices) else "rt.take"
        code = (f"{take}({base.code}, rank={base.rank}, items=({', '.join(parts)},), "
                f"gathered={len(loops) + extra})")
        return Value(code, loops, extra + kept + rest, base.integer)

    # ---- calls
    def _generator(self, e: n.Generator, scope: Scope) -> Value:
        gscope = self.model.scopes[id(e)]
        if gscope.key in scope.keys():
            # a generator directly inside another can share its key: give it one of its own
            gscope = replace(gscope, key=-(10 ** 9) - len(scope.loops))
        inner = scope.with_loop(gscope)
        body = self.expr(e.body, inner)
        func = e.func.id
        if func in ("mean", "log_sum_exp"):
            body = self.real(body)
        if gscope.key not in body.loops:  # the body does not depend on the variable
            return self._constant_generator(func, body, self.size(gscope.length, scope))
        loops = tuple(k for k in inner.keys() if k in body.loops or k == gscope.key)
        code = self.align(body, loops, body.rank)
        dim = -1 - body.rank - (len(loops) - 1 - loops.index(gscope.key))
        method = _GENERATOR[func]
        out_loops = tuple(k for k in loops if k != gscope.key)
        body_code = code if code != body.code or body.atomic else f"({code})"
        return Value(f"{body_code}.{method}({dim})", out_loops, body.rank,
                     body.integer and func in ("sum", "prod", "max", "min"))

    def _constant_generator(self, func: str, body: Value, count: str) -> Value:
        """A reduction of `count` copies of `body`: sum c * n, prod c ^ n,
        log_sum_exp c + log(n), and mean, max and min c itself."""
        if func in ("mean", "max", "min"):
            return body
        if func == "sum":
            return replace(body, code=f"{count} * {self.operand(body, body.code, '*', True)}",
                           atomic=False, prec=_PREC["*"])
        if func == "prod":
            if body.python_scalar and not body.integer:  # a float overflows to inf, not
                body = self.tensor(self.as_tensor(body))  # an OverflowError
            return replace(body, code=f"{self.operand(body, body.code, '^', False)} ** {count}",
                           atomic=False, prec=_PREC["^"])
        body = self.as_tensor(body)  # log_sum_exp (body is real)
        return replace(body, code=f"{self.operand(body, body.code, '+', False)} + "
                                  f"torch.log(data__.tensor({count}))", atomic=False,
                       prec=_PREC["+"])

    def _call(self, e: n.Call, scope: Scope) -> Value:
        name = e.func.id
        v = self.model.variables.get(name)
        if v is not None and v.role == "net":
            return self._net_call(v, e, scope)
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise Unsupported(f"calling '{name}' is not supported yet", e)
        args = [self.expr(a, scope) for a in e.args]
        t = self.etype(e)
        if spec.kind == "elementwise":
            reals = [self.as_tensor(self.real(a)) for a in args]
            loops = self._union(scope, *reals)
            rank = max(a.rank for a in reals)
            code = _ELEMENTWISE[name].format(*(self.align(a, loops, rank) for a in reals))
            return Value(code, loops, rank, t.integer)
        if spec.kind == "reduce":
            a = self.as_tensor(self.real(args[0]) if name != "sum" else args[0])
            return Value(f"{_REDUCE[name]}({a.code}, {a.rank})", a.loops, 0, t.integer)
        if spec.kind == "vector":
            a = self.real(args[0])
            return Value(_VECTOR[name].format(a.code), a.loops, a.rank, t.integer)
        if spec.kind == "dot":
            a, b = self.real(args[0]), self.real(args[1])
            loops = self._union(scope, a, b)
            for rows, v in ((a, b), (b, a)):
                if not rows.batched and len(rows.loops) == 1 and rows.rank == 1 and \
                        not v.loops and v.rank == 1:
                    # a data row per plate element against one (batched) vector: one
                    # GEMM, v @ X^T, not a chains x N x D product and its sum
                    matrix = self.paren(replace(rows, code=self.align(rows, loops, 1)))
                    return Value(f"{self.operand(v, v.code, '@', False)} @ {matrix}.mT",
                                 loops, 0, atomic=False, prec=_PREC["@"])
            left = self.operand(a, self.align(a, loops, 1), "*", False)
            right = self.operand(b, self.align(b, loops, 1), "*", True)
            return Value(f"({left} * {right}).sum(-1)", loops, 0)
        if spec.kind == "build":
            dims = ", ".join(self.size(d, scope) for d in t.shape)
            return Value(f"data__.{name}(({dims},))", (), t.rank)
        return self._special(name, args, t, e, scope)

    def _net_call(self, v: Any, e: n.Call, scope: Scope) -> Value:
        """`f(x)`: the net applied to x's last dimension, batched over everything before
        it (chains, loops) with one matrix product per layer."""
        sig = signature(self.model, v, self.ints)
        if sig.sequence:
            return self._causal_call(v, sig, e.args[0], scope)
        x = self.tensor(self.real(self.expr(e.args[0], scope)))
        if sig.invertible:  # a flow pushed forward (sampling x = f(u))
            middle = len(x.loops) + x.rank - 1
            return Value(f"rt.{FLOW_FUNCTIONS[sig.kind]}({self.names[v.name]}, "
                         f"{self.flow_shape(sig, scope)}, {x.code}, {middle})", x.loops, x.rank)
        sizes = ", ".join(self.size(s, scope) for s in sig.sizes)
        middle = len(x.loops) + x.rank - 1
        code = (f"rt.mlp({self.names[v.name]}, ({sizes},), {sig.activation!r}, {x.code}, "
                f"{middle})")
        return Value(code, x.loops, x.rank)

    def flow_shape(self, sig: Any, scope: Scope | None = None) -> str:
        """The sizes of an invertible net in the order of its keywords, as runtime/flows.py
        takes them: `(dim, layers, hidden)` of a RealNVP."""
        return "(" + ", ".join(self.size(sig.option(k), scope)
                               for k in INVERTIBLE[sig.kind]) + ")"

    def seqnet_spec(self, sig: Any, scope: Scope | None = None) -> str:
        """`rt.seqnet(...)`: a causal net's kind and sizes, as runtime/seqnets.py takes them."""
        sizes = [self.size(sig.option(k), scope) if k in SEQUENCE[sig.kind] else "1"
                 for k in ("vocab", "dim", "layers", "heads", "context")]
        return f"rt.seqnet({sig.kind.lower()!r}, {', '.join(sizes)})"

    def _causal_call(self, v: Any, sig: Any, arg: n.Index, scope: Scope) -> Value:
        """`f(x[a..t - c])`: the logits after each prefix. Step by step (sampling), one
        incremental call that feeds the net the newest token; vectorised (the log density),
        one call of the net over the windows of the whole sequence (teacher forcing)."""
        name = arg.base.id  # type: ignore[attr-defined]
        f = classify(arg.items[-1], scope.all_scopes(), self.ints)
        assert f.loop is not None and f.offset is not None and f.lo is not None
        docs = tuple(classify(i, scope.all_scopes(), self.ints).loop.key  # type: ignore[union-attr]
                     for i in arg.items[:-1])  # several documents: one per iteration
        if f.loop.var in scope.sequential:
            hi = self.size(Size.name(f.loop.var) + f.offset, scope)
            return Value(f"{self.names[v.name]}__inc.logits({self.names[name]}__steps, "
                         f"{self.size(f.lo, scope)}, {hi})", docs, 1)
        start = self._zero_based(f.lo, scope)
        stop = self.size(f.loop.hi + f.offset, scope)
        first = self.size(f.loop.lo + f.offset - f.lo + Size.const(1), scope)
        count = self.size(f.loop.length, scope)
        select = self.windows.get(f.loop.key, "None")
        rows = "..., " if docs else ""
        code = (f"rt.causal({self.names[v.name]}, {self.seqnet_spec(sig, scope)}, "
                f"{self.names[name]}[{rows}{start}:{stop}], {first}, {count}, {select})")
        return Value(code, docs + (f.loop.key,), 1)

    def _special(self, name: str, args: list[Value], t: ExprType, e: n.Call,
                 scope: Scope) -> Value:
        if name == "eye":
            return Value(f"data__.eye({self.size(t.shape[0], scope)})", (), 2)
        if name == "linspace":
            a, b = args[0], args[1]
            if a.loops or b.loops or a.rank or b.rank:
                raise Unsupported("linspace takes scalar bounds", e)
            return Value(f"data__.linspace({a.code}, {b.code}, "
                         f"{self.size(t.shape[0], scope)})", (), 1)
        if name == "one_hot":
            k = args[0]
            return Value(f"rt.one_hot({k.code}, {self.size(t.shape[-1], scope)})", k.loops,
                         k.rank + 1, True)
        if name == "length":
            return Value(f"{self.paren(args[0])}.shape[-1]", (), 0, True, number=True)
        a = self.real(args[0])
        if name == "diag":
            return Value(f"torch.diag_embed({a.code})", a.loops, 2)
        if name == "transpose":
            return Value(f"{self.paren(a)}.transpose(-1, -2)", a.loops, 2)
        return Value(f"rt.cholesky({a.code})", a.loops, 2)  # NaN where not pos. def.
