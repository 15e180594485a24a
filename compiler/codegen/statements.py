"""The body of a generated function, unit by unit of the plan (plan.py), each commented
with its .bgm line: a `factor` adds to the accumulator, an `=` computes and stores its
value, a `~` adds its log density (mode "logp") or draws its value (mode "sample"), and a
loop that must run step by step becomes a Python for loop around its statements.
Separate because the log density, the samplers and transformed data are all written
from these same statements."""
from __future__ import annotations

from compiler.codegen.constraints import write_constrain
from compiler.codegen.context import ModuleContext
from compiler.codegen.distribution_calls import distribution_code, truncation_code
from compiler.codegen.enumeration import (
    check_plate_dims,
    enumerated_term,
    enumeration_group_of,
)
from compiler.codegen.exprs import ExprCompiler, Scope, Unsupported, Value
from compiler.codegen.flows import flow_data_scored
from compiler.codegen.nets import causal_net_calls, causal_prefixes, net_signature
from compiler.codegen.plan import Unit
from compiler.codegen.ragged import masked_code, ragged_mask
from compiler.codegen.storage import (
    draw_shape,
    stacking_after_step_loop,
    step_reader,
    store_value,
)
from compiler.indexing import classify
from compiler.ir import Statement
from compiler.sizes import Size
from dsl.printer import format_expr, format_simple

_VALUE_AS_INDEX = ("Categorical", "DiscreteUniform")


def write_unit(ctx: ModuleContext, u: Unit, mode: str) -> None:
    if u.kind == "constrain":
        write_constrain(ctx, u.latent)  # type: ignore[arg-type]
    elif u.kind == "sequential":
        _write_step_by_step_loop(ctx, u, mode)
    else:
        _write_statement(ctx, u.statement, mode, ctx.scope(u.statement))  # type: ignore[arg-type]


def _write_statement(ctx: ModuleContext, stmt: Statement, mode: str, scope: Scope) -> None:
    o = ctx.out
    o.comment(f"{ctx.where(stmt.span)}  {_source_line(stmt)}")
    reader = step_reader(ctx)
    ex = ctx.exprs(reader)
    prefixes = causal_prefixes(ctx, stmt, scope) if mode == "logp" else None
    if prefixes is not None:  # the iterations a minibatch of windows keeps
        o.line(f"sel__ = acc__.select({prefixes[1]})")
        ex.windows = {prefixes[0]: "sel__"}
    if stmt.kind == "factor":
        value = ex.real(ex.expr(stmt.node.expr, scope))
        missing = [s for s in scope.loops if s.key not in value.loops]
        count = " * ".join(ex.size(s.length, scope) for s in missing)
        code = ex.tensor(value).code if not count else f"{count} * {ex.paren(value)}"
        if mode == "logp" and ragged_mask(ctx, stmt, scope, value.rank) is not None:
            # ragged: every iteration's term is laid out, and those past the end masked
            count = " * ".join(ex.size(s.length, scope) for s in missing
                               if s.key not in ctx.model.ragged_loops)
            aligned = ex.align(value, scope.keys(), value.rank)
            code = aligned if not count else f"{count} * {aligned}"
            code = masked_code(ctx, stmt, scope, code, value.rank)
            value = Value(code, scope.keys(), value.rank)
        if mode == "logp":
            group = enumeration_group_of(ctx.model, stmt)
            if group is not None:
                check_plate_dims(value, scope, group, stmt)
                o.line(enumerated_term(group, stmt, code, len(value.loops) + value.rank))
            else:
                o.line(f"acc__.factor({code}, ndims={len(value.loops) + value.rank})")
        return
    if stmt.kind == "assign":
        if mode == "logp" and flow_data_scored(ctx.model, stmt):  # the data itself: nothing to do
            return
        value = ex.expr(stmt.node.value, scope)
        store_value(ctx, stmt, value, scope, ex)
        return
    _write_sample(ctx, stmt, mode, scope, ex)


def _source_line(stmt: Statement) -> str:
    text = format_simple(stmt.node)
    loops = "".join(f"for {lp.var} in {format_expr(lp.range.lo)}..{format_expr(lp.range.hi)}: "
                    for lp in stmt.loops)
    line = loops + text
    return line if len(line) <= 120 else line[:117] + "..."


