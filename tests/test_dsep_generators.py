"""Reads through generators (`sum(w[k] * y[t - k] for k in 1..K)`) select exactly the
elements they read: random AR(K)-like models are written twice, once with every term
spelled out (`w[1] * y[t - 1] + w[2] * y[t - 2]`) and once with generator reductions,
and both must give the same unrolled element graph (compiler/teaching/dsep.py), the same plate
diagram (compiler/teaching/diagram.py), the graph the specification says, and the same answer to
every d-separation question between their elements."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.pipeline import analyse
from compiler.teaching.diagram import build
from compiler.teaching.dsep import active_trail, query, unrolled
from dsl.parser import parse_source
from dsl.spans import Source

REDUCTIONS = ("sum", "prod", "mean", "max", "min", "log_sum_exp")


def analysed(text: str):  # type: ignore[no-untyped-def]
    """The graphical model of a program (every check short of generating code)."""
    source = Source("gen.bgm", text)
    return analyse(parse_source(source), source)


# ---- the models ----------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    """A reduction over k in lo..hi (and m in mlo..mhi when nested) of
    coef(k) * y_src[t - k - m + offset]: lag k + m - offset."""

    func: str
    src: int  # the sequence read
    coef: str  # "" | "alpha" | "w" (w[k], one element each) | "beta" (beta[k], one node)
    lo: int
    hi: int
    offset: int
    nested: tuple[int, int] | None  # m's range
    generator: bool  # written as a generator in the generator version
    const_hi: bool  # hi written as `K` (const K) or `K - c`

    def ks(self) -> list[int]:
        return list(range(self.lo, self.hi + 1))

    def lags(self, k: int) -> list[int]:
        ms = range(self.nested[0], self.nested[1] + 1) if self.nested else [0]
        return [k + m - self.offset for m in ms]


@dataclass(frozen=True)
class Seq:
    observed: bool  # data y: the elements before the loop are fixed; else latent throughout
    start: int  # for t in start..T
    terms: tuple[Term, ...]
    alpha: bool  # an explicit `alpha +` term outside any reduction


@dataclass(frozen=True)
class Scalar:
    """`s ~ Normal(func(y_src[k + c] for k in lo..hi), 1)`: a generator outside loops."""

    func: str
    src: int
    lo: int
    hi: int
    c: int
    generator: bool


@dataclass(frozen=True)
class Spec:
    K: int
    seqs: tuple[Seq, ...]
    scalars: tuple[Scalar, ...]


def _bound(value: int, spec: Spec, as_const: bool) -> str:
    if not as_const:
        return str(value)
    return "K" if value == spec.K else f"K - {spec.K - value}"


def _index(lag: int) -> str:
    return "t" if lag == 0 else (f"t - {lag}" if lag > 0 else f"t + {-lag}")


def _coef(term: Term, k: str) -> str:
    return {"": "", "alpha": "alpha * ", "w": f"w[{k}] * ", "beta": f"beta[{k}] * "}[term.coef]


def _explicit(func: str, parts: list[str]) -> str:
    if func == "sum":
        return "(" + " + ".join(parts) + ")"
    if func == "prod" and len(parts) > 1:
        return "(" + " * ".join(parts) + ")"
    return f"{func}([{', '.join(parts)}])"


def render_term(term: Term, spec: Spec, generators: bool) -> str:
    y = f"y{term.src}"
    if generators and term.generator:
        hi = _bound(term.hi, spec, term.const_hi)
        off = f" + {term.offset}" if term.offset > 0 else (
            f" - {-term.offset}" if term.offset < 0 else "")
        if term.nested:
            mlo, mhi = term.nested
            inner = f"{term.func}({_coef(term, 'k')}{y}[t - k - m{off}] for m in {mlo}..{mhi})"
            return f"{term.func}({inner} for k in {term.lo}..{hi})"
        return f"{term.func}({_coef(term, 'k')}{y}[t - k{off}] for k in {term.lo}..{hi})"
    outer = []
    for k in term.ks():
        if term.nested:
            inner = [f"{_coef(term, str(k))}{y}[{_index(lag)}]" for lag in term.lags(k)]
            outer.append(_explicit(term.func, inner))
        else:
            outer.append(f"{_coef(term, str(k))}{y}[{_index(term.lags(k)[0])}]")
    return _explicit(term.func, outer)


def render(spec: Spec, generators: bool) -> str:
    lines = ["data T: int", f"const K = {spec.K}", "alpha ~ Normal(0, 1)",
             "beta: real[K] ~ Normal(0, 1)", "for k in 1..K:", "    w[k] ~ Normal(0, 1)"]
    for j, seq in enumerate(spec.seqs):
        if seq.observed:
            lines.insert(1, f"data y{j}: real[T]")
        else:
            lines += [f"y{j}[{t}] ~ Normal(0, 1)" for t in range(1, seq.start)]
        mean = " + ".join((["alpha"] if seq.alpha else [])
                          + [render_term(term, spec, generators) for term in seq.terms]) or "0"
        lines += [f"for t in {seq.start}..T:", f"    y{j}[t] ~ Normal({mean}, 1)"]
    for j, s in enumerate(spec.scalars):
        if generators and s.generator:
            body = f"{s.func}(y{s.src}[k + {s.c}] for k in {s.lo}..{s.hi})"
        else:
            body = _explicit(s.func, [f"y{s.src}[{k + s.c}]" for k in range(s.lo, s.hi + 1)])
        lines.append(f"s{j} ~ Normal({body}, 1)")
    return "\n".join(lines) + "\n"


def expected_graph(spec: Spec, T: int) -> nx.DiGraph:
    """The element graph the specification says, unrolled with T elements per sequence."""
    g = nx.DiGraph()
    g.add_nodes_from(["alpha", "beta", *(f"w[{k}]" for k in range(1, spec.K + 1))])
    first = [seq.start if seq.observed else 1 for seq in spec.seqs]
    for j in range(len(spec.seqs)):
        g.add_nodes_from(f"y{j}[{t}]" for t in range(first[j], T + 1))
    g.add_nodes_from(f"s{j}" for j in range(len(spec.scalars)))

    def read(parent: str, child: str) -> None:
        if parent in g:  # an element no `~` generates is fixed: no node, no edge
            g.add_edge(parent, child)

    for j, seq in enumerate(spec.seqs):
        for t in range(seq.start, T + 1):
            child = f"y{j}[{t}]"
            if seq.alpha:
                read("alpha", child)
            for term in seq.terms:
                for k in term.ks():
                    if term.coef:
                        read({"alpha": "alpha", "w": f"w[{k}]", "beta": "beta"}[term.coef],
                             child)
                    for lag in term.lags(k):
                        read(f"y{term.src}[{t - lag}]", child)
    for j, s in enumerate(spec.scalars):
        for k in range(s.lo, s.hi + 1):
            read(f"y{s.src}[{k + s.c}]", f"s{j}")
    return g


@st.composite
def specs(draw: st.DrawFn, max_seqs: int = 2) -> Spec:
    K = draw(st.integers(1, 4))
    n = draw(st.integers(1, max_seqs))
    starts = [draw(st.integers(2, 5)) for _ in range(n)]
    seqs = []
    for j in range(n):
        terms = []
        for _ in range(draw(st.integers(1, 3))):
            src = draw(st.integers(0, j))  # no variable depends on itself through others
            smallest = 0 if src < j else 1  # and no element on itself
            largest = starts[j] - 1  # t - lag >= 1
            func = draw(st.sampled_from(REDUCTIONS))
            coef = draw(st.sampled_from(["", "alpha", "w", "beta"]))
            nested = None
            if draw(st.integers(0, 3)) == 0 and largest - smallest >= 1:
                mlo = draw(st.integers(0, 1))
                nested = (mlo, draw(st.integers(mlo, mlo + 1)))
            # k in lo..hi with every lag k + m - offset in smallest..largest, and
            # 1 <= lo, hi <= K (coefficients w[k], beta[k])
            m_lo, m_hi = nested or (0, 0)
            lo = draw(st.integers(1, K))
            hi = draw(st.integers(lo, min(K, lo + 2)))
            # offset so that lags stay in range: lo + m_lo - offset >= smallest and
            # hi + m_hi - offset <= largest
            low_off, high_off = hi + m_hi - largest, lo + m_lo - smallest
            if low_off > high_off:  # the range is too wide for this start: one k
                hi = lo
                low_off, high_off = hi + m_hi - largest, lo + m_lo - smallest
                if low_off > high_off:
                    nested, m_lo, m_hi = None, 0, 0
                    low_off, high_off = hi - largest, lo - smallest
            offset = draw(st.integers(low_off, high_off))
            terms.append(Term(func, src, coef, lo, hi, offset, nested, draw(st.booleans()),
                              draw(st.booleans())))
        seqs.append(Seq(draw(st.booleans()), starts[j], tuple(terms), draw(st.booleans())))
    scalars = []
    for _ in range(draw(st.integers(0, 1))):
        lo = draw(st.integers(1, 3))
        scalars.append(Scalar(draw(st.sampled_from(REDUCTIONS)), draw(st.integers(0, n - 1)),
                              lo, draw(st.integers(lo, lo + 2)), draw(st.integers(0, 2)),
                              draw(st.booleans())))
    if not any(t.generator for s in seqs for t in s.terms) and not any(
            s.generator for s in scalars):
        terms = (replace(seqs[0].terms[0], generator=True), *seqs[0].terms[1:])
        seqs[0] = replace(seqs[0], terms=terms)
    return Spec(K, tuple(seqs), tuple(scalars))


# ---- the checks ----------------------------------------------------------------------
def _later_to_earlier(edges: list[tuple[str, str]] | set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Edges from a sequence element to an element of the same sequence at an earlier (or
    the same) time."""
    def at(key: str) -> tuple[str, int] | None:
        if "[" not in key or not key.startswith("y"):
            return None
        name, index = key[:-1].split("[")
        return name, int(index)
    out = []
    for a, b in edges:
        pa, pb = at(a), at(b)
        if pa and pb and pa[0] == pb[0] and pa[1] >= pb[1]:
            out.append((a, b))
    return out


