"""Text to syntax tree. The only module that imports Lark.

The grammar lives in grammar.lark and is built once (LALR, contextual lexer). Lark's
exceptions are turned into one beginner-readable Diagnostic at this boundary
(`raise ... from None`), using dsl.syntax_messages for the wording. Rules the grammar
cannot express (bounds, argument order, rule 2's strings, ...) are checked while building
the tree and just after (dsl.syntax_checks); those are all reported together, sorted.
"""
from __future__ import annotations

import difflib
import functools
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.indenter import DedentError, Indenter

from dsl import nodes as n
from dsl.comments import CommentLog, attach_comments
from dsl.diagnostics import BgmError, Diagnostic
from dsl.spans import Source, Span, normalize
from dsl.syntax_checks import check_syntax
from dsl.syntax_messages import (
    Tok,
    Wording,
    describe_character,
    describe_stray,
    describe_unexpected,
    match_brackets,
)

_GRAMMAR = Path(__file__).with_name("grammar.lark")


class _SyntaxProblem(Exception):
    """Raised inside the indenter (tabs, dedents); parse_source() turns it into a
    BgmError, since Lark would otherwise wrap it in its own exception."""

    def __init__(self, message: str, span: Span, hint: str | None = None):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, span, hint)


def _token_span(tok: Token) -> Span:
    return Span(tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)


_LAYOUT = ("_NL", "_INDENT", "_DEDENT", "$END")


def _tok(tok: Token) -> Tok:
    return Tok(tok.type, str(tok), tok.line or 1, tok.column or 1, tok.end_column or 1)


class _BlockIndenter(Indenter):
    """Python-style INDENT/DEDENT, plus what bgm adds: no tabs, comment capture,
    the tokens of the current line (for error wording) and the open brackets."""

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def __init__(self) -> None:
        super().__init__()
        self.comments = CommentLog()
        self.line_tokens: list[Token] = []
        self.open_brackets: list[Token] = []
        self._line_ended = False

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.comments = CommentLog()
        self.line_tokens = []
        self.open_brackets = []
        self._line_ended = False
        yield from super().process(self._watch(stream))

    def _watch(self, stream: Iterator[Token]) -> Iterator[Token]:
        for tok in stream:
            if tok.type in self.OPEN_PAREN_types:
                self.open_brackets.append(tok)
            elif tok.type in self.CLOSE_PAREN_types and self.open_brackets:
                self.open_brackets.pop()
            if tok.type == self.NL_type:
                self.comments.record(tok)
                self._line_ended = self._line_ended or not self.open_brackets
            else:
                if self._line_ended:  # keep the line until the next one starts (error wording)
                    self.line_tokens, self._line_ended = [], False
                self.line_tokens.append(tok)
            yield tok

    def line_before(self, tok: Token, after_header: bool) -> list[Token]:
        """The tokens of `tok`'s logical line that come before it. When the contextual
        lexer itself rejects a line's first token, that token never reaches _watch, so
        the previous line's tokens are still kept: they are not this line's, except
        that after a block header (`after_header`) they are what the wording needs."""
        if self._line_ended and tok.type not in _LAYOUT and not after_header:
            return []
        return [t for t in self.line_tokens if t is not tok]

    def handle_NL(self, token: Token) -> Iterator[Token]:
        indent_str = token.rsplit("\n", 1)[1]
        line = token.end_line or 1
        if self.paren_level == 0 and "\t" in indent_str:
            raise _SyntaxProblem("a tab in indentation", Span(line, 1, line, len(indent_str) + 1),
                                 hint="indent with spaces (four per level)")
        try:
            yield from super().handle_NL(token)
        except DedentError:
            raise _SyntaxProblem(
                "this line's indentation matches no enclosing block",
                Span(line, 1, line, len(indent_str) + 1),
                hint="indent it exactly like the block it belongs to") from None


@dataclass
class _ParserState:
    lark: Lark
    indenter: _BlockIndenter = field(repr=False)


@functools.lru_cache(maxsize=1)
def _parser() -> _ParserState:
    indenter = _BlockIndenter()
    lark = Lark(
        _GRAMMAR.read_text(),
        parser="lalr",
        lexer="contextual",
        postlex=indenter,
        propagate_positions=True,
        maybe_placeholders=True,
    )
    return _ParserState(lark, indenter)


