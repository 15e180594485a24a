"""The printer inverts the parser on every well-formed syntax tree.

A hypothesis strategy builds random trees of dsl.nodes, the kind the parser can produce
(names that are not keywords, non-negative literals, strings only as keyword values,
comments only where the parser attaches them). Two properties are checked:

- `parse_string(format_program(tree)) == tree` (spans are not compared), and
- formatting is idempotent, which also covers what equality ignores (blank lines).

A third check reads the spans the parser gives back: every name and number points at
its own text, which is what diagnostics rely on.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import nodes as n
from dsl.diagnostics import BgmError
from dsl.parser import parse_string
from dsl.printer import format_program

RESERVED = frozenset(
    "model data param const net for in factor guide "
    "real int positive unit simplex ordered cholesky_corr".split())

# A few names that sit next to keywords, to catch a lexer matching a keyword prefix.
_NEAR_KEYWORDS = ["format", "inx", "data_", "reals", "int2", "units", "guides", "e", "E1"]

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_words = st.builds(str.__add__, st.sampled_from(_LETTERS),
                   st.text(_LETTERS + "0123456789", max_size=6))  # faster than from_regex
names: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(_NEAR_KEYWORDS), st.sampled_from(sorted(RESERVED)), _words,
).map(lambda s: s + "_" if s in RESERVED else s)  # a map, not a filter: no retries

name_nodes = names.map(n.Name)

ints = st.one_of(st.integers(0, 20), st.integers(0, 10**30)).map(n.Number)
reals = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False).map(n.Number)
numbers = st.one_of(ints, reals)

# Rule 2: strings hold [A-Za-z0-9_ .-] only.
strings = st.text(_LETTERS + "0123456789 .-", max_size=8).map(n.String)

# A comment's text as the parser keeps it: one line, no surrounding whitespace.
_COMMENT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
comment_texts = st.text(_COMMENT_CHARS, max_size=12).map(str.strip)

BINARY_OPS = ["+", "-", "*", "/", "@", "^"]
COMPARE_OPS = ["==", "!=", "<", "<=", ">", ">="]


def _tuples(elements: st.SearchStrategy[Any], min_size: int = 0,
            max_size: int = 3) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(elements, min_size=min_size, max_size=max_size).map(tuple)


def _keywords(values: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[n.Keyword, ...]]:
    """Keyword arguments with distinct names; a value may be a string (rule 2)."""
    keyword = st.builds(n.Keyword, names, st.one_of(strings, values))
    return st.lists(keyword, max_size=2).map(_first_of_each_name)


def _first_of_each_name(keywords: list[n.Keyword]) -> tuple[n.Keyword, ...]:
    """Duplicates dropped by a map, not `unique_by`: a filter on these deeply nested
    strategies makes hypothesis build (and warn about) a huge repr on each retry."""
    return tuple({k.name: k for k in reversed(keywords)}[name] for name in
                 dict.fromkeys(k.name for k in keywords))


def ranges(e: st.SearchStrategy[Any]) -> st.SearchStrategy[n.Range]:
    return st.builds(n.Range, e, e)


def index_items(e: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(e, ranges(e).map(n.Slice), st.just(n.FullSlice()))


def _extend(e: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One more level of expression around the expressions `e`."""
    return st.one_of(
        st.builds(n.Unary, st.just("-"), e),
        st.builds(n.Binary, st.sampled_from(BINARY_OPS), e, e),
        st.builds(n.Compare, st.sampled_from(COMPARE_OPS), e, e),
        st.builds(n.Call, name_nodes, _tuples(e), _keywords(e)),
        st.builds(n.Generator, name_nodes, e, name_nodes, ranges(e)),
        st.builds(n.Index, e, _tuples(index_items(e), min_size=1)),
        st.builds(n.Vector, _tuples(e, min_size=1)),
    )


exprs: st.SearchStrategy[Any] = st.recursive(
    st.one_of(numbers, name_nodes), _extend, max_leaves=6)


