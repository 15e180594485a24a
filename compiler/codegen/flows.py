"""Flows (compiler/passes/flows.py): `x = f(u)` with f an invertible net, so the base u is
computed from the data, u = f^-1(x), not treated as an unknown; its density there plus
log |det d f^-1 / dx| is the likelihood of x. With f not invertible the model is implicit
and has no likelihood at all. Separate because these facts change several parts of the
module: the names it lists, the specs, the log density and the samplers."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.nets import net_signature
from compiler.ir import GraphicalModel, Statement
from compiler.passes.nets import FLOW_FUNCTIONS
from dsl.printer import format_simple


def flow_of_base(model: GraphicalModel, name: str) -> Any:
    return next((f for f in model.flows.values() if f.base == name),
                None)


def flow_data_scored(model: GraphicalModel, stmt: Statement) -> str | None:
    """The data a flow's statement scores (its base's draw, or its `=`), if any."""
    for f in model.flows.values():
        if stmt.id in (f.draw, f.assign):
            return f.data  # type: ignore[no-any-return]
    return None


def write_flow_inverse(ctx: ModuleContext, flow: Any) -> None:
    """u = f^-1(x) from the data, and log |det d f^-1 / dx| as part of x's likelihood
    (implicit models never reach here)."""
    o = ctx.out
    v = ctx.model.variables[flow.data]
    sig = net_signature(ctx, ctx.model.variables[flow.net])
    o.comment(f"{ctx.where(ctx.model.statements[flow.assign].span)}  "
              f"{format_simple(ctx.model.statements[flow.assign].node)}: a flow, so "
              f"{flow.base} = {flow.net}^-1({flow.data}) (change of variables)")
    base = ctx.names[flow.base]
    o.line(f"{base}, {base}__ladj = rt.{FLOW_FUNCTIONS[sig.kind]}_inverse(u__[{flow.net!r}], "
           f"{ctx.exprs().flow_shape(sig)}, {ctx.names[flow.data]})")
    o.line(f"acc__.likelihood({flow.data!r}, {base}__ladj, ndims={len(v.shape) - 1})")  # type: ignore[arg-type]


def implicit_model_message(flow: Any) -> str:
    return (f"'{flow.data}' = {flow.net}({flow.base}) with {flow.net} not invertible is an "
            f"implicit model: it has no likelihood, so it cannot be fitted by mle, map, "
            f"nuts, advi or svi; train it against a critic net declared in the file with "
            f"'bgmc fit --method adversarial --critic NET'")