def grammar_words() -> dict[str, tuple[str, ...]]:
    """The grammar's own vocabulary, for highlighters that must not drift from it:
    keywords (the literal words of its rules) and type names (its TYPE_NAME token)."""
    lark = _parser().lark
    keywords = sorted({t.pattern.value for t in lark.terminals
                       if t.pattern.type == "str" and t.pattern.value.isalpha()})
    pattern = next(t.pattern.value for t in lark.terminals if t.name == "TYPE_NAME")
    types = sorted(re.search(r"\(([a-z_|]+)\)", pattern)[1].split("|"))  # type: ignore[index]
    return {"keywords": tuple(keywords), "types": tuple(types)}


def terminal_names() -> set[str]:
    """Every terminal the built parser knows, for the test that each has a wording."""
    return {t.name for t in _parser().lark.terminals} | {"_INDENT", "_DEDENT", "$END"}


def parse_file(path: str | Path) -> tuple[n.Program, Source]:
    """Read and parse a .bgm file; a missing or unreadable file is a BgmError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BgmError([Diagnostic(f"cannot read '{path}': {exc.strerror}", None)],
                       Source(str(path), "")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise BgmError([Diagnostic(f"'{path}' is not UTF-8 text (line {line}, byte "
                                   f"{exc.start})", None,
                                   hint="save the file as UTF-8")],
                       Source(str(path), "")) from None
    source = Source(str(path), normalize(text))
    return parse_source(source), source


def parse_string(text: str, path: str = "<string>") -> n.Program:
    return parse_source(Source(path, normalize(text)))


def parse_source(source: Source) -> n.Program:
    """Parse a Source into a Program or raise one BgmError listing what is wrong: the
    first error Lark meets, or every rule the finished tree breaks."""
    text = normalize(source.text)
    _reject_empty_and_leading_indent(text, source)
    state = _parser()
    text = text if text.endswith("\n") else text + "\n"
    try:
        tree = state.lark.parse(text)
    except _SyntaxProblem as exc:
        raise BgmError([exc.diagnostic], source) from None
    except UnexpectedInput as exc:
        raise BgmError([_diagnose(exc, state.indenter, text)], source) from None
    except LarkError as exc:  # pragma: no cover - defensive: Lark's other failures
        raise BgmError([Diagnostic(f"cannot parse this program ({type(exc).__name__})",
                                   None)], source) from None
    _check_depth(tree, source)
    builder = _ToNodes(text)
    try:
        program: n.Program = builder.transform(tree)
    except VisitError as exc:  # pragma: no cover - a bug in _ToNodes, not the user's
        raise exc.orig_exc from None
    problems = _one_per_place(builder.problems + check_syntax(program))
    if problems:
        raise BgmError(problems, source)
    return attach_comments(program, state.indenter.comments)


# Limits that keep every later pass (each recursive over the syntax tree) and the
# generated Python (whose parser refuses 200 nested parentheses) within bounds; no model
# written by hand comes near them.
MAX_DEPTH = 200  # levels of the parse tree: nested brackets, operator chains, loops
MAX_DIGITS = 400  # characters of a number literal


def _check_depth(tree: Tree, source: Source) -> None:
    """Refuse a tree deeper than MAX_DEPTH, found without recursion (a chain of 5 000
    `+` is 5 000 levels deep) and reported at the first expression past the limit."""
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if depth > MAX_DEPTH:
            meta = node.meta
            span = Span(meta.line, meta.column, meta.line, meta.column + 1) \
                if not meta.empty else None
            raise BgmError([Diagnostic(
                f"this expression is nested too deeply (more than {MAX_DEPTH} levels of "
                "brackets, operators or loops)", span,
                hint="split it into steps with '=' definitions or sum(... for k in a..b)")],
                source)
        stack.extend((child, depth + 1) for child in node.children)


def _one_per_place(problems: list[Diagnostic]) -> list[Diagnostic]:
    """The first problem found at each position: `f(a=1, "s")` breaks two rules at the
    string, but one message there is enough."""
    seen: dict[tuple[int, int], Diagnostic] = {}
    for d in problems:
        key = (d.span.line, d.span.column) if d.span else (0, 0)
        seen.setdefault(key, d)
    return list(seen.values())


def _reject_empty_and_leading_indent(text: str, source: Source) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            width = len(line) - len(line.lstrip(" \t"))
            raise BgmError([Diagnostic("unexpected indentation on the first statement",
                                       Span(number, 1, number, width + 1),
                                       hint="top-level statements start in column 1")],
                           source)
        return
    raise BgmError([Diagnostic("the program is empty: write at least one statement",
                               Span(1, 1, 1, 1))], source)


def _diagnose(exc: UnexpectedInput, indenter: _BlockIndenter, text: str) -> Diagnostic:
    lines = text.split("\n")
    if isinstance(exc, UnexpectedCharacters):
        line, col = exc.line, exc.column
        wording = describe_character(lines[line - 1], line, col)
        return _diagnostic(wording, _at(wording.at) if wording.at else
                           Span(line, col, line, col + 1))
    assert isinstance(exc, UnexpectedToken)
    bracket = _bracket_problem(exc.token, indenter, text)
    if bracket is not None:
        return bracket
    tok: Token = exc.token
    expected = _expected(exc)
    previous = indenter.line_before(tok, after_header="_INDENT" in expected)
    rest = lines[(tok.line or 1) - 1][(tok.end_column or 1) - 1:].split("#")[0] \
        if tok.type not in _LAYOUT else ""
    wording = describe_unexpected(_tok(tok), expected, [_tok(t) for t in previous],
                                  _written(previous, text), rest)
    span = _at(wording.at) if wording.at else _found_span(tok, previous, lines)
    return _diagnostic(wording, span)


def _at(tok: Tok) -> Span:
    return Span(tok.line, tok.column, tok.line, tok.end_column)


def _diagnostic(wording: Wording, span: Span) -> Diagnostic:
    return Diagnostic(wording.message, span, wording.hint)


def _expected(exc: UnexpectedToken) -> set[str]:
    """What the parser could accept where it stopped. Read from the parse table: when the
    contextual lexer raises, Lark's own `expected` is the lexer's set, which always
    includes the newline token and so suggests the line could end there."""
    state = getattr(exc, "state", None)
    try:
        return {t for t in state.parse_conf.states[state.position] if t.isupper()}
    except (AttributeError, KeyError):  # pragma: no cover - older Lark
        return set(exc.expected)


def _written(tokens: list[Token], text: str) -> str:
    """The source text of the line's tokens so far, as the user spelled it."""
    if not tokens:
        return ""
    start, end = tokens[0].start_pos or 0, tokens[-1].end_pos or 0
    return " ".join(text[start:end].split())