def types() -> st.SearchStrategy[n.Type]:
    """Bounds only on `real`/`int` (rule 6); dims optional."""
    dims = _tuples(exprs, min_size=1, max_size=3)
    optional = st.one_of(st.none(), exprs)
    bounded = st.builds(n.Type, st.sampled_from(["real", "int"]), optional, optional,
                        st.one_of(st.just(()), dims))
    plain = st.builds(
        n.Type, st.sampled_from(["positive", "unit", "simplex", "ordered", "cholesky_corr"]),
        dims=st.one_of(st.just(()), dims))
    return st.one_of(bounded, plain)


def targets() -> st.SearchStrategy[n.Target]:
    return st.builds(n.Target, name_nodes, _tuples(index_items(exprs)))


def _commented(build: Callable[..., Any], *args: Any, **kwargs: Any) -> st.SearchStrategy[Any]:
    """A statement with random leading and trailing comments and a blank line before."""
    return st.builds(build, *args, comments=_tuples(comment_texts, max_size=2),
                     trailing=st.one_of(st.none(), comment_texts),
                     blank_before=st.booleans(), **kwargs)


def simple_statements() -> st.SearchStrategy[Any]:
    return st.one_of(
        _commented(n.Sample, targets(), st.one_of(st.none(), types()), exprs),
        _commented(n.Assign, targets(), exprs),
        _commented(n.Factor, exprs),
    )


def declarations(kinds: tuple[type, ...]) -> st.SearchStrategy[Any]:
    options = {
        n.DataDecl: _commented(n.DataDecl, name_nodes, types()),
        n.ParamDecl: _commented(n.ParamDecl, name_nodes, types()),
        n.ConstDecl: _commented(n.ConstDecl, name_nodes, exprs),
        n.NetDecl: _commented(n.NetDecl, name_nodes, name_nodes, _tuples(exprs),
                              _keywords(exprs)),
    }
    return st.one_of(*(options[k] for k in kinds))


def _block(build: Callable[..., Any], body: st.SearchStrategy[Any],
           *args: Any) -> st.SearchStrategy[Any]:
    """A `for` or `guide:` block: a non-empty body and comments closing the block."""
    return _commented(build, *args, _tuples(body, min_size=1, max_size=2),
                      end_comments=_tuples(comment_texts, max_size=2))


