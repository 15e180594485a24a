"""The order generated code runs in: statements grouped into units and sorted.

A unit is one statement evaluated for all its loop iterations at once, the constraining
of one latent, or a loop that must run step by step with the statements of its
recursion inside. Units are sorted topologically by the variables they define and read,
ties broken by source position, so the output is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from compiler.ir import GraphicalModel, Loop, Statement
from dsl.diagnostics import BgmError, Diagnostic


@dataclass
class Unit:
    kind: str  # "statement" | "constrain" | "sequential"
    position: tuple[int, int]
    defines: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    statement: Statement | None = None
    latent: str | None = None
    loop: Loop | None = None
    body: list[Statement] = field(default_factory=list)
    sequential_vars: set[str] = field(default_factory=set)


def recursion(model: GraphicalModel, loop: Loop, sampling: bool) -> tuple[list[Statement],
                                                                           set[str]]:
    """The statements of `loop` that must run step by step, and the variables they define.

    Start from variables the loop reads at an earlier iteration (deterministic ones only
    for the log density, any for sampling) and add the same-iteration definitions they
    need inside the loop."""
    inside = [s for s in model.statements if loop in s.loops and s.target is not None]
    kinds = {"assign"} if not sampling else {"assign", "sample"}
    defined_here = {s.target for s in inside if s.kind in kinds}
    lagged = {name for name in defined_here
              if any(name in s.reads for s in inside) and _read_lagged(model, loop, name)}
    if not sampling:
        lagged = {x for x in lagged if model.variables[x].role == "deterministic"}
    chosen = set(lagged)
    changed = True
    while changed:
        changed = False
        for s in inside:
            if s.target in chosen and s.kind in kinds:
                for r in s.reads:
                    if r in defined_here and r not in chosen and (
                            sampling or model.variables[r].role == "deterministic"):
                        chosen.add(r)
                        changed = True
    body = [s for s in inside if s.target in chosen and s.kind in kinds]
    return body, chosen


def _read_lagged(model: GraphicalModel, loop: Loop, name: str) -> bool:
    return name in model.lagged_reads.get(loop.id, set())  # type: ignore[attr-defined]


def plan(model: GraphicalModel, sampling: bool, constrain: bool) -> list[Unit]:
    """Units in the order they run (the log density constrains latents; samplers don't)."""
    seq_loops = model.sequential_sample if sampling else model.sequential_logp  # type: ignore[attr-defined]
    units: list[Unit] = []
    grouped: set[int] = set()
    for loop in sorted((model.loops[i] for i in seq_loops), key=lambda lp: lp.id):
        if any(lp.id in seq_loops for s in model.statements if loop in s.loops
               for lp in s.loops[:s.loops.index(loop)]):
            continue  # an outer loop runs step by step and carries this one
        body, variables = recursion(model, loop, sampling)
        if not body:
            continue
        grouped |= {s.id for s in body}
        reads = {r for s in body for r in s.reads} - variables
        units.append(Unit("sequential", (loop.span.line, loop.span.column), set(variables),
                          reads, loop=loop, body=body, sequential_vars=set(variables)))
    for stmt in model.statements:
        if stmt.id in grouped:
            continue
        if stmt.kind == "sample" and model.variables[stmt.target].role == "latent" \
                and sampling is False and not constrain:
            continue
        defines = {stmt.target} if stmt.target and stmt.kind == "assign" else set()
        if sampling and stmt.kind == "sample" and stmt.target:
            defines = {stmt.target}
        units.append(Unit("statement", (stmt.span.line, stmt.span.column), defines,
                          set(stmt.reads), statement=stmt))
    if constrain:
        for v in model.of_role("latent"):
            first = model.statements[v.defs[0]]
            reads = set(model.bound_reads.get(v.name, ()))  # type: ignore[attr-defined]
            units.append(Unit("constrain", (first.span.line, first.span.column - 1),
                              {v.name}, reads, latent=v.name))
    return _sort(model, units)


def _sort(model: GraphicalModel, units: list[Unit]) -> list[Unit]:
    g = nx.DiGraph()
    g.add_nodes_from(range(len(units)))
    definers: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        for d in u.defines:
            definers.setdefault(d, []).append(i)
    for i, u in enumerate(units):
        for r in u.reads:
            for j in definers.get(r, []):
                if j != i:
                    g.add_edge(j, i)
    try:
        order = list(nx.lexicographical_topological_sort(g, key=lambda i: units[i].position))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(g)
        stmt = units[cycle[0][0]]
        span: Any = stmt.statement.span if stmt.statement else None
        raise BgmError([Diagnostic("these statements depend on each other in a way bgmc "
                                   "cannot order yet", span)], model.source) from None
    return [units[i] for i in order]
