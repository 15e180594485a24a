"""The plate diagram of a model (`bgmc graph`): its nodes, edges and plates, laid out.

Notation: random variables are circles, shaded when observed, dashed when deterministic
(`=`); point parameters and nets are small squares; data that no `~` generates (a
covariate) is a small shaded square; a `factor` is a small black square. A plate is a
box around the nodes its loop repeats, labelled with its range. A variable that reads
its own past (a chain: an HMM's z[t], an AR(k) series, a language model's tokens) is
drawn as a sequence of time slices z[1] z[2] z[3] ... instead, with the variables
indexed by the same time alongside, so that the repeated structure shows.

Edges come from the element-level graph of compiler/teaching/dsep.py (three slices per plate),
collapsed back to one node per variable (or per time slice), so the diagram and
`bgmc query` agree on what depends on what.

Layout (no Graphviz needed): layers top to bottom by longest path from the roots; then
one block of columns per **plate signature** (the set of plates a node is in), the
blocks ordered so that each plate's blocks are adjacent. A plate's box spans exactly its
blocks' columns, so it holds its members and nothing else, for nested plates and when two
plates overlap without nesting (x[i, j] in plates i and j, a[i] in i only, b[j] in j
only). Three plates that overlap pairwise (a[i, j], b[j, k], c[i, k]) have no such order
on one line; the order that keeps the most plates whole is drawn, and a box may then
pass over a node it does not hold.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from compiler.indexing import LoopScope, classify
from compiler.ir import GraphicalModel, Loop
from compiler.passes.ragged import loop_end
from compiler.sizes import int_env, size_of
from compiler.teaching.dsep import unrolled
from compiler.walk import children
from dsl import nodes as n
from dsl.printer import format_expr, format_range

TIME_SLICES = 3
COLUMN, ROW = 1.3, 1.25  # grid spacing, in node diameters' units (see render.py)


@dataclass
class Node:
    key: str  # "mu", "z[2]"
    variable: str
    role: str  # latent | observed | deterministic | param | net | fixed | factor
    plates: frozenset[str]
    slice: int | None = None  # the time slice of a chain variable
    layer: int = 0
    x: float = 0.0
    y: float = 0.0


@dataclass
class Plate:
    key: str
    label: str
    members: frozenset[str]
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # x0, y0, x1, y1


@dataclass
class Diagram:
    name: str
    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    plates: list[Plate]
    more: list[tuple[float, float]] = field(default_factory=list)  # "..." after a chain
    width: float = 0.0
    height: float = 0.0


def _plate_key(lp: Loop) -> str:
    return f"{lp.var} = {format_range(lp.range)}"


def _time_sizes(model: GraphicalModel) -> set[str]:
    """The loop sizes of chains: a statement reading its own target inside a loop."""
    return {format_expr(s.loops[-1].range.hi) for s in model.statements
            if s.loops and s.target is not None and s.target in s.reads}


def build(model: GraphicalModel) -> Diagram:
    times = _time_sizes(model)
    g = unrolled(model, TIME_SLICES + (1 if times else 0), fixed=True)
    ints = int_env(model)
    time_pos: dict[str, int] = {}
    plates_of: dict[str, frozenset[str]] = {}
    labels: dict[str, str] = {}
    for v in model.variables.values():
        sets = []
        for stmt in model.defining(v.name):
            keys = set()
            for lp in stmt.loops:
                if format_expr(lp.range.hi) in times:
                    pos = _position(stmt, lp, ints)
                    if pos is not None:
                        time_pos[v.name] = pos
                    continue
                keys.add(_plate_key(lp))
                labels[_plate_key(lp)] = _plate_key(lp)
            sets.append(frozenset(keys))
        if sets:
            plates_of[v.name] = frozenset.intersection(*sets)
    _fixed_plates(model, plates_of, labels, times, ints)
    nodes: dict[str, Node] = {}
    collapse: dict[str, str] = {}
    for key, data in g.nodes(data=True):
        var = data.get("variable")
        if data.get("factor"):
            line = key.split("@")[1].split("[")[0]
            stmt = next(s for s in model.statements if s.kind == "factor" and
                        str(s.span.line) == line)
            keys = frozenset(_plate_key(lp) for lp in stmt.loops)
            for k in keys:
                labels[k] = k
            name = f"factor@{line}"
            nodes.setdefault(name, Node(name, name, "factor", keys))
            collapse[key] = name
            continue
        v = model.variables[var]
        role = v.role if v.role in ("latent", "observed", "deterministic", "param",
                                    "net") else "fixed"
        index = data.get("index", ())
        pos = time_pos.get(var)
        if pos is not None and len(index) > pos:
            name, slice_ = f"{var}[{index[pos]}]", index[pos]
        else:
            name, slice_ = var, None
        nodes.setdefault(name, Node(name, var, role, plates_of.get(var, frozenset()), slice_))
        collapse[key] = name
    edges = sorted({(collapse[a], collapse[b]) for a, b in g.edges
                    if collapse[a] != collapse[b]})
    plates = [Plate(k, labels[k], frozenset(m.key for m in nodes.values() if k in m.plates))
              for k in sorted({p for m in nodes.values() for p in m.plates})]
    diagram = Diagram(model.name, nodes, edges, plates)
    _layout(diagram)
    return diagram


def _position(stmt: Any, lp: Loop, ints: dict[str, Any]) -> int | None:
    """The target index position that the loop `lp` runs over (x[t] -> 0)."""
    scopes = tuple(LoopScope(q.id, q.var, size_of(q.range.lo, ints), loop_end(q, ints))
                   for q in stmt.loops)
    for p, item in enumerate(stmt.node.target.items):
        form = classify(item, scopes, ints)
        if form.kind == "loop" and form.loop.var == lp.var:  # type: ignore[union-attr]
            return p
    return None


def _fixed_plates(model: GraphicalModel, plates_of: dict[str, frozenset[str]],
                  labels: dict[str, str], times: set[str], ints: dict[str, Any]) -> None:
    """A covariate's plates: those whose loop variable indexes it in every read (a
    generator's variable is not the loop's, even when it reuses the loop's name)."""
    found: dict[str, list[frozenset[str]]] = {}

    def fixed(name: Any, bound: frozenset[str]) -> bool:
        return isinstance(name, n.Name) and name.id not in bound and \
            name.id in model.variables and \
            model.variables[name.id].role in ("data", "transformed_data")

    for stmt in model.statements:
        by_var = {lp.var: lp for lp in stmt.loops if format_expr(lp.range.hi) not in times}
        stack: list[tuple[Any, frozenset[str]]] = [(stmt.expr, frozenset())]
        while stack:
            e, bound = stack.pop()
            if isinstance(e, n.Generator):
                stack += [(e.range.lo, bound), (e.range.hi, bound),
                          (e.body, bound | {e.var.id})]
                continue
            if fixed(e, bound):
                found.setdefault(e.id, []).append(frozenset())
            if isinstance(e, n.Index):
                base, items = e.base, tuple(e.items)
                while isinstance(base, n.Index):  # x[i][j] is x[i, j] (rule 16)
                    base, items = base.base, tuple(base.items) + items
                if fixed(base, bound):
                    keys = frozenset(_plate_key(by_var[i.id]) for i in items
                                     if isinstance(i, n.Name) and i.id in by_var and
                                     i.id not in bound)
                    found.setdefault(base.id, []).append(keys)
                    stack += [(i, bound) for i in items]
                    continue
            stack += [(c, bound) for c in children(e)]
    for name, sets in found.items():
        if name not in plates_of:
            plates_of[name] = frozenset.intersection(*sets)
            for k in plates_of[name]:
                labels[k] = k


