"""The generated code's line breaker keeps meaning: on random statements its layout (before
the safety check that falls back to the unbroken line) parses to the same syntax tree, and
it does fit lines where the syntax allows."""
from __future__ import annotations

import ast

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.codegen.linebreak import _Layout, _tokens, break_line

NAMES = st.sampled_from(["alpha", "beta__steps", "x", "data__", "acc__", "T", "sel__"])
TEXT = st.text(alphabet=st.sampled_from(list("ab '\"\\{}=,()xyz:\u00e9")), max_size=60)


def _expr(depth: int) -> st.SearchStrategy[str]:
    leaf = st.one_of(NAMES, st.integers(-5, 10**6).map(str), TEXT.map(repr),
                     st.just("..."), st.just("None"))
    if depth == 0:
        return leaf
    sub = _expr(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from([" + ", " - ", " * ", " @ ", " / ", " < ", " and ",
                                        " or ", " >= ", " // ", " ** ", " | "]), sub)
        .map("".join),
        sub.map(lambda e: f"-{e}"),
        sub.map(lambda e: f"not {e}"),
        st.tuples(NAMES, st.lists(sub, max_size=4),
                  st.lists(st.tuples(NAMES, sub), max_size=2)).map(
            lambda t: f"{t[0]}.f({', '.join(t[1] + [f'{k}={v}' for k, v in t[2]])})"),
        st.tuples(sub, st.lists(st.one_of(sub, st.just(":"), st.just("1:T - 1")),
                                min_size=1, max_size=3)).map(
            lambda t: f"({t[0]})[{', '.join(t[1])}]"),
        st.lists(sub, max_size=3).map(lambda xs: "(" + ", ".join(xs) +
                                      ("," if len(xs) == 1 else "") + ")"),
        sub.map(lambda e: f"({e})"),
    )


STATEMENTS = st.one_of(
    _expr(4).map(lambda e: f"y = {e}"),
    _expr(4).map(lambda e: f"rt.call({e}, where='m.bgm:3')"),
    _expr(3).map(lambda e: f"raise rt.ModelError({e})"),
    st.tuples(_expr(3), _expr(3)).map(lambda t: f"a[{t[0]}] = {t[1]}"),
)


@settings(max_examples=300, deadline=None)
@given(STATEMENTS, st.integers(30, 100), st.integers(0, 3))
def test_layout_parses_to_the_same_tree(statement: str, width: int, depth: int) -> None:
    try:
        before = ast.dump(ast.parse(statement))
    except SyntaxError:
        return
    tokens = _tokens(statement)
    assert tokens is not None
    indent = "    " * depth
    lines = _Layout(statement, tokens, width).lines(0, len(tokens) - 1, indent, "",
                                                     inner=False)
    body = "\n".join(line[len(indent):] for line in lines)
    assert ast.dump(ast.parse(body)) == before, "\n".join(lines)


def test_a_long_call_breaks_one_argument_per_line_black_style() -> None:
    line = ("acc__.likelihood('y', dist.Normal(alpha[..., None] + beta[..., 0][..., None] * "
            "y[..., 1:T - 1] + beta[..., 1][..., None] * y[..., :T - 2], sigma[..., None])"
            ".log_prob(y[..., 2:]), ndims=1)")
    assert break_line(line, "        ", 100) == [
        "        acc__.likelihood(",
        "            'y',",
        "            dist.Normal(",
        "                alpha[..., None]",
        "                + beta[..., 0][..., None] * y[..., 1:T - 1]",
        "                + beta[..., 1][..., None] * y[..., :T - 2],",
        "                sigma[..., None],",
        "            ).log_prob(y[..., 2:]),",
        "            ndims=1,",
        "        )",
    ]


def test_a_long_message_becomes_adjacent_literals_of_the_same_string() -> None:
    message = "cannot draw from the prior: " + "lm is a point parameter, " * 6
    line = f"raise rt.ModelError({message!r}, 'charlm.bgm:13')"
    lines = break_line(line, "    ", 60)
    assert all(len(text) <= 60 for text in lines)
    assert len(lines) >= 5
    tree = ast.parse("\n".join(text[4:] for text in lines))
    assert tree.body[0].exc.args[0].value == message  # type: ignore[attr-defined]


def test_lines_that_fit_or_cannot_stand_alone_are_left_as_they_are() -> None:
    assert break_line("x = f(a)", "    ", 100) == ["    x = f(a)"]
    unbalanced = "rt.DataSpec('x', " + "'real', " * 20
    assert break_line(unbalanced, "", 60) == [unbalanced]
    comment = "# " + "word " * 40
    assert break_line(comment, "", 60) == [comment]
