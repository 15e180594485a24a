"""Conditional independence on the model's graph (`bgmc query`): d-separation and Markov
blankets, asked of elements (`y[1]`) or whole variables (`y`).

The variable-level graph of compiler/ir.py draws one node per variable, but a plate
stands for many: y[1] and y[2] may be independent given mu although y and y are not. So
the graph is **unrolled**: every int data size becomes `size` (3 unless the question
names a larger index), each statement is instantiated once per iteration of its loops,
and each read becomes edges from exactly the elements it reads. An index item that is
the loop variable plus a constant, a constant, a slice or a prefix selects those
elements; anything else (`mu[z[i]]`, a generator's variable) may be any element, so all
of them are parents (the graph can only gain edges: an answer "independent" is sound).

Fixed quantities (data that no `~` generates, transformed data, consts) are not random:
they are left out, which is the same as conditioning on them. A `factor` statement is a
potential over what it reads: it becomes an observed child of those elements.
Contract: `unrolled(model, size)` -> networkx DiGraph over element names ("y[2]", "mu",
"factor@12[1]"; the observed factor nodes carry `factor=True`); `query(model, text)` and
`markov_blanket(model, name)` answer the CLI's questions.
"""
from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

import networkx as nx

from compiler.indexing import LoopScope, classify
from compiler.ir import GraphicalModel, Statement
from compiler.shapes import int_env
from compiler.sizes import NotASize, Size, size_of
from compiler.walk import children, free_names
from dsl import nodes as n

DEFAULT_SIZE = 3
MAX_SIZE = 40  # elements per plate: a chain of 40 is enough to show any pattern
RANDOM = ("observed", "latent", "deterministic", "param", "net")
WILDCARD = None  # an index item that may select any element