# ---- layout ---------------------------------------------------------------------------
def _layout(d: Diagram) -> None:
    if not d.nodes:  # nothing random: an empty drawing, not an error
        d.width, d.height = 3.0, 1.2
        return
    layer = _layers(d)
    for node in d.nodes.values():
        node.layer = layer[node.variable if node.slice is not None else node.key]
    blocks = _block_order(d)
    x0 = 0.0
    parents: dict[str, list[str]] = {k: [] for k in d.nodes}
    for a, b in d.edges:
        parents[b].append(a)
    for signature in blocks:
        members = [m for m in d.nodes.values() if m.plates == signature]
        rows: dict[int, list[Node]] = {}
        for m in members:
            rows.setdefault(m.layer, []).append(m)
        width = 0
        for lay in sorted(rows):
            row = sorted(rows[lay], key=lambda m: (
                _mean_x(d, [k for k in parents[m.key] if d.nodes[k].variable != m.variable]),
                m.variable, m.slice or 0))
            col = 0
            for m in row:
                m.x, m.y = x0 + col * COLUMN, lay * ROW
                col += 1
                if m.slice is not None and m.slice == max(
                        k.slice or 0 for k in row if k.variable == m.variable):
                    d.more.append((x0 + col * COLUMN - 0.35 * COLUMN, lay * ROW))
                    col += 0.4  # type: ignore[assignment]
            width = max(width, col)
        x0 += max(width, 1) * COLUMN + 0.45 * COLUMN
    _boxes(d)
    xs = [m.x for m in d.nodes.values()] + [p.box[2] for p in d.plates] + [x for x, _ in d.more]
    ys = [m.y for m in d.nodes.values()] + [p.box[3] for p in d.plates]
    left = min([m.x for m in d.nodes.values()] + [p.box[0] for p in d.plates])
    top = min([m.y for m in d.nodes.values()] + [p.box[1] for p in d.plates])
    shift_x, shift_y = 0.6 - left, 0.6 - top
    for m in d.nodes.values():
        m.x, m.y = m.x + shift_x, m.y + shift_y
    d.more = [(x + shift_x, y + shift_y) for x, y in d.more]
    for p in d.plates:
        x_0, y_0, x_1, y_1 = p.box
        p.box = (x_0 + shift_x, y_0 + shift_y, x_1 + shift_x, y_1 + shift_y)
    d.width = max(xs) + shift_x + 0.8
    d.height = max(ys) + shift_y + 0.6


