"""The distribution object of a `~` statement as code: `dist.Name(...)` with its arguments
aligned to the statement's loops, `rt.Diffusion(...)` for a diffusion net, and the
truncation keywords of a draw whose declared support is narrower than the prior's.
Separate because the log density scores with the same object the samplers draw from."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.emitter import tuple_code
from compiler.codegen.exprs import ExprCompiler, Scope
from compiler.codegen.nets import net_signature
from compiler.ir import Statement
from compiler.passes.supports import Support
from compiler.tables.distributions import DISTRIBUTIONS


def distribution_code(ctx: ModuleContext, stmt: Statement, scope: Scope, ex: ExprCompiler,
                      value_rank: int) -> tuple[str, int]:
    binding = ctx.model.bindings[stmt.id]
    diffusion = ctx.model.diffusions.get(stmt.id)
    if diffusion is not None:
        return _diffusion_code(ctx, diffusion, scope, ex), value_rank - 1
    spec = DISTRIBUTIONS[binding.name]
    args = [ex.expr(a, scope) for a in binding.args]
    args = [ex.real(a) for a in args]
    batch_rank = max([value_rank - binding.event_rank] +
                     [a.rank - p.rank for a, p in zip(args, binding.params, strict=True)])
    loops = scope.keys()
    codes = []
    for a, p in zip(args, binding.params, strict=True):
        codes.append(ex.align(a, loops, batch_rank + p.rank))
    if args and all(a.python_scalar for a in args):  # else torch would pick float32
        codes[0] = f"data__.tensor({codes[0]})"
    form = spec.forms[binding.form]
    parts = []
    for i, (p, code) in enumerate(zip(binding.params, codes, strict=True)):
        positional = binding.form == 0 and i < len(form) and form[i] == p and \
            all(q == form[j] for j, q in enumerate(binding.params[:i + 1]))
        parts.append(code if positional else f"{p.name}={code}")
    extra = ""
    if spec.name == "LKJCholesky":
        v = ctx.model.variables[stmt.target]  # type: ignore[index]
        extra = f", dim={ex.size(v.shape[-1])}"  # type: ignore[index]
    return f"dist.{spec.name}({', '.join(parts)}{extra})", batch_rank


def _diffusion_code(ctx: ModuleContext, call: Any, scope: Scope, ex: ExprCompiler) -> str:
    """`rt.Diffusion(weights, sizes, act, steps, schedule)` (runtime/diffusion.py)."""
    sig = net_signature(ctx, ctx.model.variables[call.net])
    sizes = tuple_code([ex.size(s, scope) for s in sig.sizes])
    declared = ctx.model.variables[call.data].declared_type
    bounds = [None if b is None else ex.expr(b, Scope(())) for b in
              (declared.lower, declared.upper)]
    clip = "" if bounds == [None, None] else \
        f", clip=({', '.join('None' if b is None else b.code for b in bounds)})"
    return (f"rt.Diffusion({ctx.names[call.net]}, {sizes}, {sig.activation!r}, "
            f"{ex.size(call.steps, scope)}, {call.schedule!r}{clip})")


def truncation_code(ctx: ModuleContext, s: Support, stmt: Statement, scope: Scope,
                    ex: ExprCompiler) -> str:
    prior = DISTRIBUTIONS[ctx.model.bindings[stmt.id].name].support
    if s.kind == "ordered":
        return ", ordered=True"
    if s.kind != "interval" or prior[0] == "interval" and prior[1:] == (s.lower, s.upper):
        return ""
    if stmt.node.type is None:
        return ""

    def bound(b: Any) -> str:
        if b is None:
            return "None"
        if isinstance(b, (int, float)):
            return repr(float(b))
        v = ex.expr(b, scope)
        return v.code if v.number else ex.align(v, scope.keys(), 0)
    return f", lower={bound(s.lower)}, upper={bound(s.upper)}"