class QueryError(Exception):
    """A question bgmc cannot answer; `column` points into the query text (or None)."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


def element(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


# ---- unrolling ------------------------------------------------------------------------
class _Unroller:
    def __init__(self, model: GraphicalModel, size: int, fixed: bool = False):
        self.model = model
        self.fixed = fixed  # also the fixed quantities read (data, transformed data)
        self.ints = int_env(model)
        self.values = {k: (size if v is None else v) for k, v in self.ints.items()}
        self.elements: dict[str, set[tuple[int, ...]]] = {}
        self.graph = nx.DiGraph()

    def value(self, s: Size) -> int:
        return sum(c * _product(self.values[x] for x in m) for m, c in s.terms)

    def scopes(self, stmt: Statement) -> tuple[LoopScope, ...]:
        return tuple(LoopScope(lp.id, lp.var, size_of(lp.range.lo, self.ints),
                               size_of(lp.range.hi, self.ints)) for lp in stmt.loops)

    def ranges(self, stmt: Statement) -> list[range]:
        return [range(self.value(s.lo), self.value(s.hi) + 1) for s in self.scopes(stmt)]

    def iterations(self, stmt: Statement) -> list[tuple[tuple[LoopScope, ...], dict[str, int]]]:
        """(loop scopes, values of the loop variables) for each iteration of stmt."""
        scopes = self.scopes(stmt)
        return [(scopes, dict(zip((s.var for s in scopes), combo, strict=True)))
                for combo in itertools.product(*self.ranges(stmt))]

    def items(self, items: tuple[Any, ...], scopes: tuple[LoopScope, ...],
              env: dict[str, int], bound: frozenset[str] = frozenset(),
              target: bool = False) -> list[Any]:
        """Each index item as an int, a set of ints (slice, prefix) or WILDCARD. A read
        indexed by a generator's variable (`bound`) or by an int datum (`mu[j0]`: its
        value is not the unrolled size) may be any element; a target's are exact."""
        out: list[Any] = []
        for item in items:
            if bound & {x.id for x in free_names(item)}:
                out.append(WILDCARD)
                continue
            form = classify(item, scopes, self.ints)
            if form.kind == "loop":
                out.append(env[form.loop.var] + self.value(form.offset))  # type: ignore[union-attr, arg-type]
            elif form.kind == "scalar" and (target or not form.lo.names()):  # type: ignore[union-attr]
                out.append(self.value(form.lo))  # type: ignore[arg-type]
            elif form.kind in ("slice", "prefix"):
                lo = self.value(form.lo)  # type: ignore[arg-type]
                hi = (env[form.loop.var] + self.value(form.offset)) if form.kind == "prefix" \
                    else self.value(form.hi)  # type: ignore[union-attr, arg-type]
                out.append(set(range(lo, hi + 1)))
            else:
                out.append(WILDCARD)
        return out

    def targets(self, stmt: Statement, scopes: tuple[LoopScope, ...],
                env: dict[str, int]) -> list[tuple[int, ...]]:
        """The elements one iteration of stmt defines: `mu[1..2]` defines mu[1] and mu[2];
        `x[:, j]` every row of column j (the declared dim, unrolled)."""
        shape = self.model.variables[stmt.target].shape or ()  # type: ignore[index]
        choices = []
        for p, item in enumerate(self.items(stmt.node.target.items, scopes, env,
                                            target=True)):
            if isinstance(item, int):
                choices.append([item])
            elif isinstance(item, set):
                choices.append(sorted(item))
            else:
                dim = shape[p] if p < len(shape) else Size.const(1)
                choices.append(list(range(1, self.value(dim) + 1)) if isinstance(dim, Size)
                               else list(range(1, int(dim) + 1)))
        return list(itertools.product(*choices))

    def run(self) -> nx.DiGraph:
        statements = [s for s in self.model.statements if s.kind != "factor"]
        for stmt in statements:  # the elements each statement defines
            if self.model.variables[stmt.target].role not in RANDOM:  # type: ignore[index]
                continue
            for scopes, env in self.iterations(stmt):
                for index in self.targets(stmt, scopes, env):
                    self.elements.setdefault(stmt.target, set()).add(index)  # type: ignore[arg-type]
        for v in self.model.of_role("param", "net"):
            self.elements.setdefault(v.name, {()})
        if self.fixed:  # whole, one node each: a diagram's covariates
            read = set().union(*(s.reads for s in self.model.statements))
            for v in self.model.of_role("data", "transformed_data"):
                if v.name in read and v.name not in self.elements and not _size_data(v):
                    self.elements[v.name] = {()}
        for name, index_set in self.elements.items():
            for index in index_set:
                self.graph.add_node(element(name, index), variable=name, index=index,
                                    role=self.model.variables[name].role)
        for stmt in self.model.statements:
            random_target = stmt.target is not None and \
                self.model.variables[stmt.target].role in RANDOM
            if stmt.kind != "factor" and not random_target:
                continue
            for scopes, env in self.iterations(stmt):
                if stmt.kind == "factor":
                    child = element(f"factor@{stmt.span.line}", tuple(env.values()))
                    self.graph.add_node(child, factor=True, variable=None, role="factor")
                    for parent in self.reads([stmt.node.expr], scopes, env):
                        self.graph.add_edge(parent, child)
                    continue
                parents = self.reads([stmt.expr, *stmt.node.target.items], scopes, env)
                for index in self.targets(stmt, scopes, env):
                    for parent in parents:
                        self.graph.add_edge(parent, element(stmt.target, index))  # type: ignore[arg-type]
        return self.graph

    def reads(self, exprs: list[Any], scopes: tuple[LoopScope, ...],
              env: dict[str, int]) -> set[str]:
        found: set[str] = set()
        for e in exprs:
            self._reads(e, scopes, env, found)
        return found

    def _reads(self, e: Any, scopes: tuple[LoopScope, ...], env: dict[str, int],
               found: set[str], bound: frozenset[str] = frozenset()) -> None:
        if isinstance(e, n.Generator):  # its variable ranges over its own range
            for part in (e.range.lo, e.range.hi):
                self._reads(part, scopes, env, found, bound)
            self._reads(e.body, scopes, env, found, bound | {e.var.id})
            return
        if isinstance(e, n.Index) and isinstance(e.base, n.Name) and e.base.id in self.elements:
            wanted = self.items(e.items, scopes, env, bound)
            for index in self.elements[e.base.id]:
                if all(w is WILDCARD or (i in w if isinstance(w, set) else i == w)
                       for i, w in zip(index, wanted, strict=False)):
                    found.add(element(e.base.id, index))
            for item in e.items:
                self._reads(item, scopes, env, found, bound)
            return
        if isinstance(e, n.Name) and e.id in self.elements:
            found.update(element(e.id, i) for i in self.elements[e.id])
            return
        if isinstance(e, n.Call) and e.func.id in self.elements:  # a net's weights
            found.add(element(e.func.id, ()))
        for child in children(e):
            self._reads(child, scopes, env, found, bound)