def _mean_x(d: Diagram, keys: list[str]) -> float:
    placed = [d.nodes[k].x for k in keys]
    return sum(placed) / len(placed) if placed else 0.0


def _layers(d: Diagram) -> dict[str, int]:
    """Longest path from the roots, on the graph with time slices merged (a chain's
    slices share a row)."""
    g = nx.DiGraph()
    unit = {k: (m.variable if m.slice is not None else k) for k, m in d.nodes.items()}
    g.add_nodes_from(set(unit.values()))
    g.add_edges_from((unit[a], unit[b]) for a, b in d.edges if unit[a] != unit[b])
    if not nx.is_directed_acyclic_graph(g):  # coupled chains: drop the edges going back
        order = {v: i for i, v in enumerate(nx.dfs_preorder_nodes(g))}
        kept = [(a, b) for a, b in g.edges if order[a] < order[b]]
        g = nx.DiGraph(kept)
        g.add_nodes_from(set(unit.values()))
    layer: dict[str, int] = {}
    for v in nx.topological_sort(g):
        layer[v] = max((layer[p] + 1 for p in g.predecessors(v)), default=0)
    return layer


def _block_order(d: Diagram) -> list[frozenset[str]]:
    """The plate signatures in an order where each plate's signatures are adjacent (the
    consecutive-ones property), nested plates outside in; ties broken by edge length."""
    signatures = sorted({m.plates for m in d.nodes.values()}, key=lambda s: (len(s), sorted(s)))
    plates = sorted({p for s in signatures for p in s})
    if len(signatures) > 7:  # too many to try every order: the first one that keeps
        found = _whole_order(signatures, plates)  # every plate whole, by backtracking
        size = {p: sum(p in m.plates for m in d.nodes.values()) for p in plates}
        return found or sorted(signatures, key=lambda s: sorted((-size[p], p) for p in s))
    best, best_cost = signatures, None
    for order in itertools.permutations(signatures):
        broken = sum(not _adjacent([p in s for s in order]) for p in plates)
        position = {s: i for i, s in enumerate(order)}
        cost = (broken, sum(abs(position[d.nodes[a].plates] - position[d.nodes[b].plates])
                            for a, b in d.edges))
        if best_cost is None or cost < best_cost:
            best, best_cost = list(order), cost
    return best


def _whole_order(signatures: list[frozenset[str]], plates: list[str]
                 ) -> list[frozenset[str]] | None:
    """An order of the signatures in which each plate's are adjacent, or None. A plate
    is closed once a signature without it follows one with it; it may not reopen."""
    budget = [20_000]  # orders tried: a model with no whole order gives up quickly

    def extend(order: list[frozenset[str]], rest: list[frozenset[str]],
               closed: frozenset[str]) -> list[frozenset[str]] | None:
        if not rest:
            return order
        budget[0] -= 1
        if budget[0] < 0:
            return None
        last = order[-1] if order else frozenset()
        for i, sig in enumerate(rest):
            if sig & closed:
                continue
            found = extend(order + [sig], rest[:i] + rest[i + 1:], closed | (last - sig))
            if found is not None:
                return found
        return None
    return extend([], list(signatures), frozenset())


def _adjacent(flags: list[bool]) -> bool:
    first = flags.index(True) if True in flags else 0
    last = len(flags) - 1 - flags[::-1].index(True) if True in flags else 0
    return all(flags[first:last + 1])


def _boxes(d: Diagram) -> None:
    """Each plate's box: its members' extent, widened by how many plates it contains."""
    for i, p in enumerate(d.plates):
        inner = sum(1 for q in d.plates if q is not p and q.members < p.members)
        crossing = sum(1 for q in d.plates[:i] if q.members & p.members and
                       not q.members <= p.members and not p.members <= q.members)
        pad = 0.55 + 0.18 * inner + 0.16 * crossing  # overlapping borders stay apart
        xs = [d.nodes[k].x for k in p.members] + [x for x, y in d.more
                                                   if any(abs(y - d.nodes[k].y) < 1e-9 and
                                                          x > d.nodes[k].x for k in p.members)]
        ys = [d.nodes[k].y for k in p.members]
        p.box = (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad + 0.25)
