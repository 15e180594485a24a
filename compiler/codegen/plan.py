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

from compiler.indexing import classify
from compiler.ir import GraphicalModel, Loop, Statement
from compiler.passes.elimination import reads_of
from compiler.passes.loops import loop_reads  # the one analysis of which iteration a read is at
from compiler.sizes import int_env
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


def recursion(model: GraphicalModel, loop: Loop, sampling: bool,
              predictive: bool = False) -> tuple[list[Statement], set[str]]:
    """The statements of `loop` that must run step by step, and the variables they define.

    Start from variables the loop reads at an earlier iteration (deterministic ones only
    for the log density, any for sampling, all but the given latents for the predictive)
    and add the same-iteration definitions they need inside the loop."""
    inside = [s for s in model.statements if loop in s.loops and s.target is not None
              and not (predictive and s.kind == "sample"
                       and model.variables[s.target].role == "latent"
                       and not model.variables[s.target].discrete)]
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
    return _iteration_order(model, loop, body), chosen


def _iteration_order(model: GraphicalModel, loop: Loop, body: list[Statement]) -> list[Statement]:
    """The statements of one iteration in an order where each runs after those whose
    same-iteration values it reads (statements are order-free, rule 9), ties by source."""
    ints = int_env(model)
    g = nx.DiGraph()
    g.add_nodes_from(range(len(body)))
    for i, reader in enumerate(body):
        same = {r.variable for r in loop_reads(model, reader, ints)
                if r.loop.id == loop.id and r.lag == 0 and not r.prefix}
        for j, writer in enumerate(body):
            if j != i and writer.target in same:
                g.add_edge(j, i)
    order = nx.lexicographical_topological_sort(
        g, key=lambda i: (body[i].span.line, body[i].span.column))
    return [body[i] for i in order]


def _initial(model: GraphicalModel, unit: Unit, seq: Unit) -> bool:
    """Whether `unit`, a statement outside the step-by-step loop `seq` defining part of
    one of its variables (`y[1] ~ ...`, `sigma[1] = ...`), reads those variables only at
    constant indices before the loop's first iteration, so it must run before the loop."""
    stmt, loop = unit.statement, seq.loop
    if stmt is None or loop is None:
        return False
    ints = int_env(model)
    first: dict[str, Any] = {}
    for s in seq.body:  # the first element the loop defines of each of its variables
        scopes = tuple(model.scopes[lp.id] for lp in s.loops)
        form = classify(s.node.target.items[0], scopes, ints) if s.node.target.items else None
        if form is not None and form.kind == "loop" and form.loop is not None \
                and form.loop.key == loop.id and form.offset is not None:
            first[s.target] = form.loop.lo + form.offset  # type: ignore[index]
    scopes = tuple(model.scopes[lp.id] for lp in stmt.loops)
    for name, items in _reads_of(stmt.expr, seq.sequential_vars):
        if not items or name not in first:
            return False
        form = classify(items[0], scopes, ints)
        gap = first[name] - form.lo if form.kind == "scalar" and form.lo is not None else None
        if gap is None or gap.constant is None or gap.constant <= 0:
            return False
    return True


def _reads_of(e: Any, names: set[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """Each read of one of `names` in `e`: the name and its index items (() if whole)."""
    return [(name, items) for name, items, _ in reads_of(e, names)]


def _read_lagged(model: GraphicalModel, loop: Loop, name: str) -> bool:
    return name in model.lagged_reads.get(loop.id, set())


def plan(model: GraphicalModel, sampling: bool, constrain: bool,
         predictive: bool = False) -> list[Unit]:
    """Units in the order they run (the log density constrains latents and params;
    samplers don't; the predictive sampler is given the latents and params)."""
    seq_loops = model.sequential_sample if sampling else model.sequential_logp
    units: list[Unit] = []
    grouped: set[int] = set()
    for loop in sorted((model.loops[i] for i in seq_loops), key=lambda lp: lp.id):
        if any(lp.id in seq_loops for s in model.statements if loop in s.loops
               for lp in s.loops[:s.loops.index(loop)]):
            continue  # an outer loop runs step by step and carries this one
        body, variables = recursion(model, loop, sampling, predictive)
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
    if constrain:  # latents, and point parameters (at their declaration)
        for v in model.of_role("latent", "param", "net"):
            span = model.statements[v.defs[0]].span if v.role == "latent" else v.span
            reads = set(model.bound_reads.get(v.name, ()))
            if v.discrete:  # its values are enumerated from its prior's arguments (K = len(p))
                reads |= set(model.statements[v.defs[0]].reads) - {v.name}
            units.append(Unit("constrain", (span.line, span.column - 1),
                              {v.name}, reads, latent=v.name))
    return _sort(model, units)


def _sort(model: GraphicalModel, units: list[Unit]) -> list[Unit]:
    g = nx.DiGraph()
    g.add_nodes_from(range(len(units)))
    definers: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        for d in u.defines:
            definers.setdefault(d, []).append(i)
    before: set[tuple[int, int]] = set()  # (j, i): j defines initial elements loop i reads
    for i, u in enumerate(units):
        if u.kind == "sequential":
            for name in sorted(u.sequential_vars):
                before |= {(j, i) for j in definers.get(name, [])
                           if j != i and _initial(model, units[j], u)}
    for i, u in enumerate(units):
        for r in u.reads:
            for j in definers.get(r, []):
                if j != i and (i, j) not in before:
                    g.add_edge(j, i)
    g.add_edges_from(before)
    try:
        order = list(nx.lexicographical_topological_sort(g, key=lambda i: units[i].position))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(g)
        stmt = units[cycle[0][0]]
        span: Any = stmt.statement.span if stmt.statement else None
        raise BgmError([Diagnostic("these statements depend on each other in a way bgmc "
                                   "cannot order yet", span)], model.source) from None
    return [units[i] for i in order]