def _size_data(v: Any) -> bool:
    """An int scalar datum: a size (N), drawn as a plate's bound, not as a node."""
    t = v.declared_type
    return t is not None and t.base == "int" and not t.dims


def _product(values: Any) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def unrolled(model: GraphicalModel, size: int = DEFAULT_SIZE, fixed: bool = False) -> nx.DiGraph:
    """The element-level graph, every int data size set to `size` (raised until every loop
    runs at least twice: `for t in 5..T` needs T >= 6); with `fixed`, the data and
    transformed data it reads are nodes too (whole: one node each)."""
    if size > MAX_SIZE:
        raise QueryError(f"bgmc query unrolls at most {MAX_SIZE} elements per plate (asked "
                         f"for {size}); elements further on are alike")
    try:
        while True:
            unroller = _Unroller(model, size, fixed)
            short = any(len(r) < 2 for stmt in model.statements
                        for r in unroller.ranges(stmt))
            if not short or size >= MAX_SIZE:
                return unroller.run()
            size += 1
    except NotASize as exc:  # a loop bound bgmc checked already; cannot happen
        raise QueryError(str(exc)) from None


# ---- d-separation ---------------------------------------------------------------------
def active_trail(g: nx.DiGraph, xs: set[str], ys: set[str], zs: set[str]) -> list[str] | None:
    """An active trail from some x to some y given zs (Bayes ball: Koller and Friedman,
    Algorithm 3.1), as nodes with arrows ("a", "->", "b", "<-", "c"), or None when every
    trail is blocked (xs and ys are d-separated)."""
    observed = zs | {v for v, d in g.nodes(data=True) if d.get("factor")}
    lit = set(observed)  # observed nodes and their ancestors: colliders that pass
    for z in observed:
        lit |= nx.ancestors(g, z)
    start = [(x, "up") for x in sorted(xs)]
    previous: dict[tuple[str, str], tuple[str, str] | None] = dict.fromkeys(start)
    queue = deque(start)
    while queue:
        node, way = queue.popleft()
        if node in ys and node not in observed:
            return _trail((node, way), previous)
        steps: list[tuple[str, str]] = []
        if way == "up" and node not in observed:
            steps += [(p, "up") for p in g.predecessors(node)]
            steps += [(c, "down") for c in g.successors(node)]
        elif way == "down":
            if node not in observed:
                steps += [(c, "down") for c in g.successors(node)]
            if node in lit:
                steps += [(p, "up") for p in g.predecessors(node)]
        for step in sorted(steps):
            if step not in previous:
                previous[step] = (node, way)
                queue.append(step)
    return None


def _trail(last: tuple[str, str], previous: dict[Any, Any]) -> list[str]:
    states = [last]
    while previous[states[-1]] is not None:
        states.append(previous[states[-1]])
    states.reverse()
    out = [states[0][0]]
    for node, way in states[1:]:  # "down": reached from a parent; "up": from a child
        out += ["->" if way == "down" else "<-", node]
    return out


# ---- the questions ---------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    name: str
    index: tuple[int, ...] | None  # None: every element
    column: int

    def __str__(self) -> str:
        return self.name if self.index is None else element(self.name, self.index)


_TERM = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(\[\s*\d+(?:\s*,\s*\d+)*\s*\])?\s*")


def normalize(text: str) -> str:
    """The question with ⊥, ⊥⊥ and ⫫ written as _||_ (error columns refer to this)."""
    return text.replace("⊥⊥", "_||_").replace("⫫", "_||_").replace("⊥", "_||_")


def parse_query(text: str) -> tuple[list[Term], list[Term], list[Term]]:
    """`A _||_ B | C` (also written with ⊥ or ⫫): comma-separated terms, each a name or
    an element with integer indices (`y[2]`, `x[1, 3]`)."""
    normal = normalize(text)
    if normal.count("_||_") != 1:
        raise QueryError("write the question as 'A _||_ B | C' (C optional)",
                         None if "_||_" not in normal else normal.rindex("_||_"))
    left, rest = normal.split("_||_")
    right, _, given = rest.partition("|")
    offset = len(left) + 4
    parts = (_terms(left, 0), _terms(right, offset),
             _terms(given, offset + len(right) + 1) if given.strip() or "|" in rest else [])
    if not parts[0] or not parts[1]:
        raise QueryError("both sides of '_||_' need a variable", 0 if not parts[0] else offset)
    return parts