def _found_span(tok: Token, previous: list[Token], lines: list[str]) -> Span:
    if tok.type == "$END":
        last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip()), 0)
        return Span(last + 1, len(lines[last]) + 1, last + 1, len(lines[last]) + 2)
    if tok.type == "_INDENT":
        line = tok.end_line or 1
        return Span(line, 1, line, len(str(tok)) + 1)
    if tok.type in ("_NL", "_DEDENT") and previous:
        end = previous[-1]
        line, col = end.end_line or 1, end.end_column or 1
        return Span(line, col, line, col + 1)
    return _token_span(tok)


def _bracket_problem(tok: Token, indenter: _BlockIndenter, text: str) -> Diagnostic | None:
    """Rule 4: inside a bracket that never closes, blame the opener, not the token where
    the parser gave up (often lines later); a closer that matches nothing is its own error."""
    report = match_brackets(text)
    if tok.type in _BlockIndenter.CLOSE_PAREN_types and tok.start_pos in report.stray:
        opener = report.stray[tok.start_pos]
        where = None if opener is None else _where(text, opener)
        wording = describe_stray(str(tok), None if opener is None else text[opener],
                                 where or "")
        return _diagnostic(wording, _token_span(tok))
    unclosed = [b for b in indenter.open_brackets if b.start_pos in report.unclosed]
    if not unclosed:
        return None
    opener = unclosed[-1]
    closer = ")" if opener.type == "LPAR" else "]"
    return Diagnostic(f"'{opener}' is never closed", _token_span(opener),
                      hint=f"add the matching '{closer}'")


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"at line {line}, column {column}"


# ---- tree to nodes ----------------------------------------------------------------


def _span(meta: Any) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _block_span(meta: Any, last: Any) -> Span:
    """A block's span ends at its last statement, not at the newline Lark counts in."""
    end = _expr_span(last)
    return Span(meta.line, meta.column, end.end_line, end.end_column)


def _line_span(meta: Any, text: str) -> Span:
    """A simple statement's span without the newline token (and comment) Lark counts in:
    it ends at the last character of code, skipping comments inside brackets."""
    depth, line, col, end = 0, meta.line, meta.column, (meta.line, meta.column)
    i, stop = meta.start_pos, meta.end_pos
    while i < stop:
        ch = text[i]
        if ch == "#" or (ch == "\n" and depth == 0):
            if depth == 0:
                break
            i = text.find("\n", i)  # a comment inside brackets: skip to its line break
            if i < 0:
                break
            continue
        depth += (ch in "([") - (ch in ")]")
        line, col = (line + 1, 1) if ch == "\n" else (line, col + 1)
        if ch not in " \t\n":
            end = (line, col)
        i += 1
    return Span(meta.line, meta.column, end[0], end[1])


