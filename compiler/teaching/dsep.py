"""Conditional independence on the model's graph (`bgmc query`): d-separation and Markov
blankets, asked of elements (`y[1]`) or whole variables (`y`).

The variable-level graph of compiler/ir.py draws one node per variable, but a plate
stands for many: y[1] and y[2] may be independent given mu although y and y are not. So
the graph is **unrolled**: every int data size becomes `size` (3 unless the question
names a larger index; raised until every loop and generator whose range grows with the
data runs at least twice), each statement is instantiated once per iteration of its
loops, and each read becomes edges from exactly the elements it reads. Generators are
unrolled too: `sum(w[k] * y[t - k] for k in 1..2)` reads w[1], w[2], y[t - 1] and
y[t - 2], exactly as the same sum written term by term (nested generators, bounds from
consts, int data or the loop variable alike). Each index item is evaluated in each
iteration: integer arithmetic of sizes and loop and generator variables selects one
element, a slice or prefix `a..b` those elements, `:` all of them. Any other index
(`mu[z[i]]`, an int datum alone `mu[j0]`) may select any element: a **loose** read, all of
whose elements are parents (the graph can only gain edges: an answer "independent" is
sound) except those that would point backwards in time or close a cycle: of its own
statement's elements it reads only those of earlier iterations, and never an element that
depends on the one being defined.

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

from compiler.indexing import LoopScope
from compiler.ir import GraphicalModel, Statement
from compiler.passes.ragged import loop_end
from compiler.sizes import NotASize, Size, int_env, size_of
from compiler.walk import children
from dsl import nodes as n

DEFAULT_SIZE = 3
MAX_SIZE = 40  # elements per plate: a chain of 40 is enough to show any pattern
RANDOM = ("observed", "latent", "deterministic", "param", "net")
WILDCARD = None  # an index item that may select any element (not known)
ALL = "all"  # `:`: every element, exactly


class QueryError(Exception):
    """A question bgmc cannot answer; `column` points into the query text (or None)."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