def check(spec: Spec, size: int, questions: int, seed: int) -> None:
    explicit, generated = render(spec, False), render(spec, True)
    assert explicit != generated
    models = [analysed(explicit), analysed(generated)]
    graphs = [unrolled(m, size) for m in models]
    T = max(size, *(seq.start + 1 for seq in spec.seqs))
    want = expected_graph(spec, T)
    for g, text in zip(graphs, (explicit, generated), strict=True):
        assert set(g.nodes) == set(want.nodes), text
        assert set(g.edges) == set(want.edges), (text, set(g.edges) ^ set(want.edges))
        assert nx.is_directed_acyclic_graph(g) and not _later_to_earlier(g.edges), text
    diagrams = [build(m) for m in models]
    assert set(diagrams[0].nodes) == set(diagrams[1].nodes), generated
    assert diagrams[0].edges == diagrams[1].edges, generated
    assert not _later_to_earlier(diagrams[1].edges), generated
    assert [(p.key, p.members) for p in diagrams[0].plates] == \
        [(p.key, p.members) for p in diagrams[1].plates]

    # every pair of elements, given nothing and given a few small sets
    rng = random.Random(seed)
    nodes = sorted(want.nodes)
    for x, y in itertools.combinations(nodes, 2):
        rest = [v for v in nodes if v not in (x, y)]
        givens = [set()] + [set(rng.sample(rest, min(len(rest), rng.randint(1, 3))))
                            for _ in range(2)]
        for zs in givens:
            truth = nx.is_d_separator(want, {x}, {y}, zs)
            for g in graphs:
                assert (active_trail(g, {x}, {y}, zs) is None) is truth, (generated, x, y, zs)
    # and through the question the CLI asks, on both spellings
    for _ in range(questions):
        x, y = rng.sample(nodes, 2)
        zs = rng.sample([v for v in nodes if v not in (x, y)], rng.randint(0, 2))
        text = f"{x} _||_ {y}" + (f" | {', '.join(zs)}" if zs else "")
        answers = [query(m, text, size) for m in models]
        assert answers[0].size == answers[1].size
        bigger = expected_graph(spec, max(answers[0].size,
                                          *(seq.start + 1 for seq in spec.seqs)))
        truth = nx.is_d_separator(bigger, {x}, {y}, set(zs))
        assert [a.independent for a in answers] == [truth, truth], (generated, text)