def _name(tok: Token) -> n.Name:
    return n.Name(str(tok), span=_token_span(tok))


_BOUND_NAMES = ("lower", "upper")
_UNBOUNDED_TYPES = ("positive", "unit", "simplex", "ordered", "cholesky_corr")


@v_args(meta=True)
class _ToNodes(Transformer):  # type: ignore[type-arg]
    """Lark tree → dsl.nodes; also enforces the purely syntactic rules Lark cannot.

    A broken rule is recorded in `problems` and the tree is still built (the offending
    part dropped or kept as written), so one parse reports every such mistake."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text
        self.problems: list[Diagnostic] = []

    def _problem(self, message: str, span: Span, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(message, span, hint))

    def _line(self, meta: Any) -> Span:
        return _line_span(meta, self.text)

    def start(self, meta: Any, children: list[Any]) -> n.Program:
        header = children[0] if children and isinstance(children[0], n.Name) else None
        body = tuple(c for c in children if c is not None and not isinstance(c, n.Name))
        if header is not None and not body:
            self._problem(f"the model '{header.id}' has no statements", header.span,
                          hint="add declarations and statements after the 'model' line")
        return n.Program(header, body, span=_span(meta) if not meta.empty else Span(1, 1, 1, 1))

    def header(self, meta: Any, children: list[Any]) -> n.Name:
        return _name(children[0])

    def data_decl(self, meta: Any, c: list[Any]) -> n.DataDecl:
        return n.DataDecl(_name(c[0]), c[1], span=self._line(meta))

    def param_decl(self, meta: Any, c: list[Any]) -> n.ParamDecl:
        return n.ParamDecl(_name(c[0]), c[1], span=self._line(meta))

    def const_decl(self, meta: Any, c: list[Any]) -> n.ConstDecl:
        return n.ConstDecl(_name(c[0]), c[1], span=self._line(meta))

    def net_decl(self, meta: Any, c: list[Any]) -> n.NetDecl:
        args, kwargs = c[2] if c[2] is not None else ((), ())
        return n.NetDecl(_name(c[0]), _name(c[1]), args, kwargs, span=self._line(meta))

    def guide_block(self, meta: Any, c: list[Any]) -> n.Guide:
        return n.Guide(tuple(c), span=_block_span(meta, c[-1]))

    def sample_stmt(self, meta: Any, c: list[Any]) -> n.Sample:
        return n.Sample(c[0], c[1], c[2], span=self._line(meta))

    def assign_stmt(self, meta: Any, c: list[Any]) -> n.Assign:
        return n.Assign(c[0], c[1], span=self._line(meta))

    def factor_stmt(self, meta: Any, c: list[Any]) -> n.Factor:
        return n.Factor(c[0], span=self._line(meta))

    def for_stmt(self, meta: Any, c: list[Any]) -> n.For:
        return n.For(_name(c[0]), c[1], tuple(c[2:]), span=_block_span(meta, c[-1]))

    def target(self, meta: Any, c: list[Any]) -> n.Target:
        return n.Target(_name(c[0]), tuple(c[1:]), span=_span(meta))

    # ---- types
    def type(self, meta: Any, c: list[Any]) -> n.Type:
        base, (bounds, bounds_span), dims = str(c[0]), c[1] or ({}, None), c[2] or ()
        if bounds and base in _UNBOUNDED_TYPES:
            self._problem(f"'{base}' takes no bounds", bounds_span,
                          hint="bounds go on real or int: real<lower=0, upper=1>")
            bounds = {}
        return n.Type(base, bounds.get("lower"), bounds.get("upper"), tuple(dims),
                      span=_span(meta))

    def bounds(self, meta: Any, c: list[Any]) -> tuple[dict[str, n.Expr], Span]:
        found: dict[str, n.Expr] = {}
        for name, value in (x for x in c if isinstance(x, tuple)):
            if str(name) not in _BOUND_NAMES:
                close = difflib.get_close_matches(str(name), _BOUND_NAMES, n=1)
                self._problem(f"unknown bound '{name}'", _token_span(name),
                              hint=(f"did you mean '{close[0]}'? " if close else "")
                              + "a type takes 'lower' and 'upper'")
            elif str(name) in found:
                self._problem(f"bound '{name}' is given twice", _token_span(name))
            else:
                found[str(name)] = value
        return found, _span(meta)

    def bound(self, meta: Any, c: list[Any]) -> tuple[Token, n.Expr]:
        return (c[0], c[1])

    def dims(self, meta: Any, c: list[Any]) -> tuple[n.Expr, ...]:
        return tuple(c)

    # ---- expressions
    def range(self, meta: Any, c: list[Any]) -> n.Range:
        return n.Range(c[0], c[1], span=_span(meta))

    def compare(self, meta: Any, c: list[Any]) -> n.Compare:
        # No chain check here: the grammar already refuses `a < b < c`, and an operand
        # that is a Compare was parenthesised, `(a < b) < c`, which is what we ask for.
        left, op, right = c
        return n.Compare(str(op), left, right, span=_span(meta))

    def binop(self, meta: Any, c: list[Any]) -> n.Binary:
        return n.Binary(str(c[1]), c[0], c[2], span=_span(meta))

    def neg(self, meta: Any, c: list[Any]) -> n.Unary:
        return n.Unary("-", c[1], span=_span(meta))

    def power(self, meta: Any, c: list[Any]) -> n.Binary:
        return n.Binary("^", c[0], c[1], span=_span(meta))

    def index(self, meta: Any, c: list[Any]) -> n.Index:
        return n.Index(c[0], tuple(c[1:]), span=_span(meta))

    def slice(self, meta: Any, c: list[Any]) -> n.Slice:
        return n.Slice(c[0], span=_span(meta))

    def full_slice(self, meta: Any, c: list[Any]) -> n.FullSlice:
        return n.FullSlice(span=_span(meta))

    def real(self, meta: Any, c: list[Any]) -> n.Number:
        if self._too_long(c[0]):
            return n.Number(1.0, span=_token_span(c[0]))
        value = float(c[0])
        if math.isinf(value):  # would print as `inf`, a name
            self._problem("this number is too large for a real (the largest is about "
                          "1.8e308)", _token_span(c[0]))
        elif value == 0 and re.search(r"[1-9]", str(c[0]).split("e")[0].split("E")[0]):
            self._problem("this number is too small for a real: it would be 0 (the "
                          "smallest is about 4.9e-324)", _token_span(c[0]))
        return n.Number(value, span=_token_span(c[0]))

    def int(self, meta: Any, c: list[Any]) -> n.Number:
        if self._too_long(c[0]):
            return n.Number(1, span=_token_span(c[0]))
        value = int(c[0])
        if value > _LARGEST_REAL:  # it could only ever be used as `inf`
            self._problem("this number is too large (the largest is about 1.8e308)",
                          _token_span(c[0]))
            value = 1
        return n.Number(value, span=_token_span(c[0]))

    def _too_long(self, token: Token) -> bool:
        if len(token) <= MAX_DIGITS:
            return False
        self._problem(f"this number has {len(token)} characters; at most {MAX_DIGITS} "
                      "are allowed", _token_span(token))
        return True

    def string(self, meta: Any, c: list[Any]) -> n.String:
        return n.String(str(c[0])[1:-1], span=_token_span(c[0]))

    def name(self, meta: Any, c: list[Any]) -> n.Name:
        return _name(c[0])

    def call(self, meta: Any, c: list[Any]) -> n.Call:
        args, kwargs = c[1] if c[1] is not None else ((), ())
        return n.Call(_name(c[0]), args, kwargs, span=_span(meta))

    def generator(self, meta: Any, c: list[Any]) -> n.Generator:
        return n.Generator(_name(c[0]), c[1], _name(c[2]), c[3], span=_span(meta))

    def vector(self, meta: Any, c: list[Any]) -> n.Vector:
        return n.Vector(tuple(c), span=_span(meta))

    def arguments(self, meta: Any,
                  c: list[Any]) -> tuple[tuple[n.Expr, ...], tuple[n.Keyword, ...]]:
        args: list[n.Expr] = []
        kwargs: list[n.Keyword] = []
        for item in c:
            if not isinstance(item, n.Keyword):
                if kwargs:
                    self._problem("a positional argument cannot follow a keyword argument",
                                  _expr_span(item),
                                  hint="put positional arguments first, as in "
                                  "Bernoulli(n, logits=eta)")
                args.append(item)
            elif any(k.name == item.name for k in kwargs):
                self._problem(f"keyword argument '{item.name}' is given twice", item.span)
            else:
                kwargs.append(item)
        return tuple(args), tuple(kwargs)

    def keyword(self, meta: Any, c: list[Any]) -> n.Keyword:
        return n.Keyword(str(c[0]), c[1], span=_span(meta))


_LARGEST_REAL = int(sys.float_info.max)


def _expr_span(expr: Any) -> Span:
    return getattr(expr, "span", Span(1, 1, 1, 1))
