"""The latents of the log density from its unconstrained values u__: each continuous
latent mapped into its support (`acc__.constrain`, with the Jacobian of the transform;
none for point parameters), net weights read as they are, a flow's base computed from the
data, a discrete latent enumerated. Separate because only the log density constrains:
the samplers draw latents already inside their supports."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.enumeration import is_discrete_latent, write_enumeration
from compiler.codegen.exprs import Scope, Unsupported
from compiler.codegen.flows import flow_of_base, write_flow_inverse
from compiler.passes.supports import Support
from compiler.sizes import shape_text
from dsl.printer import format_simple


def write_constrain(ctx: ModuleContext, name: str) -> None:
    v = ctx.model.variables[name]
    flow = flow_of_base(ctx.model, name)
    if flow is not None:
        write_flow_inverse(ctx, flow)
        return
    if v.role == "net":
        ctx.out.comment(f"{ctx.where(v.span)}  {format_simple(v.decl)}: the weights of "
                        "the net, point parameters (no prior, no Jacobian)")
        ctx.out.line(f"{ctx.names[name]} = u__[{name!r}]")
        return
    if is_discrete_latent(ctx.model, name):
        write_enumeration(ctx, name)
        return
    s: Support = ctx.model.supports[name]
    if s.kind == "int":  # declared int, but drawn from a continuous prior
        first = ctx.model.defining(name)[0]
        t = v.declared_type
        prior = ctx.model.bindings[first.id].name
        raise Unsupported(f"'{name}' is declared int, but its prior {prior} is a "
                          "continuous distribution", t if t is not None else first.node)
    py = ctx.names[name]
    if v.role == "param":  # a point estimate: never a Jacobian (rule 23)
        dims = shape_text(v.shape) if v.shape else ""
        ctx.out.comment(f"{ctx.where(v.span)}  {name}{dims}: {s.describe()}, a point "
                        "parameter (no prior, no Jacobian)")
        scope, jacobian = Scope(()), ", jacobian=False"
    else:
        first = ctx.model.defining(name)[0]
        dims = shape_text(v.shape) if v.shape else ""
        ctx.out.comment(f"{ctx.where(first.span)}  {name}{dims}: {s.describe()}")
        scope, jacobian = ctx.scope(first), ""
    if s.kind == "real":
        ctx.out.line(f"{py} = u__[{name!r}]")
        return
    if not jacobian:
        ctx.out.comment("mapped into its support; acc__.constrain adds the log-Jacobian of "
                        "the map to the density")
    transform = _transform_code(ctx, s, scope)
    ctx.out.line(f"{py} = acc__.constrain({name!r}, u__[{name!r}], {transform}{jacobian})")


def _transform_code(ctx: ModuleContext, s: Support, scope: Scope) -> str:
    if s.kind in ("simplex", "ordered", "cholesky_corr"):
        return f"rt.{s.kind}()"
    ex = ctx.exprs()

    def bound(b: Any) -> str:
        if isinstance(b, (int, float)):
            return repr(float(b))
        val = ex.expr(b, scope)
        return val.code if val.number else ex.align(val, scope.keys(), 0)
    if s.upper is None:
        return f"rt.lower_bound({bound(s.lower)})"
    if s.lower is None:
        return f"rt.upper_bound({bound(s.upper)})"
    return f"rt.interval({bound(s.lower)}, {bound(s.upper)})"