def loops(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _block(n.For, inner, name_nodes, ranges(exprs))


loop_bodies: st.SearchStrategy[Any] = st.recursive(
    simple_statements(), lambda inner: st.one_of(inner, loops(inner)), max_leaves=3)

statements = st.one_of(loop_bodies, loops(loop_bodies))
guide_items = st.one_of(statements, declarations((n.ParamDecl, n.NetDecl)))
top_items = st.one_of(statements, declarations((n.DataDecl, n.ParamDecl, n.ConstDecl,
                                                 n.NetDecl)))


def _guide() -> st.SearchStrategy[Any]:
    return _block(n.Guide, guide_items)


@st.composite
def programs(draw: st.DrawFn) -> n.Program:
    """A whole program: at least one statement (rule 1), at most one guide (rule 21);
    header comments exist only with a header (else they lead the first statement)."""
    name = draw(st.one_of(st.none(), name_nodes))
    body = list(draw(_tuples(top_items, min_size=1, max_size=4)))
    if draw(st.booleans()):
        body.insert(draw(st.integers(0, len(body))), draw(_guide()))
    with_header = name is not None
    return n.Program(
        name, tuple(body),
        comments=draw(_tuples(comment_texts, max_size=2)) if with_header else (),
        trailing=draw(st.one_of(st.none(), comment_texts)) if with_header else None,
        end_comments=draw(_tuples(comment_texts, max_size=2)))


# ---- checks ---------------------------------------------------------------------------


def _nodes(value: Any) -> Iterator[Any]:
    """Every syntax node inside `value`, depth first."""
    if isinstance(value, tuple):
        for item in value:
            yield from _nodes(item)
    elif dataclasses.is_dataclass(value):
        yield value
        for f in dataclasses.fields(value):
            if f.name != "span":
                yield from _nodes(getattr(value, f.name))


def _text_at(lines: list[str], span: Any) -> str:
    assert span.line == span.end_line, span
    return lines[span.line - 1][span.column - 1:span.end_column - 1]


def _check_spans(parsed: n.Program, text: str) -> None:
    lines = text.split("\n")
    for node in _nodes(parsed.body):
        span = node.span
        assert 1 <= span.line <= span.end_line <= len(lines), (node, span)
        if isinstance(node, n.Name):
            assert _text_at(lines, span) == node.id
        elif isinstance(node, n.Number):
            assert float(_text_at(lines, span)) == float(node.value)


def check_round_trip(program: n.Program) -> None:
    text = format_program(program)
    parsed = parse_string(text)
    assert parsed == program, text
    assert format_program(parsed) == text
    _check_spans(parsed, text)


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(programs())
@settings(max_examples=60, **_SETTINGS)  # type: ignore[arg-type]
def test_print_then_parse_gives_the_tree_back(program: n.Program) -> None:
    check_round_trip(program)


@pytest.mark.slow
@given(programs())
@settings(max_examples=3000, **_SETTINGS)  # type: ignore[arg-type]
def test_print_then_parse_gives_the_tree_back_thoroughly(program: n.Program) -> None:
    check_round_trip(program)


@given(exprs)
@settings(max_examples=150, **_SETTINGS)  # type: ignore[arg-type]
def test_expressions_round_trip(expr: Any) -> None:
    check_round_trip(n.Program(None, (n.Assign(n.Target(n.Name("x")), expr),)))


# ---- broken programs -----------------------------------------------------------------
# One random edit to a printed program: most results are syntax errors, whose diagnostics
# must point inside the text and never show Lark; the rest parse, and then the printer
# must round-trip them too (these trees come from text, so they reach places the strategy
# above does not: comments inside brackets, statements over several lines, odd spacing).

_EDIT_CHARS = ":~=+-*/^@()[],<>#.\"' \n\tabkN019e_"
_LARK_INTERNALS = ("Token(", "__ANON", "$END", "_NL", "_INDENT", "_DEDENT", "Traceback")


@st.composite
def edited_programs(draw: st.DrawFn) -> str:
    text = format_program(draw(programs()))
    at = draw(st.integers(0, len(text)))
    kind = draw(st.sampled_from(["delete", "insert", "indent", "duplicate"]))
    if kind == "delete":
        return text[:at] + text[at + draw(st.integers(1, 3)):]
    if kind == "insert":
        return text[:at] + draw(st.text(_EDIT_CHARS, min_size=1, max_size=2)) + text[at:]
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at) + 1 or len(text)
    if kind == "indent":
        return text[:start] + draw(st.sampled_from(["  ", "    ", "\t"])) + text[start:]
    return text[:end] + text[start:end] + text[end:]


def check_edited(text: str) -> None:
    try:
        program = parse_string(text, "edit.bgm")
    except BgmError as error:
        lines = text.split("\n")
        for d in error.diagnostics:
            assert d.span is not None
            assert 1 <= d.span.line <= len(lines), (d, text)
            assert 1 <= d.span.column <= len(lines[d.span.line - 1]) + 2, (d, text)
        rendered = error.render()
        assert rendered.startswith("edit.bgm:"), rendered
        assert not any(s in rendered and s not in text for s in _LARK_INTERNALS), rendered
        return
    printed = format_program(program)
    assert parse_string(printed) == program, (text, printed)
    assert format_program(parse_string(printed)) == printed


@given(edited_programs())
@settings(max_examples=60, **_SETTINGS)  # type: ignore[arg-type]
def test_an_edited_program_parses_and_round_trips_or_gets_a_clear_error(text: str) -> None:
    check_edited(text)


@pytest.mark.slow
@given(edited_programs())
@settings(max_examples=3000, **_SETTINGS)  # type: ignore[arg-type]
def test_edited_programs_thoroughly(text: str) -> None:
    check_edited(text)