def _terms(text: str, offset: int) -> list[Term]:
    """The comma-separated terms of one side (commas inside brackets separate indices)."""
    if not text.strip():
        return []
    pieces, depth, begin = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth <= 0:
            pieces.append((text[begin:i], offset + begin))
            begin = i + 1
    terms: list[Term] = []
    for piece, column in pieces:
        column += len(piece) - len(piece.lstrip())
        match = _TERM.fullmatch(piece)
        if match is None:
            raise QueryError(f"'{piece.strip()}' is not a variable or an element such as "
                             "y[2]", column)
        index = tuple(int(k) for k in re.findall(r"\d+", match[2])) if match[2] else None
        terms.append(Term(match[1], index, column))
    return terms


def _nodes(model: GraphicalModel, g: nx.DiGraph, term: Term) -> set[str]:
    v = model.variables.get(term.name)
    if v is None:
        raise QueryError(f"'{term.name}' is not a variable of the model", term.column)
    if v.role not in RANDOM:
        raise QueryError(f"'{term.name}' is {v.role.replace('_', ' ')}, fixed rather than "
                         "random: conditioning on it changes nothing", term.column)
    nodes = {node for node, d in g.nodes(data=True) if d.get("variable") == term.name}
    if term.index is not None:
        nodes = {node for node in nodes if g.nodes[node]["index"] == term.index}
        if not nodes:
            have = sorted(g.nodes[k]["index"] for k in g.nodes
                          if g.nodes[k].get("variable") == term.name)
            shown = ", ".join(element(term.name, i) for i in have[:6])
            raise QueryError(f"{term} is not an element of the model (it has {shown}"
                             f"{', ...' if len(have) > 6 else ''})", term.column)
    return nodes


@dataclass(frozen=True)
class Answer:
    independent: bool
    statement: str
    trail: list[str] | None
    size: int

    def text(self) -> str:
        if self.independent:
            return (f"yes: {self.statement}. Every trail between them is blocked (the graph "
                    f"unrolled with {self.size} elements per plate).")
        return (f"no: {self.statement} does not hold. An active trail: "
                f"{' '.join(self.trail or [])}")


def query(model: GraphicalModel, text: str, size: int | None = None) -> Answer:
    xs, ys, zs = parse_query(text)
    biggest = max((max(t.index) for t in (*xs, *ys, *zs) if t.index), default=0)
    size = max(size or DEFAULT_SIZE, biggest)
    g = unrolled(model, size)
    sets = [set().union(*(_nodes(model, g, t) for t in terms)) if terms else set()
            for terms in (xs, ys, zs)]
    for term in (*xs, *ys):
        if _nodes(model, g, term) & sets[2]:
            raise QueryError(f"{term} is on both sides of '|': ask about variables that are "
                             "not given", term.column)
    statement = (f"{', '.join(map(str, xs))} _||_ {', '.join(map(str, ys))}"
                 + (f" | {', '.join(map(str, zs))}" if zs else ""))
    shared = sets[0] & sets[1]
    if shared:
        node = sorted(shared)[0]
        return Answer(False, statement, [node], size)
    trail = active_trail(g, sets[0], sets[1], sets[2])
    return Answer(trail is None, statement, trail, size)


def markov_blanket(model: GraphicalModel, name: str, size: int = DEFAULT_SIZE) -> list[str]:
    """The Markov blanket (parents, children, the children's other parents; a factor's
    other arguments) in the unrolled graph: of a variable, the other variables in the
    blanket of any of its elements; of an element (`z[2]`), the elements themselves."""
    terms = _terms(name, 0)
    if len(terms) != 1:
        raise QueryError("--markov-blanket takes one variable or element", 0)
    term = terms[0]
    g = unrolled(model, max(size, max(term.index or (0,))))
    nodes = _nodes(model, g, term)
    blanket: set[str] = set()
    for node in nodes:
        blanket |= set(g.predecessors(node))
        for child in g.successors(node):
            blanket.add(child)
            blanket |= set(g.predecessors(child))
    blanket = {b for b in blanket - nodes if not g.nodes[b].get("factor")}
    if term.index is not None:
        return sorted(blanket)
    return sorted({g.nodes[b]["variable"] for b in blanket} - {term.name})
