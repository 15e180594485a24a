"""d-separation and Markov blankets (`bgmc query`) against a brute-force oracle: every
simple path of the unrolled graph, with the blocking rules applied node by node."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.api import compile_file, compile_string
from compiler.cli import main
from compiler.dsep import markov_blanket, query, unrolled

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def oracle_independent(g: nx.DiGraph, xs: set[str], ys: set[str], zs: set[str]) -> bool:
    """No simple path between xs and ys is active given zs: on a path, a collider a -> m <- b
    passes only when m or one of its descendants is given, any other node only when it is
    not given. The graph's factor nodes are always given."""
    given_ = zs | {v for v, d in g.nodes(data=True) if d.get("factor")}
    opened = {m: m in given_ or bool(nx.descendants(g, m) & given_) for m in g}
    skeleton = g.to_undirected()
    for x in xs:
        for y in ys:
            for path in nx.all_simple_paths(skeleton, x, y):
                if all(_passes(g, path[k - 1], path[k], path[k + 1], given_, opened)
                       for k in range(1, len(path) - 1)):
                    return False
    return True


def _passes(g: nx.DiGraph, a: str, m: str, b: str, given_: set[str],
            opened: dict[str, bool]) -> bool:
    if g.has_edge(a, m) and g.has_edge(b, m):
        return opened[m]
    return m not in given_


def _model(src: str) -> object:
    return compile_string(src, "q.bgm").compiled.model


CHAIN = "a ~ Normal(0, 1)\nb ~ Normal(a, 1)\nc ~ Normal(b, 1)\n"
FORK = "b ~ Normal(0, 1)\na ~ Normal(b, 1)\nc ~ Normal(b, 1)\n"
COLLIDER = "a ~ Normal(0, 1)\nc ~ Normal(0, 1)\nb ~ Normal(a + c, 1)\nd ~ Normal(b, 1)\n"


@pytest.mark.parametrize("src, question, independent", [
    (CHAIN, "a _||_ c", False), (CHAIN, "a _||_ c | b", True),
    (FORK, "a _||_ c", False), (FORK, "a _||_ c | b", True),
    (COLLIDER, "a _||_ c", True), (COLLIDER, "a _||_ c | b", False),
    (COLLIDER, "a _||_ c | d", False),  # an observed descendant opens the collider
    ("a ~ Normal(0, 1)\nb ~ Normal(0, 1)\nfactor(-(a - b) ^ 2)\n", "a _||_ b", False),
])
def test_the_textbook_cases(src: str, question: str, independent: bool) -> None:
    answer = query(_model(src), question)
    assert answer.independent is independent
    if not independent:
        assert answer.trail is not None and answer.trail[0] == question[0]


@pytest.mark.parametrize("model, question, independent, trail", [
    ("eight_schools_noncentered.bgm", "mu _||_ y | theta", True, None),
    ("eight_schools_noncentered.bgm", "mu _||_ y", False, "mu -> theta[1] -> y[1]"),
    ("eight_schools_noncentered.bgm", "y[1] _||_ y[2] | mu, tau", True, None),
    ("eight_schools_noncentered.bgm", "y[1] _||_ y[2] | mu", False,
     "y[1] <- theta[1] <- tau -> theta[2] -> y[2]"),
    ("eight_schools_noncentered.bgm", "mu _||_ tau | y[1]", False, "mu -> theta[1] <- tau"),
    ("hidden_markov.bgm", "z[1] _||_ z[3]", False, "z[1] -> z[2] -> z[3]"),
    ("hidden_markov.bgm", "z[1] _||_ z[3] | z[2], A", True, None),
    ("hidden_markov.bgm", "y[1] _||_ y[3] | z[2], A, mu, sigma", True, None),
    ("gaussian_mixture.bgm", "x[1] _||_ x[2] | mu, s, w", True, None),
    ("gaussian_mixture.bgm", "x[1] _||_ x[2] | mu, s", False, None),
    ("vae.bgm", "x[1] _||_ x[2] | dec", True, None),
    ("vae.bgm", "x[1] _||_ x[2]", False, "x[1] <- dec -> x[2]"),
])
def test_plates_and_chains_are_unrolled(model: str, question: str, independent: bool,
                                        trail: str | None) -> None:
    m = compile_file(EXAMPLES / model).compiled.model
    answer = query(m, question)
    assert answer.independent is independent, answer.text()
    if trail is not None:
        assert " ".join(answer.trail or []) == trail


