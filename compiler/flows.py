"""Flows (rule 13): data defined by `=` through an invertible net, `x[i] = f(u[i])` with
`u[i] ~ D(...)` a latent, has the exact density of the change of variables,
    log p(x) = log p_u(f^-1(x)) + log |det d f^-1 / dx|.
So the base u is not an unknown: the log density computes it from the data by the
inverse, and scores its `~` and the log-determinant as the likelihood of x; sampling
draws u and pushes it forward.

Contract: `find_flows(model)` sets `model.flows` (data name -> Flow) and raises a
BgmError, with a caret, for a flow bgmc cannot score.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import GraphicalModel
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic
from dsl.printer import format_expr, format_target


@dataclass(frozen=True)
class Flow:
    data: str  # x, observed
    base: str  # u, a latent computed from x by the inverse
    net: str  # f, invertible
    assign: int  # the statement `x[..] = f(u[..])`
    draw: int  # the statement `u[..] ~ D(...)`


def find_flows(model: GraphicalModel) -> None:
    flows: dict[str, Flow] = {}
    errors: list[Diagnostic] = []
    for stmt in model.statements:
        if stmt.kind != "assign" or model.variables[stmt.target].role != "observed":  # type: ignore[index]
            continue
        call = stmt.node.value
        arg = call.args[0] if len(call.args) == 1 else None
        base = arg.base if isinstance(arg, n.Index) else arg
        u = model.variables.get(base.id) if isinstance(base, n.Name) else None
        target = stmt.node.target
        if u is None or u.role != "latent" or len(u.defs) != 1:
            errors.append(Diagnostic(
                f"a flow pushes a latent variable through '{call.func.id}': write "
                f"{format_target(target)} = {call.func.id}(u[...]) with u drawn by one '~'",
                getattr(arg, "span", call.span)))
            continue
        draw = model.statements[u.defs[0]]
        same = tuple(format_expr(i) for i in getattr(arg, "items", ())) == \
            tuple(format_expr(i) for i in target.items) and \
            [lp.var for lp in draw.loops] == [lp.var for lp in stmt.loops]
        if not same:
            errors.append(Diagnostic(
                f"the flow's base '{u.name}' must be indexed as '{format_target(target)}' is, in "
                "the same loops (one base draw per data point)", arg.span))
            continue
        readers = [s for s in model.statements if u.name in s.reads and s.id != stmt.id]
        if readers:
            errors.append(Diagnostic(
                f"the flow's base '{u.name}' is computed from the data by the inverse of "
                f"'{call.func.id}'; reading it elsewhere is not supported yet",
                readers[0].span))
            continue
        flows[target.name.id] = Flow(target.name.id, u.name, call.func.id, stmt.id, draw.id)
    if errors:
        raise BgmError(errors, model.source)
    model.flows = flows  # type: ignore[attr-defined]
