"""Loop classification and element-level cycles (rules 9 and 12).

Contract: `classify_loops(model)` sets `model.loop_kinds[loop.id]` to "plate", "chain" or
"prefix" from how statements inside each loop index the variables the loop defines, and
fills `model.sequential_logp` / `model.sequential_sample` with the loops the generated
code must run step by step (a deterministic recursion; an ancestral draw that reads an
earlier draw). Reads of a later iteration and dependency cycles are diagnostics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from compiler.indexing import classify, gather_lag, lag_of
from compiler.ir import GraphicalModel, Loop, Statement
from compiler.shapes import int_env
from compiler.walk import children
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic


@dataclass(frozen=True)
class Read:
    """One read of a variable inside a loop that defines it."""

    variable: str
    loop: Loop
    lag: int | None  # 0 same iteration, k > 0 k iterations back, None unknown
    prefix: bool
    node: Any


def classify_loops(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    ints = int_env(model)
    model.loop_kinds = {loop_id: "plate" for loop_id in model.loops}
    model.sequential_logp = set()  # type: ignore[attr-defined]
    model.sequential_sample = set()  # type: ignore[attr-defined]
    model.lagged_reads = {}  # type: ignore[attr-defined]
    excluded: set[tuple[str, int]] = set()  # (variable, statement) edges no cycle can use
    for stmt in model.statements:
        reads = _loop_reads(model, stmt, ints)
        same = {r.variable for r in reads if r.lag == 0 and not r.prefix}
        excluded |= {(r, stmt.id) for r in stmt.reads
                     if r not in same and (r == stmt.target or
                                           any(x.variable == r for x in reads))}
        for read in reads:
            if read.lag is None or read.lag < 0:
                errors.append(Diagnostic(
                    f"'{read.variable}' is read at an iteration of 'for {read.loop.var}' that "
                    "is not earlier than the one being defined",
                    read.node.span,
                    f"inside 'for {read.loop.var}', read '{read.variable}' at "
                    f"{read.loop.var}, {read.loop.var} - 1, ... or as a prefix"))
                continue
            if read.lag == 0 and not read.prefix:
                continue
            model.loop_kinds[read.loop.id] = "prefix" if read.prefix else "chain"
            model.lagged_reads.setdefault(read.loop.id, set()).add(read.variable)  # type: ignore[attr-defined]
            role = model.variables[read.variable].role
            model.sequential_sample.add(read.loop.id)  # type: ignore[attr-defined]
            if role == "deterministic":
                model.sequential_logp.add(read.loop.id)  # type: ignore[attr-defined]
    errors += _cycles(model, excluded)
    if errors:
        raise BgmError(errors, model.source)


def _defined_in(model: GraphicalModel, name: str, loop: Loop) -> bool:
    v = model.variables.get(name)
    if v is None:
        return False
    return any(loop in model.statements[i].loops for i in v.defs)


def _loop_reads(model: GraphicalModel, stmt: Statement, ints: dict[str, Any]) -> list[Read]:
    scopes = tuple(model.scopes[loop.id] for loop in stmt.loops)  # type: ignore[attr-defined]
    reads: list[Read] = []

    def visit(e: Any, inner: tuple[Any, ...]) -> None:
        if isinstance(e, n.Generator):
            scope = model.scopes.get(id(e))  # type: ignore[attr-defined]
            for child in children(e):
                visit(child, inner + ((scope,) if scope is not None else ()))
            return
        if isinstance(e, n.Index):
            base, items = e.base, list(e.items)
            while isinstance(base, n.Index):
                items = list(base.items) + items
                base = base.base
            if isinstance(base, n.Name):
                reads.extend(_item_reads(model, stmt, base.id, items, inner, ints))
                for item in items:
                    visit(item, inner)
                return
        if isinstance(e, n.Name):
            for loop in stmt.loops:
                if _defined_in(model, e.id, loop):
                    reads.append(Read(e.id, loop, None, False, e))
            return
        for child in children(e):
            visit(child, inner)

    visit(stmt.expr, scopes)
    return reads


def _item_reads(model: GraphicalModel, stmt: Statement, name: str, items: list[Any],
                scopes: tuple[Any, ...], ints: dict[str, Any]) -> list[Read]:
    out: list[Read] = []
    for loop in stmt.loops:
        if not _defined_in(model, name, loop):
            continue
        scope = model.scopes[loop.id]  # type: ignore[attr-defined]
        found: Read | None = None
        for item in items:
            form = classify(item, scopes, ints)
            if form.loop is not None and form.loop.key == loop.id:
                found = Read(name, loop, lag_of(form), form.kind == "prefix", item)
            elif form.kind == "gather":
                lag = gather_lag(item, scope, scopes, ints)
                if lag is not None:
                    found = Read(name, loop, lag, False, item)
        if found is not None:  # a read not using the loop variable reads fixed elements
            out.append(found)
    return out


def _cycles(model: GraphicalModel, excluded: set[tuple[str, int]]) -> list[Diagnostic]:
    g = nx.DiGraph()
    for stmt in model.statements:
        if stmt.target is None:
            continue
        for r in stmt.reads:
            if (r, stmt.id) not in excluded:
                g.add_edge(r, stmt.target, statement=stmt)
    errors = []
    for cycle in sorted(nx.simple_cycles(g), key=lambda c: sorted(c))[:3]:
        first = g.edges[cycle[-1], cycle[0]]["statement"] if len(cycle) > 1 else \
            g.edges[cycle[0], cycle[0]]["statement"]
        members = " -> ".join(cycle + [cycle[0]])
        errors.append(Diagnostic(f"dependency cycle: {members}", first.span,
                                 "each element must be defined from earlier ones only"))
    return errors
