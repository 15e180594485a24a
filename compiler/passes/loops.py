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
from compiler.sizes import int_env
from compiler.walk import children
from dsl import nodes as n
from dsl.diagnostics import BgmError, Diagnostic, Note
from dsl.printer import format_expr


@dataclass(frozen=True)
class Read:
    """One read of a variable inside a loop that defines it."""

    variable: str
    loop: Loop
    lag: int | None  # 0 same iteration, k > 0 k iterations back, None unknown
    prefix: bool
    node: Any
    access: Any = None  # the whole read (`z[n, t - 1]`): one access may lag in one loop


def classify_loops(model: GraphicalModel) -> None:
    errors: list[Diagnostic] = []
    ints = int_env(model)
    model.loop_kinds = {loop_id: "plate" for loop_id in model.loops}
    model.sequential_logp = set()
    model.sequential_sample = set()
    model.lagged_reads = {}
    excluded: set[tuple[str, int]] = set()  # (variable, statement) edges no cycle can use
    for stmt in model.statements:
        reads = loop_reads(model, stmt, ints)
        same = _same_element_reads(reads)
        if _reads_own_element(stmt, reads, ints, model):
            same.add(stmt.target)  # type: ignore[arg-type]
        excluded |= {(r, stmt.id) for r in stmt.reads
                     if r not in same and (r == stmt.target or
                                           any(x.variable == r for x in reads))}
        excluded |= {(r, stmt.id) for r in _always_earlier(model, stmt, ints)}
        for read in reads:
            if read.lag is None or read.lag < 0:
                errors.append(_not_earlier(read))
                continue
            if read.lag == 0 and not read.prefix:
                continue
            model.loop_kinds[read.loop.id] = "prefix" if read.prefix else "chain"
            model.lagged_reads.setdefault(read.loop.id, set()).add(read.variable)
            role = model.variables[read.variable].role
            model.sequential_sample.add(read.loop.id)
            if role == "deterministic":
                model.sequential_logp.add(read.loop.id)
    errors += _cycles(model, excluded)
    if errors:
        raise BgmError(errors, model.source)


def _same_element_reads(reads: list[Read]) -> set[str]:
    """Variables read at the very iteration being defined in every loop that defines them:
    `z[n, t]` inside `for n: for t`. `z[n, t - 1]` is at the same `n` but an earlier `t`,
    so it reads an earlier element (a chain per element of the plate `n`)."""
    by_access: dict[int, list[Read]] = {}
    for r in reads:
        by_access.setdefault(id(r.access) if r.access is not None else id(r), []).append(r)
    return {group[0].variable for group in by_access.values()
            if all(r.lag == 0 and not r.prefix for r in group)}


def _not_earlier(read: Read) -> Diagnostic:
    """A read inside the loop defining the variable that is not provably earlier."""
    x, t = read.variable, read.loop.var
    hint = (f"inside 'for {t}', read '{x}' at {t}, at earlier iterations ({x}[{t} - 1], "
            f"...) or as a prefix ({x}[1..{t} - 1])")
    if isinstance(read.node, n.Name):
        message = f"'{x}' is read whole inside 'for {t}', which defines it element by element"
    elif read.lag is not None:
        message = (f"'{x}' is read at a later iteration ({format_expr(read.node)}) of "
                   f"'for {t}', which defines it")
    else:
        message = (f"cannot tell which iteration of 'for {t}' this index of '{x}' reads: "
                   f"'{format_expr(read.node)}'")
    return Diagnostic(message, read.node.span, hint)


def _reads_own_element(stmt: Statement, reads: list[Read], ints: dict[str, Any],
                       model: GraphicalModel) -> bool:
    """Does the statement read the very element it defines where no loop tells iterations
    apart (`mu ~ Normal(mu, 1)`, `z[2] ~ Normal(z[2], 1)`)? Reads at other constant
    positions (`z[2] ~ Normal(z[1], 1)`) are fine."""
    target = stmt.target
    if target is None or target not in stmt.reads or any(r.variable == target for r in reads):
        return False
    scopes = tuple(model.scopes[loop.id] for loop in stmt.loops)
    mine = [classify(i, scopes, ints) for i in stmt.node.target.items]
    for node in _occurrences(stmt.expr, target):
        if isinstance(node, n.Name):
            return True
        theirs = [classify(i, scopes, ints) for i in node.items]
        if len(theirs) == len(mine) and all(
                a.kind == b.kind == "scalar" and a.lo == b.lo
                for a, b in zip(mine, theirs, strict=True)):
            return True
    return False


def _always_earlier(model: GraphicalModel, stmt: Statement, ints: dict[str, Any]) -> set[str]:
    """Variables every read of which is at `t - c` (c >= 1) for a loop variable t that
    indexes the target at t itself: such a read points to an earlier element, also when
    the variable is defined by another loop over the same index (rule 12), so it cannot
    close an element-level cycle."""
    if stmt.target is None:
        return set()
    scopes = tuple(model.scopes[loop.id] for loop in stmt.loops)
    own = {f.loop.key for f in (classify(i, scopes, ints) for i in stmt.node.target.items)
           if f.kind == "loop" and f.loop is not None and f.offset is not None
           and f.offset.constant == 0}
    out = set()
    for name in stmt.reads:
        if name == stmt.target:
            continue
        nodes = _occurrences(stmt.expr, name)
        if nodes and all(isinstance(x, n.Index) and _lagged(x, scopes, ints, own)
                         for x in nodes):
            out.add(name)
    return out