def element(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


# ---- unrolling ------------------------------------------------------------------------
Env = dict[str, int | None]  # loop and generator variables; None: a value not known
MAX_GENERATOR = 1000  # a generator ranging further is read as "any k" (not unrolled)


@dataclass
class _Found:
    """The elements a read selects: `exact` ones, and `loose` ones that an index bgmc
    cannot evaluate (`mu[z[i]]`, `mu[j0]`) may select."""

    exact: set[str]
    loose: set[str]


class _Unroller:
    def __init__(self, model: GraphicalModel, size: int, fixed: bool = False):
        self.model = model
        self.fixed = fixed  # also the fixed quantities read (data, transformed data)
        self.ints = int_env(model)
        self.values = {k: (size if v is None else v) for k, v in self.ints.items()}
        self.elements: dict[str, set[tuple[int, ...]]] = {}
        self.defined_at: dict[str, tuple[int, tuple[int, ...]]] = {}  # statement, iteration
        self.arity: dict[str, set[int]] = {}  # the lengths of each variable's indices
        self.graph = nx.DiGraph()

    def value(self, s: Size) -> int:
        return sum(c * _product(self.values[x] for x in m) for m, c in s.terms)

    def scopes(self, stmt: Statement) -> tuple[LoopScope, ...]:
        return tuple(LoopScope(lp.id, lp.var, size_of(lp.range.lo, self.ints),
                               loop_end(lp, self.ints)) for lp in stmt.loops)

    def ranges(self, stmt: Statement) -> list[range]:
        return [range(self.value(s.lo), self.value(s.hi) + 1) for s in self.scopes(stmt)]

    def short(self, stmt: Statement) -> bool:
        """Whether a loop or generator whose range grows with the int data runs fewer than
        twice at this size (its elements' pattern would not show)."""
        growing = [r for s, r in zip(self.scopes(stmt), self.ranges(stmt), strict=True)
                   if s.lo.names() | s.hi.names()]
        if any(len(r) < 2 for r in growing):
            return True
        loop_vars = frozenset(lp.var for lp in stmt.loops)
        return any(len(r) < 2 for r in self._generator_ranges(stmt.expr, loop_vars))

    def _generator_ranges(self, e: Any, bound: frozenset[str]) -> list[range]:
        """The ranges of the generators in e whose bounds are sizes of the int data alone
        (not of a loop or an outer generator's variable)."""
        out: list[range] = []
        if isinstance(e, n.Generator):
            lo, hi = (self._size(part, bound) for part in (e.range.lo, e.range.hi))
            if lo is not None and hi is not None and (lo.names() | hi.names()) and \
                    not (lo.names() | hi.names()) & bound:
                out.append(range(self.value(lo), self.value(hi) + 1))
            for part in (e.range.lo, e.range.hi):
                out += self._generator_ranges(part, bound)
            return out + self._generator_ranges(e.body, bound | {e.var.id})
        for child in children(e):
            out += self._generator_ranges(child, bound)
        return out

    def iterations(self, stmt: Statement) -> list[tuple[tuple[LoopScope, ...], dict[str, int]]]:
        """(loop scopes, values of the loop variables) for each iteration of stmt."""
        scopes = self.scopes(stmt)
        return [(scopes, dict(zip((s.var for s in scopes), combo, strict=True)))
                for combo in itertools.product(*self.ranges(stmt))]

    # ---- index arithmetic
    def _size(self, e: Any, variables: Any) -> Size | None:
        """e as a polynomial in the int data and the given loop and generator variables
        (consts folded unless a variable shadows them), or None (`z[i]`, `k / 2`)."""
        try:
            return size_of(e, {**self.ints, **dict.fromkeys(variables)})
        except NotASize:
            return None

    def evaluate(self, size: Size, env: Env) -> int | None:
        """A size's value in one iteration (int data at the unrolled size); None when it
        involves a generator variable whose range is not known."""
        total = 0
        for mono, coef in size.terms:
            term = coef
            for x in mono:
                v = env[x] if x in env else self.values[x]
                if v is None:
                    return None
                term *= v
            total += term
        return total

    def items(self, items: tuple[Any, ...], env: Env, target: bool = False) -> list[Any]:
        """Each index item, evaluated in one iteration (loop and generator variables at
        their values): an int, a set of ints (a slice `a..b`, a prefix `1..t - 1`), ALL
        (`:`) or WILDCARD. An index that is not integer arithmetic of sizes and loop or
        generator variables (`mu[z[i]]`), or an int datum alone (`mu[j0]`: its value is not
        the unrolled size), may select any element: WILDCARD. A target's are exact."""
        out: list[Any] = []
        for item in items:
            if isinstance(item, n.FullSlice):
                out.append(ALL)
                continue
            if isinstance(item, n.Slice):
                bounds = [self._size(b, env) for b in (item.range.lo, item.range.hi)]
                values = [None if b is None else self.evaluate(b, env) for b in bounds]
                out.append(WILDCARD if None in values
                           else set(range(values[0], values[1] + 1)))  # type: ignore[operator]
                continue
            size = self._size(item, env)
            if size is None or (not target and size.names() and not size.names() & set(env)):
                out.append(WILDCARD)
                continue
            value = self.evaluate(size, env)
            out.append(WILDCARD if value is None else value)
        return out

    def targets(self, stmt: Statement, env: Env) -> list[tuple[int, ...]]:
        """The elements one iteration of stmt defines: `mu[1..2]` defines mu[1] and mu[2];
        `x[:, j]` every row of column j (the declared dim, unrolled)."""
        shape = self.model.variables[stmt.target].shape or ()  # type: ignore[index]
        choices = []
        for p, item in enumerate(self.items(stmt.node.target.items, env, target=True)):
            if isinstance(item, int):
                choices.append([item])
            elif isinstance(item, set):
                choices.append(sorted(item))
            else:
                dim = shape[p] if p < len(shape) else Size.const(1)
                choices.append(list(range(1, self.value(dim) + 1)) if isinstance(dim, Size)
                               else list(range(1, int(dim) + 1)))
        return list(itertools.product(*choices))

    # ---- the graph
    def run(self) -> nx.DiGraph:
        statements = [s for s in self.model.statements if s.kind != "factor"]
        for stmt in statements:  # the elements each statement defines
            if self.model.variables[stmt.target].role not in RANDOM:  # type: ignore[index]
                continue
            for _, env in self.iterations(stmt):
                for index in self.targets(stmt, env):  # type: ignore[arg-type]
                    self.elements.setdefault(stmt.target, set()).add(index)  # type: ignore[arg-type]
                    self.defined_at.setdefault(element(stmt.target, index),  # type: ignore[arg-type]
                                               (stmt.id, tuple(env.values())))
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
        loose: list[tuple[str, str]] = []
        for stmt in self.model.statements:
            random_target = stmt.target is not None and \
                self.model.variables[stmt.target].role in RANDOM
            if stmt.kind != "factor" and not random_target:
                continue
            for _, env in self.iterations(stmt):
                if stmt.kind == "factor":  # an observed sink: no edge into it closes a cycle
                    child = element(f"factor@{stmt.span.line}", tuple(env.values()))
                    self.graph.add_node(child, factor=True, variable=None, role="factor")
                    found = self.reads([stmt.node.expr], env)  # type: ignore[arg-type]
                    for parent in found.exact | found.loose:
                        self.graph.add_edge(parent, child)
                    continue
                found = self.reads([stmt.expr, *stmt.node.target.items], env)  # type: ignore[arg-type]
                now = (stmt.id, tuple(env.values()))
                for index in self.targets(stmt, env):  # type: ignore[arg-type]
                    child = element(stmt.target, index)  # type: ignore[arg-type]
                    for parent in found.exact:
                        self.graph.add_edge(parent, child)
                    for parent in sorted(found.loose - found.exact):
                        at = self.defined_at.get(parent)
                        if at is None or at[0] != stmt.id or at[1] < now[1]:
                            loose.append((parent, child))
        # A loose read selects any element it may read. Of the statement's own elements
        # only those of earlier iterations (time runs forward: `y[t] ~ f(y[idx[t]])`
        # reads y's past), and none that would close a cycle: that one it cannot read.
        for parent, child in loose:
            if not self.graph.has_edge(parent, child) and parent != child and \
                    not nx.has_path(self.graph, child, parent):
                self.graph.add_edge(parent, child)
        return self.graph

    def reads(self, exprs: list[Any], env: Env) -> _Found:
        found = _Found(set(), set())
        for e in exprs:
            self._reads(e, env, found)
        return found

    def _reads(self, e: Any, env: Env, found: _Found) -> None:
        if isinstance(e, n.Generator):  # unrolled: the body read once per value of its variable
            for part in (e.range.lo, e.range.hi):
                self._reads(part, env, found)
            bounds = [self._size(part, env) for part in (e.range.lo, e.range.hi)]
            lo, hi = (None if b is None else self.evaluate(b, env) for b in bounds)
            if lo is None or hi is None or hi - lo >= MAX_GENERATOR:
                self._reads(e.body, {**env, e.var.id: None}, found)  # any k
                return
            for k in range(lo, hi + 1):
                self._reads(e.body, {**env, e.var.id: k}, found)
            return
        if isinstance(e, n.Index):
            base, items = e.base, tuple(e.items)
            while isinstance(base, n.Index):  # x[i][j] is x[i, j] (rule 16)
                base, items = base.base, tuple(base.items) + items
            if isinstance(base, n.Name) and base.id in self.elements and base.id not in env:
                self._select(base.id, self.items(items, env), found)
                for item in items:
                    self._reads(item, env, found)
                return
        if isinstance(e, n.Name) and e.id in self.elements and e.id not in env:
            found.exact.update(element(e.id, i) for i in self.elements[e.id])
            return
        if isinstance(e, n.Call) and e.func.id in self.elements:  # a net's weights
            found.exact.add(element(e.func.id, ()))
        for child in children(e):
            self._reads(child, env, found)

    def _select(self, name: str, wanted: list[Any], found: _Found) -> None:
        """The elements of `name` that an index (evaluated items) selects."""
        into = found.loose if any(w is WILDCARD for w in wanted) else found.exact
        have = self.elements[name]
        if name not in self.arity:
            self.arity[name] = {len(index) for index in have}
        if all(isinstance(w, (int, set)) for w in wanted) and self.arity[name] == {len(wanted)}:
            choices = [[w] if isinstance(w, int) else sorted(w) for w in wanted]
            into.update(element(name, index) for index in itertools.product(*choices)
                        if index in have)
            return
        for index in have:  # an element of fewer dims (read whole), or : and wildcards
            if all(w is WILDCARD or w is ALL or (i in w if isinstance(w, set) else i == w)
                   for i, w in zip(index, wanted, strict=False)):
                into.add(element(name, index))


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
    and generator whose range grows with the data runs at least twice: `for t in 5..T`
    needs T >= 6); with `fixed`, the data and transformed data it reads are nodes too
    (whole: one node each)."""
    if size > MAX_SIZE:
        raise QueryError(f"bgmc query unrolls at most {MAX_SIZE} elements per plate (asked "
                         f"for {size}); elements further on are alike")
    try:
        while True:
            unroller = _Unroller(model, size, fixed)
            short = any(unroller.short(stmt) for stmt in model.statements)
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
