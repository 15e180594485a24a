"""Data defined by `=` through a net (rule 13): `x[i] = f(u[i])` with `u[i] ~ D(...)` a
latent, the base.

- f invertible (RealNVP): a **flow**. x has the exact density of the change of variables,
      log p(x) = log p_u(f^-1(x)) + log |det d f^-1 / dx|,
  so the base is not an unknown: the log density computes it from the data by the
  inverse and scores its `~` and the log-determinant as the likelihood of x.
- f any other net: an **implicit model** (a GAN's generator). x has no density bgmc can
  write, so likelihood-based methods are refused and `--method adversarial` trains f
  against a critic net.
Either way sampling draws u afresh and pushes it forward.

Contract: `find_flows(model)` sets `model.flows` (data name -> Flow, `implicit` telling
which) and raises a BgmError, with a caret, for a definition bgmc cannot use.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler.indexing import index_text
from compiler.ir import GraphicalModel
from compiler.passes.nets import INVERTIBLE
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic
from dsl.printer import format_target


@dataclass(frozen=True)
class Flow:
    data: str  # x, observed
    base: str  # u, a latent computed from x by the inverse
    net: str  # f, invertible
    assign: int  # the statement `x[..] = f(u[..])`
    draw: int  # the statement `u[..] ~ D(...)`
    implicit: bool = False  # f is not invertible: no likelihood (a GAN's generator)


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
        same = tuple(index_text(i) for i in getattr(arg, "items", ())) == \
            tuple(index_text(i) for i in target.items) and \
            [lp.var for lp in draw.loops] == [lp.var for lp in stmt.loops]
        if not same:
            errors.append(Diagnostic(
                f"the flow's base '{u.name}' must be indexed as '{format_target(target)}' is, in "
                "the same loops (one base draw per data point)", arg.span))
            continue
        readers = [s for s in model.statements if u.name in s.reads and s.id != stmt.id]
        if readers:
            errors.append(Diagnostic(
                f"the base '{u.name}' of '{target.name.id}' = {call.func.id}(...) is not an "
                "unknown of the model (it is drawn afresh when sampling); reading it "
                "elsewhere is not supported yet",
                readers[0].span))
            continue
        kind = model.variables[call.func.id].decl.kind.id
        flows[target.name.id] = Flow(target.name.id, u.name, call.func.id, stmt.id, draw.id,
                                     implicit=kind not in INVERTIBLE)
    implicit = [f for f in flows.values() if f.implicit]
    if implicit:  # trained adversarially: its unknowns must be nets (critic and generator)
        bases = {f.base for f in flows.values()}
        other = [v for v in model.of_role("latent", "param") if v.name not in bases]
        if other:
            errors.append(Diagnostic(
                f"'{other[0].name}' is an unknown of an implicit model ('{implicit[0].data}' "
                "= a net of latent noise), which adversarial training cannot fit yet: only "
                "nets are trained", other[0].span))
    if errors:
        raise BgmError(errors, model.source)
    model.flows = flows