def _lagged(node: n.Index, scopes: tuple[Any, ...], ints: dict[str, Any],
            own: set[int]) -> bool:
    for item in node.items:
        f = classify(item, scopes, ints)
        if f.kind == "loop" and f.loop is not None and f.loop.key in own:
            lag = lag_of(f)
            if lag is not None and lag >= 1:
                return True
    return False


def _occurrences(e: Any, name: str) -> list[Any]:
    """The reads of `name` in `e`: bare Names and the Index nodes with it as base."""
    if isinstance(e, n.Name):
        return [e] if e.id == name else []
    if isinstance(e, n.Index) and isinstance(e.base, n.Name) and e.base.id == name:
        return [e] + [x for item in e.items for x in _occurrences(item, name)]
    return [x for child in children(e) for x in _occurrences(child, name)]


def _defined_in(model: GraphicalModel, name: str, loop: Loop) -> bool:
    v = model.variables.get(name)
    if v is None:
        return False
    return any(loop in model.statements[i].loops for i in v.defs)


def loop_reads(model: GraphicalModel, stmt: Statement, ints: dict[str, Any]) -> list[Read]:
    scopes = tuple(model.scopes[loop.id] for loop in stmt.loops)
    reads: list[Read] = []

    def visit(e: Any, inner: tuple[Any, ...]) -> None:
        if isinstance(e, n.Generator):
            scope = model.scopes.get(id(e))
            for child in children(e):
                visit(child, inner + ((scope,) if scope is not None else ()))
            return
        if isinstance(e, n.Index):
            base, items = e.base, list(e.items)
            while isinstance(base, n.Index):
                items = list(base.items) + items
                base = base.base
            if isinstance(base, n.Name):
                reads.extend(_item_reads(model, stmt, base.id, items, inner, ints, e))
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
                scopes: tuple[Any, ...], ints: dict[str, Any], access: Any) -> list[Read]:
    out: list[Read] = []
    for loop in stmt.loops:
        if not _defined_in(model, name, loop):
            continue
        scope = model.scopes[loop.id]
        found: Read | None = None
        for item in items:
            form = classify(item, scopes, ints)
            if form.loop is not None and form.loop.key == loop.id:
                found = Read(name, loop, lag_of(form), form.kind == "prefix", item, access)
            elif form.kind == "gather":
                lag = gather_lag(item, scope, scopes, ints)
                if lag is not None:
                    found = Read(name, loop, lag, False, item, access)
        if found is not None:  # a read not using the loop variable reads fixed elements
            out.append(found)
    return out


def _cycles(model: GraphicalModel, excluded: set[tuple[str, int]]) -> list[Diagnostic]:
    """Rule 9: element-level cycles, with lagged reads (chains) left out."""
    g = nx.DiGraph()
    for stmt in model.statements:
        if stmt.target is None:
            continue
        for r in stmt.reads:
            if (r, stmt.id) not in excluded:
                g.add_edge(r, stmt.target, statement=stmt)
    cycles = sorted(nx.simple_cycles(g), key=lambda c: (len(c), sorted(c)))[:3]
    return [_cycle_diagnostic(g, cycle) for cycle in cycles]


def _cycle_diagnostic(g: nx.DiGraph, cycle: list[str]) -> Diagnostic:
    """Name the members in 'depends on' order, starting from the definition that comes
    first in the file, with the caret on the read that closes the circle."""
    links = []  # (variable, what it reads, the defining statement)
    for i, name in enumerate(cycle):
        read = cycle[i - 1]
        links.append((name, read, g.edges[read, name]["statement"]))
    links.sort(key=lambda link: (link[2].span.line, link[2].span.column))
    name, read, stmt = links[0]
    span = _read_span(stmt, read)
    if len(cycle) == 1:
        hint = "a variable cannot appear in its own definition"
        if stmt.loops:
            t = stmt.loops[-1].var
            hint = f"to read the previous element, write {name}[{t} - 1]"
        return Diagnostic(f"'{name}' depends on itself: its definition reads the element it "
                          "defines", span, hint)
    order = [name]
    while len(order) < len(cycle):
        order.append(next(r for v, r, _ in links if v == order[-1]))
    chain = f"'{name}' depends on " + ", which depends on ".join(
        f"'{v}'" for v in order[1:] + [name])
    notes = tuple(Note(f"'{v}' reads '{r}' here", _read_span(s, r)) for v, r, s in links[1:])
    return Diagnostic(f"dependency cycle: {chain}", span,
                      "statements may come in any order, but no variable may depend on "
                      "itself through others (rule 9)", notes)


def _read_span(stmt: Statement, name: str) -> Any:
    """Where `stmt` reads `name` (with its indices), else the whole statement."""
    found = _occurrences(stmt.expr, name)
    return found[0].span if found else stmt.span
