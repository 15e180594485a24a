"""The `data_specs` of a generated module: one runtime.DataSpec per `data` declaration,
ordered so that every size and bound reads only data specified before it (the loader
checks them in this order)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import networkx as nx

from compiler.codegen.emitter import tuple_code
from compiler.codegen.exprs import Unsupported
from compiler.ir import GraphicalModel
from compiler.sizes import NotASize, size_of
from compiler.walk import free_names
from dsl import nodes as n


def data_spec_lines(model: GraphicalModel, ints: dict[str, Any],
                    where: Callable[[Any], str]) -> list[str]:
    """`rt.DataSpec(...)` source for each data variable, in loading order."""
    return [_data_spec(model, ints, where, v) for v in _data_order(model)]


def _data_order(model: GraphicalModel) -> list[Any]:
    g = nx.DiGraph()
    data = model.of_role("data", "observed")
    g.add_nodes_from(v.name for v in data)
    for v in data:
        for e in _type_exprs(v.declared_type):
            for x in free_names(e):
                if x.id in g and x.id != v.name:
                    g.add_edge(x.id, v.name)
    spans = {v.name: (v.span.line, v.span.column) for v in data}
    return [model.variables[x] for x in
            nx.lexicographical_topological_sort(g, key=lambda x: spans[x])]


def _data_spec(model: GraphicalModel, ints: dict[str, Any], where: Callable[[Any], str],
               v: Any) -> str:
    t = v.declared_type
    base = "int" if t.base == "int" else "real"
    args = [repr(v.name), repr(base)]
    dims = list(t.dims) + ([t.dims[-1]] if t.base == "cholesky_corr" else [])
    if dims:
        args.append(f"dims={tuple_code([_spec_dim(ints, d) for d in dims])}")
    lower, upper = t.lower, t.upper
    if t.base == "positive":
        lower = n.Number(0.0)
    if t.base == "unit":
        lower, upper = n.Number(0.0), n.Number(1.0)
    if lower is not None:
        args.append(f"lower={_spec_bound(model, ints, lower)}")
    if upper is not None:
        args.append(f"upper={_spec_bound(model, ints, upper)}")
    if t.base in ("simplex", "ordered", "cholesky_corr"):
        args.append(f"constraint={t.base!r}")
    args.append(f"where={where(v.span)!r}")
    return f"rt.DataSpec({', '.join(args)})"

def _spec_dim(ints: dict[str, Any], d: Any) -> str:
    try:
        s = size_of(d, ints)
    except NotASize as exc:
        raise Unsupported(str(exc), exc.node) from None
    if s.constant is not None:
        return str(s.constant)
    if len(s.terms) == 1 and s.terms[0][1] == 1 and len(s.terms[0][0]) == 1:
        return repr(s.terms[0][0][0])
    return f"rt.size_expr({s.code(lambda x: f'd[{x!r}]')!r}, lambda d: " \
           f"{s.code(lambda x: f'd[{x!r}]')})"

def _spec_bound(model: GraphicalModel, ints: dict[str, Any], e: Any) -> str:
    if isinstance(e, n.Number):
        return repr(float(e.value))
    if isinstance(e, n.Unary) and isinstance(e.operand, n.Number):
        return repr(-float(e.operand.value))
    if isinstance(e, n.Name):
        v = model.variables[e.id]
        if v.role == "const":
            return repr(float(v.value))
        return repr(e.id)
    names = {x.id for x in free_names(e)}
    env = {k: None for k in names}
    try:
        s = size_of(e, {**ints, **env})
    except NotASize:
        raise Unsupported("a data bound must be a number, a name or an integer "
                          "expression", e) from None
    return f"lambda d: {s.code(lambda x: f'd[{x!r}]')}"


def _type_exprs(t: Any) -> list[Any]:
    if t is None:
        return []
    out = list(t.dims)
    if t.lower is not None:
        out.append(t.lower)
    if t.upper is not None:
        out.append(t.upper)
    return out

