"""Nets of the model in the generated code: their signatures and weight sizes, the causal
sequence nets whose factors are conditioned on prefixes, and the two methods only nets
need: `windows` (the prefixes a minibatch draws) and `call_net` (a critic no statement
calls, for adversarial training). Separate because the specs, the statements and these
methods all ask the same questions of a net."""
from __future__ import annotations

from typing import Any

from compiler.codegen.context import ModuleContext
from compiler.codegen.emitter import tuple_code
from compiler.codegen.exprs import Scope
from compiler.codegen.node_walk import subnodes
from compiler.indexing import classify
from compiler.ir import Statement
from compiler.passes.nets import signature
from compiler.sizes import Size
from dsl import nodes as n


def net_signature(ctx: ModuleContext, v: Any) -> Any:
    return signature(ctx.model, v, ctx.ints)


def mlp_sizes_code(ctx: ModuleContext, v: Any) -> str:
    return tuple_code([ctx.exprs().size(s) for s in net_signature(ctx, v).sizes])


def causal_net_calls(ctx: ModuleContext, stmt: Statement) -> list[tuple[Any, Any]]:
    """The calls of causal sequence nets in a statement: (net variable, argument)."""
    found = []
    nodes = [stmt.node]
    while nodes:
        e = nodes.pop()
        if isinstance(e, n.Call) and e.func.id in ctx.model.variables:
            v = ctx.model.variables[e.func.id]
            if v.role == "net" and net_signature(ctx, v).sequence:
                found.append((v, e.args[0]))
                continue
        nodes.extend(subnodes(e))
    return found


def causal_prefixes(ctx: ModuleContext, stmt: Statement, scope: Scope) -> tuple[int, str] | None:
    """For a statement with a causal net, vectorised over its loop: the loop's key and
    the code of its `first, count, context` (prefix lengths first .. first + count - 1
    read in windows of context tokens)."""
    calls = causal_net_calls(ctx, stmt)
    if not calls or not scope.loops:
        return None
    v, arg = calls[0]
    if len(arg.items) > 1:  # many documents: a minibatch draws documents (the plate)
        return None
    f = classify(arg.items[0], scope.all_scopes(), ctx.ints)
    assert f.loop is not None and f.offset is not None and f.lo is not None
    ex = ctx.exprs()
    first = ex.size(f.loop.lo + f.offset - f.lo + Size.const(1), scope)
    context = ex.size(net_signature(ctx, v).option("context"), scope)
    return f.loop.key, f"{first}, {ex.size(f.loop.length, scope)}, {context}"


def write_call_net(ctx: ModuleContext) -> None:
    """`call_net(data__, name, w, x)`: an MLP of the model applied to x, for a critic
    that no statement calls (adversarial training of an implicit model)."""
    nets = [v for v in ctx.model.of_role("net") if net_signature(ctx, v).kind == "MLP"]
    if not any(f.implicit for f in ctx.model.flows.values()) or not nets:
        return
    o = ctx.out
    o.blank()
    with o.indent("def call_net(self, data__, name__, w__, x__):"):
        o.line('"""The net `name__` at weights w__ applied to x__ [..., in]."""')
        ctx.unpack_sizes()
        for v in nets:
            sig = net_signature(ctx, v)
            sizes = ", ".join(ctx.exprs().size(z) for z in sig.sizes)
            with o.indent(f"if name__ == {v.name!r}:"):
                o.line(f"return rt.mlp(w__, ({sizes},), {sig.activation!r}, x__, "
                       "x__.dim() - 1)")
        o.line("raise rt.ModelError(f\"no MLP named {name__!r} in the model\")")


def write_windows(ctx: ModuleContext) -> None:
    """`windows(data__)`: each causal factor's prefixes and their context windows; a
    minibatch (`--batch`) draws windows instead of rows."""
    rows = []
    for stmt in ctx.model.statements:
        found = causal_prefixes(ctx, stmt, ctx.scope(stmt)) if stmt.kind == "sample" else None
        if found is not None:
            rows.append(f"{stmt.target!r}: rt.Windows({found[1]}),")
    if not rows:
        return
    o = ctx.out
    o.blank()
    with o.indent("def windows(self, data__):"):
        o.line('"""Each causal factor\'s prefixes and context windows (minibatches draw them)."""')
        ctx.unpack_sizes()
        with o.indent("return {"):
            for row in rows:
                o.line(row)
        o.line("}")