def _write_sample(ctx: ModuleContext, stmt: Statement, mode: str, scope: Scope,
                  ex: ExprCompiler) -> None:
    o = ctx.out
    target = ctx.model.variables[stmt.target]  # type: ignore[index]
    binding = ctx.model.bindings[stmt.id]
    elem = _target_element_rank(ctx, stmt)
    dist_code, _ = distribution_code(ctx, stmt, scope, ex, elem)
    if mode == "logp":
        value = ex.read(stmt.target, stmt.node.target.items, scope, stmt.node.target)  # type: ignore[arg-type]
        if binding.name not in _VALUE_AS_INDEX:
            value = ex.real(value)
        code = ex.align(value, scope.keys(), value.rank)
        ndims = len(scope.loops) + value.rank - binding.event_rank
        log_prob = masked_code(ctx, stmt, scope, f"{dist_code}.log_prob({code})",
                               value.rank - binding.event_rank)
        group = enumeration_group_of(ctx.model, stmt)
        if group is not None:  # a term of the sum over a discrete latent's values
            o.line(enumerated_term(group, stmt, log_prob, ndims))
            return
        kind = "prior" if target.role == "latent" else "likelihood"
        if stmt.id in ctx.model.diffusions:
            o.comment("not a density: minus the noise-prediction loss at a random step "
                      "t and noise (a Monte Carlo objective, for --method svi)")
        term = flow_data_scored(ctx.model, stmt)
        if term is not None:  # the base density at f^-1(x): the likelihood of x
            kind = "likelihood"
        o.line(f"acc__.{kind}({term or stmt.target!r}, {log_prob}, ndims={ndims})")
        return
    shape = draw_shape(ctx, stmt, scope, ex)
    if ctx.drawing_guide:
        s = ctx.model.supports[target.name]
        if truncation_code(ctx, s, stmt, scope, ex):
            raise Unsupported(f"the guide's distribution for '{target.name}' must have "
                              "the latent's support by itself: a guide cannot truncate "
                              "(use, say, LogNormal for a positive latent)", stmt.node)
        draw = (f"rt.rdraw({dist_code}, shape__ + {shape}, {ctx.where(stmt.span)!r}, "
                f"acc__, {target.name!r})")
    elif target.role == "latent":
        s = ctx.model.supports[target.name]
        draw = f"rt.draw({dist_code}, shape__ + {shape}, {ctx.where(stmt.span)!r}" + \
            truncation_code(ctx, s, stmt, scope, ex) + ")"
    elif causal_net_calls(ctx, stmt) and scope.sequential:  # decoding: --temperature, --prompt ...
        step = ctx.storage.step_dim.get(stmt.target, 0)  # type: ignore[arg-type]
        f = classify(stmt.node.target.items[step], scope.all_scopes(), ctx.ints)  # type: ignore[union-attr]
        index = ctx.exprs().size(Size.name(f.loop.var) + f.offset, scope)  # type: ignore[union-attr, operator]
        draw = (f"rt.draw_token({dist_code}, shape__ + {shape}, {ctx.where(stmt.span)!r}, "
                f"{stmt.target!r}, {index})")
    else:
        draw = f"rt.draw({dist_code}, shape__ + {shape}, {ctx.where(stmt.span)!r})"
    store_value(ctx, stmt, Value(draw, scope.keys(), elem, False, atomic=True), scope, ex)


def _target_element_rank(ctx: ModuleContext, stmt: Statement) -> int:
    """The dims of the left side each loop iteration holds: slices, `:` and the trailing
    dims it leaves unindexed."""
    v = ctx.model.variables[stmt.target]  # type: ignore[index]
    forms = [classify(i, ctx.scope(stmt).all_scopes(), ctx.ints)
             for i in stmt.node.target.items]
    kept = sum(1 for f in forms if f.keeps_dim)
    return len(v.shape or ()) - len(forms) + kept


def _write_step_by_step_loop(ctx: ModuleContext, u: Unit, mode: str) -> None:
    o = ctx.out
    loop = u.loop
    assert loop is not None
    scope0 = ctx.model.scopes[loop.id]
    ex = ctx.exprs()
    names = ", ".join(sorted(u.sequential_vars))
    o.comment(f"{ctx.where(loop.span)}  for {loop.var} in "
              f"{format_expr(loop.range.lo)}..{format_expr(loop.range.hi)}: step by step "
              f"({names} read earlier iterations)")
    var = ctx.names[loop.var]
    started = set()
    for stmt in u.body:  # causal nets: their incremental state (KV cache, hidden state)
        for v, arg in causal_net_calls(ctx, stmt):
            if v.name not in started:
                started.add(v.name)
                spec = ctx.exprs().seqnet_spec(net_signature(ctx, v))
                scopes = tuple(ctx.model.scopes[lp.id] for lp in stmt.loops)
                docs = [ex.size(classify(i, scopes, ctx.ints).loop.length)  # type: ignore[union-attr]
                        for i in arg.items[:-1]]  # one incremental state per document
                shape = "shape__" + (f" + ({', '.join(docs)},)" if docs else "")
                o.line(f"{ctx.names[v.name]}__inc = rt.Incremental("
                       f"{ctx.names[v.name]}, {spec}, {shape})")
    with stacking_after_step_loop(ctx), \
            o.indent(f"for {var} in range({ex.size(scope0.lo)}, {ex.size(scope0.hi)} + 1):"):
        for stmt in u.body:  # plan() orders them by their same-iteration reads
            _write_statement(ctx, stmt, mode, ctx.scope(stmt, sequential=loop))