@settings(max_examples=30, deadline=None)
@given(spec=specs(), seed=st.integers(0, 2**16))
def test_generators_read_what_their_terms_spelled_out_read(spec: Spec, seed: int) -> None:
    check(spec, 3, 3, seed)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(spec=specs(max_seqs=3), size=st.integers(3, 7), seed=st.integers(0, 2**16))
def test_generators_read_what_their_terms_spelled_out_read_many(spec: Spec, size: int,
                                                               seed: int) -> None:
    check(spec, size, 10, seed)


# ---- fixed cases ---------------------------------------------------------------------
AR = """data T: int
data y: real[T]
alpha ~ Normal(0, 1)
beta: real[2] ~ Normal(0, 1)
sigma ~ HalfNormal(1)
for t in 3..T:
    y[t] ~ Normal(alpha + {mean}, sigma)
"""


@pytest.mark.parametrize("mean", [
    "sum(beta[k] * y[t-k] for k in 1..2)",
    "sum(beta[k - 1] * y[t - k + 1] for k in 2..3)",
    "sum(sum(beta[k] * y[t - k - m] for m in 0..0) for k in 1..2)",
    "prod(y[t-k] for k in 1..2) + beta[1]",
    "log_sum_exp(beta[k] * y[t-k] for k in 1..2)",
])
def test_the_ar2_sum_over_lags_is_the_ar2(mean: str) -> None:
    spelled = analysed(AR.format(mean="beta[1] * y[t-1] + beta[2] * y[t-2]"))
    model = analysed(AR.format(mean=mean))
    for size in (3, 6):
        g, want = unrolled(model, size), unrolled(spelled, size)
        assert set(g.nodes) == set(want.nodes) and set(g.edges) == set(want.edges)
    answer = query(model, "y[3] _||_ y[6] | y[4], y[5]")
    assert answer.trail is not None and "y[3] -> y[6]" not in " ".join(answer.trail)
    assert query(model, "y[3] _||_ y[6] | y[4], y[5], alpha, beta, sigma").independent
    assert not query(model, "y[3] _||_ y[5] | y[4], alpha, beta, sigma").independent
    assert build(model).edges == build(spelled).edges