def test_markov_blankets() -> None:
    eight = compile_file(EXAMPLES / "eight_schools_noncentered.bgm").compiled.model
    assert markov_blanket(eight, "theta") == ["eta", "mu", "tau", "y"]
    assert markov_blanket(eight, "mu") == ["eta", "tau", "theta"]
    hmm = compile_file(EXAMPLES / "hidden_markov.bgm").compiled.model
    assert markov_blanket(hmm, "z") == ["A", "mu", "sigma", "y"]


# ---- random models: scalars s0.. and plate variables p0..[i], each a Normal whose mean
# sums its parents; a scalar reads a plate variable whole (sum), a plate variable reads
# a scalar, or another plate variable at the same i.
@st.composite
def models(draw: st.DrawFn) -> tuple[str, nx.DiGraph]:
    kinds = draw(st.lists(st.sampled_from(["s", "p"]), min_size=2, max_size=5))
    names = [f"{k}{i}" for i, k in enumerate(kinds)]
    lines = ["data N: int"]
    expected = nx.DiGraph()
    size = 3
    elems = {v: [v] if v[0] == "s" else [f"{v}[{i}]" for i in range(1, size + 1)]
             for v in names}
    for v in names:
        expected.add_nodes_from(elems[v])
    for j, v in enumerate(names):
        parents = [u for u in names[:j] if draw(st.booleans())]
        if v[0] == "s":
            terms = [u if u[0] == "s" else f"sum({u})" for u in parents]
            lines.append(f"{v} ~ Normal({' + '.join(terms) or '0'}, 1)")
            for u in parents:
                expected.add_edges_from((e, v) for e in elems[u])
        else:
            terms = [u if u[0] == "s" else f"{u}[i]" for u in parents]
            lines.append(f"for i in 1..N:\n    {v}[i] ~ Normal({' + '.join(terms) or '0'}, 1)")
            for u in parents:
                for i in range(1, size + 1):
                    expected.add_edge(u if u[0] == "s" else f"{u}[{i}]", f"{v}[{i}]")
    return "\n".join(lines) + "\n", expected


@settings(max_examples=60, deadline=None)
@given(case=models(), data=st.data())
def test_d_separation_equals_the_path_oracle_on_random_models(
        case: tuple[str, nx.DiGraph], data: st.DataObject) -> None:
    src, expected = case
    model = _model(src)
    g = unrolled(model, 3)
    assert set(g.nodes) == set(expected.nodes) and set(g.edges) == set(expected.edges)
    nodes = sorted(g.nodes)
    picked = data.draw(st.lists(st.sampled_from(nodes), min_size=2, max_size=len(nodes),
                                unique=True))
    x, y, rest = picked[0], picked[1], picked[2:]
    zs = data.draw(st.lists(st.sampled_from(rest), unique=True)) if rest else []
    question = f"{x} _||_ {y}" + (f" | {', '.join(zs)}" if zs else "")
    answer = query(model, question)
    want = oracle_independent(g, {x}, {y}, set(zs))
    assert answer.independent is want, (src, question)
    assert want is nx.is_d_separator(g, {x}, {y}, set(zs))
    if not want:  # the trail shown is active: the oracle finds it open on its own
        trail = answer.trail[::2]  # type: ignore[index]
        sub = g.subgraph(trail).copy()
        assert trail[0] == x and trail[-1] == y
        assert all(_passes(g, trail[k - 1], trail[k], trail[k + 1], set(zs),
                           {m: m in zs or bool(nx.descendants(g, m) & set(zs)) for m in g})
                   for k in range(1, len(trail) - 1)), (answer.trail, sub.edges)


