"""The typing of a distribution call after `~`: binding its arguments to one
parameterisation (rule 18), the shape of one draw, and the checks particular to
DiscreteUniform, LKJCholesky and Diffusion.

Separate from the expression typer (compiler/passes/expr_types.py) because a distribution is
not an expression: it appears only on the right of `~`, and yields a Binding rather
than an ExprType.
"""
from __future__ import annotations

from typing import Any

from compiler.ir import Statement
from compiler.passes.diffusion import diffusion_call
from compiler.passes.expr_types import Binding, ExprTyper
from compiler.passes.ranges import IndexRule, record
from compiler.passes.shape_rules import ONE, Shape, ShapeError, broadcast, size_error, type_shape
from compiler.sizes import NotASize, shape_text, size_of
from compiler.tables.distributions import DISTRIBUTIONS, bind, binding_problem
from dsl import nodes as n
from dsl.diagnostics import InternalError, Problem
from dsl.printer import format_expr


def bind_distribution(ex: ExprTyper, e: Any, stmt: Statement) -> Binding:
    """The parameterisation `e`, the distribution of `stmt`, binds, and one draw's shape;
    its arguments are typed by `ex`, in the statement's loop context."""
    if not isinstance(e, n.Call) or e.func.id not in DISTRIBUTIONS:
        raise ShapeError("expected a distribution after '~', such as Normal(0, 1)", e,
                         "'~' draws from a distribution; to give a fixed value, use '='")
    if e.func.id == "Diffusion":
        return _diffusion(ex, e, stmt)
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
        t = ex.type(arg)
        if t.rank < param.rank:
            need = "a vector" if param.rank == 1 else "a matrix"
            raise ShapeError(f"{spec.name}'s parameter {param.name} must be {need}; "
                             f"'{format_expr(arg)}' has shape {shape_text(t.shape)}", arg)
        batch.append(t.shape[:t.rank - param.rank])
        if spec.event_from == param.name:
            event = t.shape[t.rank - param.rank:]
    shape = broadcast(batch, e, list(args)) + event
    if spec.name == "DiscreteUniform":
        _uniform_order(ex, e, args)
    if spec.name == "LKJCholesky":
        for arg, b in zip(args, batch, strict=True):
            if b:  # one correlation matrix per draw: eta is one number
                raise ShapeError(f"LKJCholesky's parameter eta must be a number; "
                                 f"'{format_expr(arg)}' has shape {shape_text(b)}", arg,
                                 "LKJCholesky(eta) draws one cholesky_corr[K] from one "
                                 "concentration eta > 0")
        shape = _lkj_shape(ex, stmt, e)
    return Binding(spec.name, form, tuple(params), args, shape, spec.event_rank)


def _uniform_order(ex: ExprTyper, e: n.Call, args: tuple[Any, ...]) -> None:
    """DiscreteUniform(lower, upper) needs lower <= upper: decided here when the
    difference is a constant, else checked when the data is loaded."""
    try:
        lo, hi = (size_of(a, ex.ctx.ints) for a in args)
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
    record(ex.ctx.model.range_rules, IndexRule(
        count, None, tuple((s.lo, s.hi) for s in ex.scopes), e.span, text))


def _diffusion(ex: ExprTyper, e: n.Call, stmt: Statement) -> Binding:
    """Diffusion(eps, steps=, schedule=): checked by compiler/passes/diffusion.py, recorded on
    model.diffusions; an event of the net's output width, no value arguments."""
    try:
        call, width = diffusion_call(ex.ctx.model, e, stmt, ex.ctx.ints)
    except Problem as exc:
        raise ShapeError(exc.diagnostic.message, exc.diagnostic, exc.diagnostic.hint) \
            from None
    ex.ctx.model.diffusions[stmt.id] = call
    return Binding("Diffusion", 0, (), (), (width,), 1)


def _lkj_shape(ex: ExprTyper, stmt: Statement, e: Any) -> Shape:
    """LKJCholesky(eta) takes K from the declared type (rule 18)."""
    v = ex.ctx.model.variables[stmt.target]  # type: ignore[index]
    declared = stmt.node.type or v.declared_type
    if declared is None or declared.base != "cholesky_corr":
        name = format_expr(stmt.node.target.name)
        raise ShapeError("LKJCholesky takes its size from the declared type", e.func,
                         f"declare it: {name}: cholesky_corr[K] ~ LKJCholesky(eta)")
    try:
        return type_shape(declared, ex.ctx.ints)[-2:]
    except NotASize as exc:
        raise size_error(exc, ex.ctx.model) from None


def _binding_error(call: n.Call, name: str, n_args: int, keywords: list[str]) -> ShapeError:
    """Point at the argument at fault (an unknown or repeated keyword, the first extra
    argument), else at the distribution's name."""
    problem = binding_problem(DISTRIBUTIONS[name], n_args, keywords)
    if problem is None:
        raise InternalError(f"{name} binds these arguments but bind() said it does not")
    items = list(call.args) + list(call.kwargs)
    at = items[problem.argument] if problem.argument is not None else call.func
    return ShapeError(problem.message, at, problem.hint)