@pytest.mark.parametrize("question, message, caret", [
    ("mu _||_ foo | theta", "'foo' is not a variable of the model", 10),
    ("mu _||_ y[0]", "y[0] is not an element of the model", 10),
    ("mu _||_ J", "'J' is data, fixed rather than random", 10),
    ("mu _||_ y, 3x", "'3x' is not a variable or an element", 13),
    ("mu _||_ y | mu", "mu is on both sides of '|'", 2),
    ("mu and y", "write the question as 'A _||_ B | C'", None),
])
def test_questions_bgmc_cannot_answer_are_reported(question: str, message: str,
                                                   caret: int | None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model = str(EXAMPLES / "eight_schools_noncentered.bgm")
    assert main(["query", model, question]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if caret is not None:
        assert err.splitlines()[-1] == " " * caret + "^", err


def test_the_cli_answers(capsys: pytest.CaptureFixture[str]) -> None:
    model = str(EXAMPLES / "eight_schools_noncentered.bgm")
    assert main(["query", model, "mu _||_ y | theta"]) == 0
    assert capsys.readouterr().out.startswith("yes: mu _||_ y | theta.")
    assert main(["query", model, "y[1] ⊥ y[2] | mu"]) == 0
    assert "no: y[1] _||_ y[2] | mu does not hold" in capsys.readouterr().out
    assert main(["query", model, "--markov-blanket", "theta"]) == 0
    assert capsys.readouterr().out == "Markov blanket of theta: eta, mu, tau, y\n"
    assert main(["query", model]) == 2


@pytest.mark.parametrize("src, question, independent", [
    # a generator's variable ranges over its own range, even when it reuses a name
    ("data N: int\ndata K: int\ndata y: real[N]\nfor k in 1..K:\n    mu[k] ~ Normal(0, 1)\n"
     "for i in 1..N:\n    y[i] ~ Normal(sum(mu[i] for i in 1..K), 1)\n",
     "y[1] _||_ mu[2]", False),
    ("data N: int\ndata K: int\ndata y: real[N]\nconst j = 2\nfor k in 1..K:\n"
     "    mu[k] ~ Normal(0, 1)\nfor i in 1..N:\n    y[i] ~ Normal(sum(mu[j] for j in 1..K), 1)\n",
     "y[1] _||_ mu[1]", False),
    # an int datum as an index may pick any element
    ("data K: int\ndata j0: int\nfor k in 1..K:\n    mu[k] ~ Normal(0, 1)\n"
     "y ~ Normal(mu[j0], 1)\n", "y _||_ mu[1]", False),
    # a loop starting past the default size is unrolled far enough to run
    ("data T: int\ndata y: real[T]\nmu ~ Normal(0, 1)\nfor t in 5..T:\n"
     "    y[t] ~ Normal(mu + y[t-4], 1)\n", "y _||_ mu", False),
    # a slice on the left defines each of its elements
    ("data N: int\ndata K: int\ndata y: real[N]\nmu[1..2] ~ Normal(0, 1)\nfor k in 3..K:\n"
     "    mu[k] ~ Normal(mu[1], 1)\nfor t in 1..N:\n    y[t] ~ Normal(mu[2], 1)\n",
     "mu[3] _||_ y[1]", True),
    ("data K: int\ndata J: int\ndata y: real[K, J]\nfor j in 1..J:\n"
     "    w[1..K, j] ~ Normal(0, 1)\nfor k in 1..K:\n    for j in 1..J:\n"
     "        y[k, j] ~ Normal(w[k, j], 1)\n", "y[1, 1] _||_ y[1, 2]", True),
])
def test_reads_select_exactly_the_elements_they_read(src: str, question: str,
                                                      independent: bool) -> None:
    assert query(_model(src), question).independent is independent


def test_an_index_beyond_what_bgmc_unrolls_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    model = str(EXAMPLES / "hidden_markov.bgm")
    assert main(["query", model, "y[1] _||_ y[3000]"]) == 1
    assert "unrolls at most 40 elements per plate" in capsys.readouterr().err


def test_the_markov_blanket_of_an_element_and_other_spellings(
        capsys: pytest.CaptureFixture[str]) -> None:
    hmm = compile_file(EXAMPLES / "hidden_markov.bgm").compiled.model
    assert markov_blanket(hmm, "z[2]") == ["A[1]", "A[2]", "A[3]", "mu[1]", "mu[2]", "mu[3]",
                                           "sigma", "y[2]", "z[1]", "z[3]"]
    model = str(EXAMPLES / "eight_schools_noncentered.bgm")
    assert main(["query", model, "y[1] ⊥⊥ y[2] | mu, tau"]) == 0
    assert capsys.readouterr().out.startswith("yes: y[1] _||_ y[2] | mu, tau.")
    assert main(["query", model, "y[1] ⊥ foo"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == ["  y[1] _||_ foo", " " * 12 + "^"]
